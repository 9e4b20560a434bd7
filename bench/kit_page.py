"""The kit review page: first paint after a reading, and what serving it costs the kit daemon in memory.

Starts one provisioned kit on the simulated camera and buttons (no broker: the kit is offline, which the page
and the reading do not need), as `tpskit kit run` processes:
- without the page ([screen] enabled = false): one reading, then the daemon's VmRSS and VmHWM;
- with the page, Chromium showing it at 720x1280: --rounds readings; per reading, the time from the daemon
  entering `confirm` (its log's timestamp) to the page's paint of it (the page stamps the frame after it drew
  that view with the browser's clock; same machine, same clock); then the daemon's VmRSS and VmHWM with the
  browser connected.

bench/pages.py prints these as kit_page_paint_ms and kit_rss_mb; alone:

    nice -n 10 .venv/bin/python bench/kit_page.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tpskit.localhost import free_port, wait_for

TPS = "3201012001001"


def _proc_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _events(log: Path, event_id: str) -> list[dict[str, Any]]:
    tag = f'"event": "{event_id}"'
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{") and tag in line]


def _ms(ts: str) -> float:
    return dt.datetime.fromisoformat(ts).timestamp() * 1000


class _Kit:
    def __init__(self, base: Path, cfg: Path, name: str):
        self.base, self.cfg, self.log = base, cfg, base / f"{name}.log"
        self.sock, self.buttons = base / f"{name}-k.sock", base / f"{name}-b.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, screen: str) -> _Kit:
        from tpskit.edge.control import control

        text = self.cfg.read_text() + f"""
[camera]
backend = "simulated"
[camera.simulated]
source = "{self.base / 'photos'}"
[controls]
backend = "simulated"
simulated_socket = "{self.buttons}"
screen_file = "{self.base / 'screen.json'}"
[dev]
allow_simulated_hardware = true
[daemon]
control_socket = "{self.sock}"
[screen]
{screen}
"""
        path = self.cfg.with_name(self.log.stem + ".toml")
        path.write_text(text)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "tpskit.cli", "kit", "run", "--config", str(path)],
                                         stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})

        def up() -> dict[str, Any] | None:
            try:
                return control(self.sock, "status")
            except (OSError, ValueError):
                return None

        self.status = wait_for(up, 60, "the kit daemon")
        return self

    def command(self, line: str) -> Any:
        from tpskit.edge.control import control

        return control(self.sock, line)

    def read_one(self) -> None:
        """Capture; wait for the reading to wait for Confirm (or review, or a refusal)."""
        from tpskit.firmware.sim_client import press

        before = self.command("status")["attempts"]
        press(self.buttons, "capture")
        wait_for(lambda: self.command("status")["attempts"] > before, 60, "the reading")

    def rss_mb(self) -> tuple[float, float]:
        assert self.proc is not None
        return _proc_kb(self.proc.pid, "VmRSS") / 1024, _proc_kb(self.proc.pid, "VmHWM") / 1024

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def measure(rounds: int = 5) -> dict[str, Any]:
    """kit_page_paint_ms (median), the paints, and the daemon's RSS without and with the page."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from kit import make_photos

    from tpskit.provisioning.district import bench_kit, district_init
    from tpskit.web.browser import set_viewport, start_chromium

    base = Path(tempfile.mkdtemp(prefix="tk-page-", dir="/tmp"))
    kits: list[_Kit] = []
    driver = None
    try:
        make_photos(base / "photos", rounds + 1)
        csv = base / "tps.csv"
        csv.write_text(f"tps,registered_voters\n{TPS},250\n")
        d = district_init(base / "district", csv, district_id="kab-bench", broker_port=free_port(), bind="127.0.0.1")
        cfg = bench_kit(d.root, "kit-bench", TPS, base / "kit").folder / "kit.toml"

        plain = _Kit(base, cfg, "plain").start("enabled = false")
        kits.append(plain)
        plain.read_one()
        without = plain.rss_mb()
        plain.stop()

        kit = _Kit(base, cfg, "page").start("port = 0")
        kits.append(kit)
        url = kit.command("status")["page"]
        driver = start_chromium()
        set_viewport(driver, 720, 1280)
        driver.get(url)
        wait_for(lambda: driver.execute_script("return document.body.dataset.state") == "idle", 30, "the page")
        paints = []
        for _ in range(rounds):
            n = len([e for e in _events(kit.log, "kit.state") if e["new"] in ("confirm", "review")])
            kit.read_one()
            entered = wait_for(lambda n=n: ([e for e in _events(kit.log, "kit.state")
                                             if e["new"] in ("confirm", "review")][n:] or [None])[0], 30, "confirm")
            at = _ms(entered["ts"])

            def painted(at: float = at) -> float | None:
                got = driver.execute_script("const b = document.body.dataset;"
                                            "return ['check', 'review'].includes(b.state) ? b.paintedMs : null;")
                return float(got) if got and float(got) >= at else None

            paints.append(wait_for(painted, 30, "the page's paint") - at)
        with_page = kit.rss_mb()
    finally:
        if driver is not None:
            driver.quit()
        for k in kits:
            k.stop()
        shutil.rmtree(base, ignore_errors=True)
    return {"kit_page_paint_ms": statistics.median(paints), "paints": paints, "rss_without_mb": without,
            "rss_with_mb": with_page}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    t = time.perf_counter()
    m = measure(args.rounds)
    rows = [
        ("first paint after a reading (daemon in confirm -> page painted), median / worst",
         f"{m['kit_page_paint_ms']:.0f} / {max(m['paints']):.0f} ms (target <= 300; {len(m['paints'])} readings)"),
        ("kit daemon without the page: RSS / peak", f"{m['rss_without_mb'][0]:.0f} / {m['rss_without_mb'][1]:.0f} MB"),
        ("kit daemon with the page and a browser on it: RSS / peak",
         f"{m['rss_with_mb'][0]:.0f} / {m['rss_with_mb'][1]:.0f} MB (target <= 200)"),
        ("the page's share of the RSS", f"{m['rss_with_mb'][0] - m['rss_without_mb'][0]:.0f} MB (target <= 40)"),
    ]
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"{a.ljust(width)}  {b}")
    print(f"({time.perf_counter() - t:.0f} s)")
    print(f"kit_page_paint_ms={m['kit_page_paint_ms']:.0f} kit_rss_mb={m['rss_with_mb'][0]:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
