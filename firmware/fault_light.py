"""Hold the red light while the kit daemon cannot run (started by tpskit-kit-fault.service).

Reads only the `[controls]` table of the kit file, so a kit whose configuration is otherwise broken still
shows its fault. Runs until systemd stops it (when the kit daemon starts again).
"""

from __future__ import annotations

import argparse
import signal
import threading
import tomllib
from pathlib import Path

from .config import ControlsConfig
from .controls import Signal, make_controls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=Path("/etc/tpskit/kit.toml"))
    args = parser.parse_args(argv)
    try:
        table = tomllib.loads(args.config.read_text()).get("controls", {})
        cfg = ControlsConfig.model_validate(table)
    except (OSError, ValueError):
        cfg = ControlsConfig()  # the default board wiring: better a red light on the usual pin than none
    # Handlers first: systemd (or a test) may stop us as soon as the controls are up.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    controls = make_controls(cfg)
    try:
        controls.signal(Signal.FAULT)
        stop.wait()
    finally:
        controls.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
