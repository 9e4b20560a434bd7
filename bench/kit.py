"""Kit daemon latency: button press -> signed and queued, and -> the district's receipt, over N presses.

Starts its own district (CA, mosquitto on a free loopback port, the district service in this process) and one
kit, pre-generates the photos (generation is not timed), then runs `tpskit kit run` as a process with the
simulated camera serving them and presses Capture through the control socket, one sheet at a time. The
daemon times each stage itself (from the press event to the outbox commit and to the receipt) and logs
it; this script reads those lines. Peak RSS is the daemon's VmHWM.

    .venv/bin/python bench/kit.py [--presses 100] [--photos 10]
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tpskit.localhost import free_port, wait_for
from tpskit.progress import progress

TPS = "3201012001001"
REGISTERED = 250


def make_photos(folder: Path, n: int) -> None:
    import numpy as np

    from tpskit.forms import load_templates
    from tpskit.sheets.camera import photograph
    from tpskit.sheets.digits_data import load_validation_digits
    from tpskit.sheets.fill import fill_sheet
    from tpskit.sheets.results import random_result

    template = next(t for t in load_templates().values() if t.id == "c-hasil-ppwp-2024")
    digits = load_validation_digits()
    folder.mkdir(parents=True)
    with progress(range(n), n, "photos") as items:
        for i in items:
            rng = np.random.default_rng(1000 + i)
            values = random_result(template, rng, registered_voters=REGISTERED)
            sheet = fill_sheet(template, TPS, values, rng, digits, severity="normal")
            (folder / f"{i:03d}.jpg").write_bytes(photograph(sheet.page, rng, "normal"))


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def events(log: Path, event_id: str) -> list[dict[str, Any]]:
    tag = f'"event": "{event_id}"'
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{") and tag in line]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=100)
    ap.add_argument("--photos", type=int, default=10, help="distinct photos, served in a loop")
    args = ap.parse_args()

    from tpskit.district.config import load_district_config
    from tpskit.district.service import DistrictService
    from tpskit.edge.control import control
    from tpskit.firmware.sim_client import press
    from tpskit.provisioning.district import bench_kit, district_init

    base = Path(tempfile.mkdtemp(prefix="tk-bench-", dir="/tmp"))
    mosq = None
    svc = None
    daemon = None
    try:
        t0 = time.monotonic()
        make_photos(base / "photos", args.photos)
        print(f"generated {args.photos} photos in {time.monotonic() - t0:.1f} s (not timed below)", file=sys.stderr)
        csv = base / "tps.csv"
        csv.write_text(f"tps,registered_voters\n{TPS},{REGISTERED}\n")
        port = free_port()
        d = district_init(base / "district", csv, district_id="kab-bench", broker_port=port, bind="127.0.0.1",
                          run_as=getpass.getuser() if os.geteuid() == 0 else None)
        kit = bench_kit(d.root, "kit-bench", TPS, base / "kit")
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        mosq = subprocess.Popen([mosquitto, "-c", str(d.broker_dir / "mosquitto.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: _connectable(port), 15, "mosquitto")
        svc = DistrictService(load_district_config(d.config_path)).start()
        assert svc.wait_ready(15), "district service did not subscribe"

        cfg_path = kit.folder / "kit.toml"
        with open(cfg_path, "a") as f:
            f.write(f"""
[camera]
backend = "simulated"
[camera.simulated]
source = "{base / 'photos'}"
[controls]
backend = "simulated"
simulated_socket = "{base / 'b.sock'}"
screen_file = "{base / 'screen.json'}"
[dev]
allow_simulated_hardware = true
[daemon]
control_socket = "{base / 'k.sock'}"
auto_send_ok = true
""")
        log = base / "kit.log"
        with open(log, "ab") as out:
            daemon = subprocess.Popen([sys.executable, "-m", "tpskit.cli", "kit", "run", "--config", str(cfg_path)],
                                      stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for(lambda: _status(control, base / "k.sock"), 60, "the kit daemon")
        confirms = refused = 0
        with progress(range(args.presses), args.presses, "presses") as presses:
            for i in presses:
                press(base / "b.sock", "capture")
                state = wait_for(lambda i=i: len(events(log, "kit.read")) + len(events(log, "kit.refused")) > i
                                 and _status(control, base / "k.sock"), 60, "the reading")["state"]
                if state == "rejected":
                    refused += 1
                    continue
                if state == "review":  # not all-ok: the officer confirms (timed from that press)
                    confirms += 1
                    press(base / "b.sock", "confirm")
                n = i + 1 - refused
                wait_for(lambda n=n: len(events(log, "kit.receipt")) >= n, 60, f"receipt {n}")
        rss_mb = _vm_hwm_kb(daemon.pid) / 1024
        reads, signed, receipts = events(log, "kit.read"), events(log, "kit.signed"), events(log, "kit.receipt")
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(20)
        if svc is not None:
            svc.stop()
        if mosq is not None:
            mosq.terminate()
            mosq.wait(10)
        shutil.rmtree(base, ignore_errors=True)

    rows = [
        ("capture (simulated camera)", [r["capture_ms"] for r in reads]),
        ("read (reader + int8 model)", [r["read_ms"] for r in reads]),
        ("sign + outbox commit", [s["sign_ms"] for s in signed]),
        ("press -> signed and queued", [s["press_to_queued_ms"] for s in signed]),
        ("press -> receipt (green)", [r["press_to_ack_ms"] for r in receipts]),
    ]
    print(f"| stage ({args.presses} presses, {args.photos} distinct photos, {confirms} needed Confirm, "
          f"{refused} refused) "
          "| median ms | p95 ms |")
    print("|---|---:|---:|")
    for name, xs in rows:
        print(f"| {name} | {statistics.median(xs):.1f} | {pct(xs, 0.95):.1f} |")
    print(f"| daemon peak RSS | {rss_mb:.0f} MB | |")
    q, a = rows[3][1], rows[4][1]
    print(f"press_to_queued_median_ms={statistics.median(q):.1f} press_to_ack_median_ms={statistics.median(a):.1f} "
          f"daemon_rss_mb={rss_mb:.0f}")
    return 0


def _connectable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _status(control: Any, sock: Path) -> dict[str, Any] | None:
    try:
        s = control(sock, "status")
    except (OSError, ValueError):
        return None
    return s if s["state"] not in ("capturing", "reading", "signing") else None


def _vm_hwm_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
