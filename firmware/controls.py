"""Buttons, status lights and buzzer: the one module that owns GPIO.

The officer's whole interface is two buttons, three lights and a buzzer, so every light/buzzer pattern the kit
shows is one row of the SIGNALS table below (the README prints it). Presses arrive as `ButtonEvent`s on
`controls.events`, a `queue.Queue`, which the daemon's state machine reads. Blinking and beeping run on a
small thread so that a long beep never delays the state machine.

`GpioControls` drives the real board through RPi.GPIO (on a Pi 5, rpi-lgpio provides the same module);
`SimulatedControls` listens on a local Unix socket (`press capture`, `press confirm`, `state`) so tests and
the demo press buttons from another process, and it records every light and buzzer change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tpskit.events import Event, log_event, register
from tpskit.officer import OfficerMessage

# The table lives in its own small module: the reader's texts need it, not the GPIO, sockets and threads.
from .signals import BEEPS, BLINK_PERIOD_S, SIGNALS, Beep, Blink, Leds, Signal

if TYPE_CHECKING:  # pydantic models: `tpskit read` imports the signals here, not the config (issue 8)
    from .config import ControlsConfig

log = logging.getLogger("tpskit.firmware.controls")

register(
    Event("controls.opened", "info", "The buttons, lights and buzzer were set up."),
    Event("controls.press", "action", "A button was pressed (after debounce)."),
    Event("controls.signal", "info", "A light/buzzer signal from the SIGNALS table was shown."),
    Event("controls.error", "error", "The buttons or lights could not be set up; the message says why."),
)


class Button(StrEnum):
    CAPTURE = "capture"
    CONFIRM = "confirm"


@dataclass(frozen=True)
class ButtonEvent:
    button: Button
    at: float  # time.monotonic() of the press


def readme_table() -> str:
    """The SIGNALS table as Markdown, for the README."""
    rows = ["| signal | green | amber | red | buzzer | meaning |", "|---|---|---|---|---|---|"]
    for sig, spec in SIGNALS.items():
        leds = ("unchanged",) * 3 if spec.leds is None else (spec.leds.green, spec.leds.amber, spec.leds.red)
        ms = "/".join(str(d) for d in BEEPS[spec.beep])
        unit = "ms" if len(BEEPS[spec.beep]) == 1 else "ms on/off"
        beep = f"{spec.beep} ({ms} {unit})" if spec.beep != Beep.NONE else "-"
        rows.append(f"| {sig.value} | {leds[0]} | {leds[1]} | {leds[2]} | {beep} | {spec.meaning} |")
    return "\n".join(rows)


class Controls(Protocol):
    events: queue.Queue[ButtonEvent]

    def wait_for_press(self, timeout: float | None) -> ButtonEvent | None: ...
    def set_leds(self, green: Blink, amber: Blink, red: Blink) -> None: ...
    def beep(self, pattern: Beep) -> None: ...
    def signal(self, sig: Signal) -> None: ...
    def close(self) -> None: ...


class Screen(Protocol):
    def show(self, message: OfficerMessage) -> None: ...


class FileScreen:
    """Writes the current message as JSON (atomically) for a small display or a touch page to show."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def show(self, message: OfficerMessage) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**message.to_dict(), "ts": round(time.time(), 3)}))
        os.replace(tmp, self.path)


class NullScreen:
    def show(self, message: OfficerMessage) -> None:
        pass


def make_controls(cfg: ControlsConfig) -> Controls:
    """The backend named in the configuration, ready to use."""
    factories: dict[str, Callable[[ControlsConfig], Controls]] = {
        "gpio": GpioControls,
        "simulated": SimulatedControls,
    }
    return factories[cfg.backend](cfg)


def make_screen(cfg: ControlsConfig, controls: Controls) -> Screen:
    """The simulated controls double as the screen (their `state` reports the last message)."""
    if isinstance(controls, SimulatedControls):
        return controls
    return FileScreen(cfg.screen_file) if cfg.screen_file is not None else NullScreen()


