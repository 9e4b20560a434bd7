"""Helpers for the kit daemon tests: sheet photos, a kit file with simulated hardware, the daemon as a process.

Sockets live under a short /tmp folder (a Unix socket path is limited to 108 bytes; pytest's tmp paths
are longer). Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from conftest import PPWP, REGISTERED, wait_for

from tpskit.demo_kit import simulated_hardware_toml
from tpskit.firmware.sim_client import history as sim_history
from tpskit.firmware.sim_client import press as sim_press


# ------------------------------------------------------------------------------------------ photos
@dataclass(frozen=True)
class SheetPhoto:
    jpeg: bytes
    values: dict[str, int]  # what the officer wrote


def _template() -> Any:
    from tpskit.forms import load_templates

    return next(t for t in load_templates().values() if t.id == PPWP)


def make_sheet(tps: str, seed: int, *, severity: str = "clean", bump: dict[str, int] | None = None,
               bad: str | None = None) -> SheetPhoto:
    """A filled PPWP sheet of `tps` photographed by the simulated kit camera.

    `bump`: the officer's slips, added to consistent values (e.g. {"paslon_01": 11}: the sums no longer
    balance). `bad`: a capture the quality gate refuses (a key of BAD_CAPTURES).
    """
    from tpskit.sheets.bad_captures import BAD_CAPTURES
    from tpskit.sheets.camera import photograph
    from tpskit.sheets.digits_data import load_validation_digits
    from tpskit.sheets.fill import fill_sheet
    from tpskit.sheets.results import random_result

    template = _template()
    rng = np.random.default_rng(seed)
    values = random_result(template, rng, registered_voters=REGISTERED)
    for name, delta in (bump or {}).items():
        values = {**values, name: values[name] + delta}
    sheet = fill_sheet(template, tps, values, rng, load_validation_digits(), severity=severity)
    if bad is not None:
        return SheetPhoto(BAD_CAPTURES[bad](sheet, rng, severity=severity), values)
    return SheetPhoto(photograph(sheet.page, rng, severity), values)


_READER: Any = None


def read_photo(jpeg: bytes, tps: str) -> Any:
    """What the kit's reader makes of a photo (the committed model, loaded once)."""
    global _READER
    from tpskit.edge.reader.pipeline import ReadOptions, read_sheet

    if _READER is None:
        from tpskit.edge.reader.digit_model import load_digit_model
        from tpskit.forms import load_templates

        _READER = (load_templates(), load_digit_model())
    templates, model = _READER
    return read_sheet(jpeg, templates, model, ReadOptions(expected_tps=tps, registered_voters=REGISTERED))


def photo_folder(base: Path, *photos: SheetPhoto) -> Path:
    """A folder the simulated camera serves in name order."""
    base.mkdir(parents=True, exist_ok=True)
    for i, p in enumerate(photos):
        (base / f"{i:03d}.jpg").write_bytes(p.jpeg)
    return base


# ------------------------------------------------------------------------------------------ kit file
@dataclass
class SimKit:
    """A provisioned kit (from the trust chain's rig) switched to simulated camera and controls."""

    config_path: Path
    controls_socket: Path
    control_socket: Path
    photos: Path


def short_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="tk-", dir="/tmp"))


def simulate(config_path: Path, photos: Path, sock_dir: Path, *, auto_send_ok: bool = False,
             extra: str = "") -> SimKit:
    with open(config_path, "a") as f:
        f.write(simulated_hardware_toml(photos, sock_dir, auto_send_ok=auto_send_ok, offline_after_s=1.0,
                                        extra=extra))
    return SimKit(config_path, sock_dir / "buttons.sock", sock_dir / "kit.sock", photos)


# ------------------------------------------------------------------------------------------ the daemon process
@dataclass
class DaemonProc:
    """`tpskit kit run` as a real process (SIGKILL-able), driven through its two sockets."""

    kit: SimKit
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _socks: list[Path] = field(default_factory=list)

    def start(self) -> DaemonProc:
        self.starts += 1
        out = open(self.log, "ab")  # noqa: SIM115 - the child keeps it
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "tpskit.cli", "kit", "run", "--config",
                                      str(self.kit.config_path)], stdout=out, stderr=out, env=env)
        out.close()
        wait_for(self._answers, 60, "the kit daemon's control socket")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"kit daemon exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
        try:
            return self.status()["state"] not in ("", None)
        except (OSError, ValueError):
            return False

    def command(self, line: str) -> Any:
        from tpskit.edge.control import control

        return control(self.kit.control_socket, line)

    def status(self) -> dict[str, Any]:
        return self.command("status")

    def press(self, button: str) -> None:
        sim_press(self.kit.controls_socket, button)

    def history(self) -> list[dict[str, Any]]:
        return sim_history(self.kit.controls_socket)

    def signals(self) -> list[str]:
        return [h["value"] for h in self.history() if h["kind"] == "signal"]

    def messages(self) -> list[str]:
        return [h["value"]["text"] for h in self.history() if h["kind"] == "message"]

    def wait_state(self, *states: str, timeout: float = 60) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"kit daemon exited {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            s = self.status()
            return s if s["state"] in states else None

        return wait_for(reached, timeout, f"kit state {' or '.join(states)}")

    def events(self, event_id: str) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{") and f'"event": "{event_id}"' in line:
                out.append(json.loads(line))
        return out

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def cleanup(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
