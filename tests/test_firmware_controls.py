"""Buttons, lights, buzzer: the simulated backend through its socket, and GpioControls against a FAKE RPi.GPIO."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tpskit.firmware import sim_client
from tpskit.firmware.config import ControlsConfig
from tpskit.firmware.controls import (
    SIGNALS,
    Beep,
    Blink,
    Button,
    GpioControls,
    Leds,
    Signal,
    SimulatedControls,
    make_controls,
    make_screen,
    readme_table,
)
from tpskit.officer import OfficerMessage


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimulatedControls]:
    controls = make_controls(ControlsConfig(backend="simulated", simulated_socket=tmp_path / "ctl.sock"))
    assert isinstance(controls, SimulatedControls)
    yield controls
    controls.close()


def test_presses_from_another_process_arrive_on_the_event_queue(sim: SimulatedControls) -> None:
    code = ("import sys; from tpskit.firmware.sim_client import press; "
            "press(sys.argv[1], 'capture'); press(sys.argv[1], 'confirm')")
    subprocess.run([sys.executable, "-c", code, str(sim.socket_path)], check=True, timeout=30)
    first, second = sim.wait_for_press(timeout=5), sim.wait_for_press(timeout=5)
    assert first is not None and second is not None
    assert (first.button, second.button) == (Button.CAPTURE, Button.CONFIRM)
    assert sim.wait_for_press(timeout=0) is None


def test_an_unknown_button_or_command_is_refused_in_words(sim: SimulatedControls) -> None:
    with pytest.raises(ValueError, match="buttons: capture, confirm"):
        sim_client.press(sim.socket_path, "shutter")
    assert sim_client.send(sim.socket_path, "reboot").startswith("error unknown command")
    assert sim.events.empty()


def test_signals_are_recorded_as_lights_and_beeps_from_the_one_table(sim: SimulatedControls) -> None:
    sim.signal(Signal.READY)
    sim.signal(Signal.BUSY_BEEP)  # beeps, leaves the lights alone
    sim.signal(Signal.REFUSED)
    assert sim.signals() == [Signal.READY, Signal.BUSY_BEEP, Signal.REFUSED]
    assert [v for k, v in sim.history if k in ("leds", "beep")] == [
        Leds(green=Blink.ON), Beep.SHORT, Leds(red=Blink.FAST), Beep.TRIPLE]
    state = sim_client.state(sim.socket_path)
    assert state["leds"] == {"green": "off", "amber": "off", "red": "fast"}
    assert state["signal"] == "refused" and state["beep"] == "triple"


def test_steady_lights_reach_the_outputs(sim: SimulatedControls) -> None:
    sim.set_leds(Blink.ON, Blink.OFF, Blink.ON)
    assert sim.flush()
    assert sim_client.state(sim.socket_path)["outputs"] == {
        "green": True, "amber": False, "red": True, "buzzer": False}


def test_the_last_officer_message_is_in_the_state(sim: SimulatedControls) -> None:
    screen = make_screen(sim.cfg, sim)
    screen.show(OfficerMessage("refused.too_dark", "Foto terlalu gelap", "Photo too dark", "action"))
    shown = sim_client.state(sim.socket_path)["message"]
    assert (shown["key"], shown["id"], shown["en"], shown["level"]) == (
        "refused.too_dark", "Foto terlalu gelap", "Photo too dark", "action")
    assert sim_client.history(sim.socket_path)[-1]["kind"] == "message"


def test_every_signal_is_in_the_readme_table() -> None:
    table = readme_table()
    assert set(SIGNALS) == set(Signal)
    assert all(f"| {s.value} |" in table for s in Signal)


# ---- GpioControls against a FAKE RPi.GPIO (installed into sys.modules by the fixture) ----

class FakeGPIO(types.ModuleType):
    """A FAKE of RPi.GPIO recording calls; `levels` is what GPIO.input reads."""

    BCM, OUT, IN, LOW, HIGH = "BCM", "OUT", "IN", 0, 1
    PUD_UP, PUD_DOWN, FALLING, RISING = "PUD_UP", "PUD_DOWN", "FALLING", "RISING"

    def __init__(self) -> None:
        super().__init__("RPi.GPIO")
        self.calls: list[tuple[Any, ...]] = []
        self.callbacks: dict[int, Any] = {}
        self.levels: dict[int, int] = {}
        self.out: dict[int, int] = {}

    def setwarnings(self, flag: bool) -> None:
        self.calls.append(("setwarnings", flag))

    def setmode(self, mode: str) -> None:
        self.calls.append(("setmode", mode))

    def setup(self, pin: int, direction: str, pull_up_down: str | None = None, initial: int | None = None) -> None:
        self.calls.append(("setup", pin, direction, pull_up_down, initial))

    def add_event_detect(self, pin: int, edge: str, callback: Any = None, bouncetime: int | None = None) -> None:
        self.calls.append(("add_event_detect", pin, edge, bouncetime))
        self.callbacks[pin] = callback

    def remove_event_detect(self, pin: int) -> None:
        self.calls.append(("remove_event_detect", pin))

    def input(self, pin: int) -> int:
        return self.levels.get(pin, self.HIGH)

    def output(self, pin: int, value: int) -> None:
        self.out[pin] = value

    def cleanup(self, pins: Any = None) -> None:
        self.calls.append(("cleanup", sorted(pins)))

    def edge(self, pin: int, level: int) -> None:
        """Simulate RPi.GPIO's callback thread firing for `pin` while it reads `level`."""
        self.levels[pin] = level
        self.callbacks[pin](pin)