class _PatternDriver:
    """Shared by both backends: the press queue, and a thread that turns Blink/Beep states into on/off writes.

    Subclasses implement `_write(output, on)` for outputs "green", "amber", "red", "buzzer".
    """

    TICK_S = 0.02

    def __init__(self) -> None:
        self.events: queue.Queue[ButtonEvent] = queue.Queue()
        self._leds = Leds()
        self._beep_steps: list[tuple[bool, float]] = []  # (buzzer on?, until monotonic)
        self._cond = threading.Condition()
        self._stop = False
        self._written: dict[str, bool] = {}
        self._requested = 0  # bumped on every change; the thread reports what it has applied
        self._applied = -1
        self._thread = threading.Thread(target=self._run, name="tpskit-leds", daemon=True)

    def _start_thread(self) -> None:
        self._thread.start()

    # -- the interface ---------------------------------------------------------------------------------
    def wait_for_press(self, timeout: float | None) -> ButtonEvent | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def set_leds(self, green: Blink, amber: Blink, red: Blink) -> None:
        with self._cond:
            self._leds = Leds(Blink(green), Blink(amber), Blink(red))
            self._requested += 1
            self._cond.notify_all()

    def beep(self, pattern: Beep) -> None:
        now = time.monotonic()
        steps, t = [], now
        for i, ms in enumerate(BEEPS[Beep(pattern)]):
            t += ms / 1000
            steps.append((i % 2 == 0, t))
        with self._cond:
            self._beep_steps = steps  # a new beep replaces one still sounding
            self._requested += 1
            self._cond.notify_all()

    def signal(self, sig: Signal) -> None:
        spec = SIGNALS[sig]
        if spec.leds is not None:
            self.set_leds(spec.leds.green, spec.leds.amber, spec.leds.red)
        if spec.beep != Beep.NONE:
            self.beep(spec.beep)
        log_event(log, "controls.signal", signal=sig.value)

    def _press(self, button: Button) -> None:
        self.events.put(ButtonEvent(button, time.monotonic()))
        log_event(log, "controls.press", button=button.value)

    # -- the pattern thread ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                leds, now, generation = self._leds, time.monotonic(), self._requested
                while self._beep_steps and self._beep_steps[0][1] <= now:
                    self._beep_steps.pop(0)
                buzzer = bool(self._beep_steps) and self._beep_steps[0][0]
                blinking = any(b in BLINK_PERIOD_S for b in (leds.green, leds.amber, leds.red))
            for name, state in (("green", leds.green), ("amber", leds.amber), ("red", leds.red)):
                self._set_output(name, _lit(state, now))
            self._set_output("buzzer", buzzer)
            with self._cond:
                self._applied = generation
                self._cond.notify_all()
                if self._stop:
                    return
                # Sleep until something changes, or the next tick while blinking or beeping.
                if self._requested == generation:
                    self._cond.wait(self.TICK_S if (blinking or self._beep_steps) else None)

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until the outputs reflect the last set_leds/beep (tests use it instead of sleeping)."""
        with self._cond:
            target = self._requested
            return self._cond.wait_for(lambda: self._applied >= target or self._stop, timeout)

    def _set_output(self, name: str, on: bool) -> None:
        if self._written.get(name) != on:
            self._write(name, on)
            self._written[name] = on

    def _write(self, output: str, on: bool) -> None:
        raise NotImplementedError

    def _stop_thread(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        for name in ("green", "amber", "red", "buzzer"):
            self._set_output(name, False)


def _lit(state: Blink, now: float) -> bool:
    if state in BLINK_PERIOD_S:
        period = BLINK_PERIOD_S[state]
        return (now % period) < period / 2
    return state == Blink.ON


class GpioControls(_PatternDriver):
    """The button/LED board on the GPIO header, through RPi.GPIO (rpi-lgpio on a Pi 5 offers the same API).

    BCM numbering; buttons are inputs with the internal pull-up and a falling-edge interrupt with the
    configured bouncetime (pull-down and rising edge when buttons_active_low is false). LEDs and buzzer are
    outputs starting low. `close()` turns everything off and releases the pins.
    """

    def __init__(self, cfg: ControlsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        try:
            import RPi.GPIO as GPIO
        except ImportError as e:
            msg = ("RPi.GPIO is not importable: on the Pi install `apt install python3-rpi-lgpio` (or "
                   "`pip install .[pi]`) and create the venv with --system-site-packages.")
            log_event(log, "controls.error", message=msg)
            raise RuntimeError(msg) from e
        self.GPIO = GPIO
        pins = cfg.pins
        self._buttons = {pins.capture_button: Button.CAPTURE, pins.confirm_button: Button.CONFIRM}
        self._outputs = {"green": pins.led_green, "amber": pins.led_amber, "red": pins.led_red,
                         "buzzer": pins.buzzer}
        self._pressed_level = GPIO.LOW if cfg.buttons_active_low else GPIO.HIGH
        GPIO.setwarnings(False)  # a previous crash leaves pins configured; we set them all again anyway
        GPIO.setmode(GPIO.BCM)
        try:
            for pin in self._outputs.values():
                GPIO.setup(pin, GPIO.OUT, initial=GPIO.LOW)
            if cfg.buttons_active_low:
                pull, edge = GPIO.PUD_UP, GPIO.FALLING
            else:
                pull, edge = GPIO.PUD_DOWN, GPIO.RISING
            for pin in self._buttons:
                GPIO.setup(pin, GPIO.IN, pull_up_down=pull)
                GPIO.add_event_detect(pin, edge, callback=self._on_edge, bouncetime=cfg.debounce_ms)
        except Exception as e:  # RuntimeError "Failed to add edge detection", permission on /dev/gpiochip*
            msg = (f"The GPIO pins could not be set up ({e}). Is the kit user in the gpio group, and is no "
                   "other program using the pins?")
            log_event(log, "controls.error", message=msg)
            with contextlib.suppress(Exception):
                GPIO.cleanup(list(self._outputs.values()) + list(self._buttons))
            raise RuntimeError(msg) from e
        self._start_thread()
        log_event(log, "controls.opened", backend="gpio", pins=cfg.pins.model_dump())

    def _on_edge(self, channel: int) -> None:
        # Runs on RPi.GPIO's callback thread. A glitch that passes the bouncetime but is no longer held is
        # not a press.
        if self.GPIO.input(channel) == self._pressed_level:
            self._press(self._buttons[channel])

    def _write(self, output: str, on: bool) -> None:
        self.GPIO.output(self._outputs[output], self.GPIO.HIGH if on else self.GPIO.LOW)

    def close(self) -> None:
        self._stop_thread()
        for pin in self._buttons:
            with contextlib.suppress(Exception):
                self.GPIO.remove_event_detect(pin)
        self.GPIO.cleanup(list(self._outputs.values()) + list(self._buttons))


@dataclass
class _SimState:
    outputs: dict[str, bool] = field(
        default_factory=lambda: dict.fromkeys(("green", "amber", "red", "buzzer"), False)
    )
    message: OfficerMessage | None = None


class SimulatedControls(_PatternDriver):
    """Buttons pressed through a local Unix socket, lights and buzzer recorded.

    Line protocol, one command per connection line, one reply line:
      `press capture` | `press confirm`  -> `ok`
      `state`                             -> JSON: leds, last beep, last signal, last message, outputs
      `history`                           -> JSON list of every light/beep/signal change
    `history` (also as the attribute) holds ("leds", Leds), ("beep", Beep), ("signal", Signal) and
    ("message", OfficerMessage) in order, so tests can assert patterns without timing.
    """

    def __init__(self, cfg: ControlsConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.socket_path = Path(cfg.simulated_socket)
        self.history: list[tuple[str, Any]] = []
        self._state = _SimState()
        self._last_beep = Beep.NONE
        self._last_signal: Signal | None = None
        self._hist_lock = threading.Lock()
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a stale socket from a killed daemon
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o660)
        self._server.listen(8)
        self._server_thread = threading.Thread(target=self._serve, name="tpskit-sim-controls", daemon=True)
        self._server_thread.start()
        self._start_thread()
        log_event(log, "controls.opened", backend="simulated", socket=str(self.socket_path))

    # -- recording -----------------------------------------------------------------------------------
    def _record(self, kind: str, value: Any) -> None:
        with self._hist_lock:
            self.history.append((kind, value))

    def set_leds(self, green: Blink, amber: Blink, red: Blink) -> None:
        super().set_leds(green, amber, red)
        self._record("leds", Leds(Blink(green), Blink(amber), Blink(red)))

    def beep(self, pattern: Beep) -> None:
        super().beep(pattern)
        self._last_beep = Beep(pattern)
        self._record("beep", Beep(pattern))

    def signal(self, sig: Signal) -> None:
        # Lights first: a reader of `state` that sees the signal also sees its lights.
        super().signal(sig)
        self._last_signal = sig
        self._record("signal", sig)

    def show(self, message: OfficerMessage) -> None:
        self._state.message = message
        self._record("message", message)

    def signals(self) -> list[Signal]:
        """The signals shown so far, in order."""
        with self._hist_lock:
            return [v for k, v in self.history if k == "signal"]

    def _write(self, output: str, on: bool) -> None:
        self._state.outputs[output] = on

    def press(self, button: Button | str) -> None:
        """Press a button from inside the process (the socket does the same from outside)."""
        self._press(Button(button))

    def state(self) -> dict[str, Any]:
        with self._cond:
            leds = self._leds
        msg = self._state.message
        return {
            "leds": {k: str(v) for k, v in asdict(leds).items()},
            "beep": str(self._last_beep),
            "signal": self._last_signal.value if self._last_signal else None,
            "message": msg.to_dict() if msg else None,
            "outputs": dict(self._state.outputs),
        }

    def _history_json(self) -> list[dict[str, Any]]:
        with self._hist_lock:
            items = list(self.history)
        out = []
        for kind, value in items:
            if isinstance(value, Leds):
                value = {k: str(v) for k, v in asdict(value).items()}
            elif isinstance(value, OfficerMessage):
                value = value.to_dict()
            elif isinstance(value, Enum):
                value = value.value
            out.append({"kind": kind, "value": value})
        return out

    # -- the control socket --------------------------------------------------------------------------
    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return  # closed
            with conn:
                conn.settimeout(2)
                try:
                    for line in conn.makefile("r", encoding="utf-8"):
                        reply = self._command(line.strip())
                        conn.sendall((reply + "\n").encode())
                except (OSError, ValueError):
                    continue

    def _command(self, line: str) -> str:
        words = line.split()
        if len(words) == 2 and words[0] == "press":
            try:
                self.press(words[1])
            except ValueError:
                return f"error unknown button {words[1]!r}; buttons: capture, confirm"
            return "ok"
        if words == ["state"]:
            return json.dumps(self.state())
        if words == ["history"]:
            return json.dumps(self._history_json())
        return f"error unknown command {line!r}; commands: press capture | press confirm | state | history"

    def close(self) -> None:
        self._stop_thread()
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
