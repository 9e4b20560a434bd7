"""Demo hook: drive one provisioned kit through its daemon with simulated button presses.

`drive_kit(kit_config, photos)` takes a kit folder as provisioning makes it (kit.toml, kit.key, kit.pem,
ca.pem), with the broker and the district service already running, and:
  1. writes `kit-daemon.toml` next to kit.toml: the same kit with the simulated camera serving `photos`
     and simulated buttons (a test bench, so `[dev] allow_simulated_hardware = true`);
  2. starts `tpskit kit run` as a process;
  3. presses Capture, shows what the officer sees; corrects fields in review when the true values are
     given (as the officer would, reading the sheet); presses Confirm;
  4. waits for the district's receipt (the green light), prints it, and stops the daemon.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpskit.localhost import wait_for

Echo = Callable[[str], None]


@dataclass
class KitRun:
    """What happened: the final state, the submission, the officer's screens and the lights shown."""

    state: str
    submission_id: str | None
    values: dict[str, Any] | None
    messages: list[str] = field(default_factory=list)
    signals: list[str] = field(default_factory=list)
    log: Path | None = None
    #: The officer's review page of the daemon (its address on loopback).
    page: str | None = None
    #: With keep_running: stops the daemon (the caller shows its page meanwhile).
    stop: Callable[[], None] | None = None


def simulated_hardware_toml(photos: Path, sock_dir: Path, *, auto_send_ok: bool = False,
                            offline_after_s: float = 2.0, extra: str = "") -> str:
    """The kit-config tables that put a bench kit on the simulated camera (serving `photos`) and buttons."""
    return f"""
# A bench kit with the simulated camera and buttons (never on a provisioned kit in the field).
[camera]
backend = "simulated"

[camera.simulated]
source = "{photos}"

[controls]
backend = "simulated"
simulated_socket = "{sock_dir / 'buttons.sock'}"
screen_file = "{sock_dir / 'screen.json'}"

[dev]
allow_simulated_hardware = true

[daemon]
control_socket = "{sock_dir / 'kit.sock'}"
auto_send_ok = {"true" if auto_send_ok else "false"}
offline_after_s = {offline_after_s}
{extra}

# The review page on any free port (several bench kits may run at once); `status` says where.
[screen]
port = 0
"""


def simulated_config(kit_config: Path, photos: Path, sock_dir: Path, *, auto_send_ok: bool = False) -> Path:
    """`kit-daemon.toml` beside `kit_config` (so its relative paths still hold) with simulated hardware."""
    text = Path(kit_config).read_text()
    for table in ("[camera]", "[controls]", "[dev]", "[daemon]"):
        if table in text:
            raise ValueError(f"{kit_config} already has a {table} table; drive_kit needs the provisioned file")
    out = Path(kit_config).with_name("kit-daemon.toml")
    out.write_text(text + simulated_hardware_toml(photos, sock_dir, auto_send_ok=auto_send_ok))
    return out


def drive_kit(kit_config: Path, photos: Sequence[bytes], *, truth: Mapping[str, int] | None = None,
              timeout: float = 60.0, echo: Echo = print, work_dir: Path | None = None,
              keep_running: bool = False) -> KitRun:
    """Run the kit daemon on `photos` (JPEG bytes, served in order), press Capture (again after a refused
    photo, while photos remain), then Confirm, and wait for the receipt. Returns what the officer saw.
    With `keep_running`, the daemon (and its review page) keeps running until the returned run's `stop()`."""
    from tpskit.edge.control import control
    from tpskit.firmware.sim_client import history, press

    kit_config = Path(kit_config).resolve()
    work = Path(work_dir) if work_dir else kit_config.parent / "daemon"
    folder = work / "photos"
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for i, jpeg in enumerate(photos):
        (folder / f"{i:03d}.jpg").write_bytes(jpeg)
    socks = Path(tempfile.mkdtemp(prefix="tpskit-kit-", dir="/tmp"))  # Unix socket paths must stay short
    cfg_path = simulated_config(kit_config, folder, socks)
    log = work / "kit-daemon.log"
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "tpskit.cli", "kit", "run", "--config", str(cfg_path)],
                                stdout=out, stderr=out, env={**env, "PYTHONUNBUFFERED": "1"})

    def status() -> dict[str, Any] | None:
        if proc.poll() is not None:
            raise RuntimeError(f"the kit daemon exited with {proc.returncode}; see {log}")
        try:
            return control(socks / "kit.sock", "status")
        except (OSError, ValueError):
            return None

    def reach(*states: str) -> dict[str, Any]:
        return wait_for(lambda: (s := status()) is not None and s["state"] in states and s, timeout,
                     f"kit state {' or '.join(states)}")

    shown: list[str] = []

    def officer_sees(s: dict[str, Any]) -> None:
        if s.get("message") and (not shown or shown[-1] != s["message"]):
            shown.append(s["message"])
            echo(f"  [{s['state']:>12}] screen: " + s["message"].replace("\n", "\n" + " " * 24))

    def stop() -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        shutil.rmtree(socks, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            cfg_path.unlink()

    kept = False
    try:
        s = reach("idle", "queued", "acknowledged", "fault")
        officer_sees(s)
        if s["state"] == "fault":
            raise RuntimeError(f"the kit refuses to capture: {s['message']}")
        for attempt in range(len(photos)):
            echo(f"  officer presses CAPTURE (photo {attempt + 1})")
            done = s["attempts"]
            press(socks / "buttons.sock", "capture")
            s = wait_for(lambda done=done: (t := status()) is not None and t["attempts"] > done and t, timeout,
                      "the photo to be read")
            officer_sees(s)
            if s["state"] != "rejected":
                break
        if s["state"] in ("rejected", "fault"):
            return KitRun(s["state"], None, None, shown, _signals(history(socks / "buttons.sock")), log)
        reading = control(socks / "kit.sock", "pending")
        values = {n: f["value"] for n, f in reading["fields"].items()} if reading else None
        if values:
            echo("  values read: " + ", ".join(f"{n}={v}" for n, v in values.items()))
        if s["state"] == "review" and truth is not None:
            for name, f in reading["fields"].items():
                # The officer checks the doubtful fields against the sheet, and any other value that differs
                # from it (the Confirm button sends nothing while a check fails).
                if f["status"] == "review" or f["value"] != truth[name]:
                    echo(f"  officer corrects {name}: {f['value']} -> {truth[name]} (from the sheet)")
                    control(socks / "kit.sock", f"correct {name} {truth[name]}")
            s = reach("confirm", "review")
            officer_sees(s)
        echo("  officer presses CONFIRM")
        press(socks / "buttons.sock", "confirm")
        s = reach("acknowledged", "rejected", "fault")
        officer_sees(s)
        lights = _signals(history(socks / "buttons.sock"))
        echo(f"  lights and buzzer: {' -> '.join(lights)}")
        kept = keep_running
        return KitRun(s["state"], s.get("submission"), values, shown, lights, log, s.get("page"),
                      stop if keep_running else None)
    finally:
        if not kept:
            stop()


def _signals(hist: list[dict[str, Any]]) -> list[str]:
    return [h["value"] for h in hist if h["kind"] == "signal"]


def print_receipt(run: KitRun, echo: Echo = print) -> None:
    echo(f"  result: {run.state}, submission {run.submission_id}")
    if run.values is not None:
        echo("  " + json.dumps(run.values))