@pytest.fixture
def fake_gpio(monkeypatch: pytest.MonkeyPatch) -> FakeGPIO:
    gpio = FakeGPIO()
    rpi = types.ModuleType("RPi")
    rpi.GPIO = gpio  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", rpi)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", gpio)
    return gpio


def test_gpio_buttons_use_pull_ups_falling_edges_and_the_bouncetime(fake_gpio: FakeGPIO) -> None:
    cfg = ControlsConfig.model_validate({"debounce_ms": 120})
    controls = make_controls(cfg)
    try:
        assert isinstance(controls, GpioControls)
        assert fake_gpio.calls[:2] == [("setwarnings", False), ("setmode", "BCM")]
        p = cfg.pins
        for pin in (p.capture_button, p.confirm_button):
            assert ("setup", pin, "IN", "PUD_UP", None) in fake_gpio.calls
            assert ("add_event_detect", pin, "FALLING", 120) in fake_gpio.calls
        for pin in (p.led_green, p.led_amber, p.led_red, p.buzzer):
            assert ("setup", pin, "OUT", None, 0) in fake_gpio.calls
        fake_gpio.edge(p.capture_button, fake_gpio.LOW)   # held: a press
        fake_gpio.edge(p.confirm_button, fake_gpio.HIGH)  # released again already: a glitch
        press = controls.wait_for_press(timeout=1)
        assert press is not None and press.button == Button.CAPTURE
        assert controls.wait_for_press(timeout=0) is None
        controls.set_leds(Blink.OFF, Blink.ON, Blink.OFF)
        assert controls.flush()
        assert (fake_gpio.out[p.led_amber], fake_gpio.out[p.led_green]) == (1, 0)
    finally:
        controls.close()
    pins = sorted(cfg.pins.model_dump().values())
    assert fake_gpio.calls[-1] == ("cleanup", pins)
    assert fake_gpio.out[cfg.pins.led_amber] == 0


def test_gpio_buttons_to_3v3_use_pull_downs_and_rising_edges(fake_gpio: FakeGPIO) -> None:
    cfg = ControlsConfig.model_validate({"buttons_active_low": False})
    controls = make_controls(cfg)
    controls.close()
    assert ("setup", cfg.pins.capture_button, "IN", "PUD_DOWN", None) in fake_gpio.calls
    assert ("add_event_detect", cfg.pins.capture_button, "RISING", cfg.debounce_ms) in fake_gpio.calls


def test_gpio_setup_failure_says_what_to_check_and_releases_the_pins(
        fake_gpio: FakeGPIO, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: Any, **kw: Any) -> None:
        raise RuntimeError("Failed to add edge detection")
    monkeypatch.setattr(fake_gpio, "add_event_detect", refuse)
    with pytest.raises(RuntimeError, match="gpio group"):
        make_controls(ControlsConfig())
    assert fake_gpio.calls[-1][0] == "cleanup"


def test_fault_light_holds_the_fault_signal_until_systemd_stops_it(tmp_path: Path) -> None:
    sock = tmp_path / "fault.sock"
    kit = tmp_path / "kit.toml"
    kit.write_text(f'[controls]\nbackend = "simulated"\nsimulated_socket = "{sock}"\n[camera]\nbogus = 1\n')
    proc = subprocess.Popen([sys.executable, "-m", "tpskit.firmware.fault_light", "--config", str(kit)])
    try:
        deadline = time.monotonic() + 20
        state = None
        # Poll for the fault signal, not a fixed time: the socket is up a moment before the light is set.
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                state = sim_client.state(sock)
                if state["signal"] == "fault":
                    break
            except OSError:
                pass
            time.sleep(0.05)
        assert state is not None and state["signal"] == "fault" and state["leds"]["red"] == "on"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert not sock.exists()
