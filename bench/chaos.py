"""Chaos: many kits deliver while the broker, the district service and the kits are killed (SIGKILL) and
restarted and the district's disk fills, on a seeded schedule; then everything comes back and the kits
drain their outboxes. Reports what was sent (signed into the kits' outboxes), stored, lost and
duplicated, and what the disk cost (results stored without their photo below the disk floor).

Real pieces: mosquitto with the generated configuration, `tpskit district serve` and one
`tpskit kit deliver` process per kit, each with its own outbox. As root the district's folder (database
and broker persistence) lives on a private tmpfs of --disk-mb (a mount namespace of its own, gone with
the run), so "the disk fills" is real: a ballast file takes it below the floor, or to full (ENOSPC).

    .venv/bin/python bench/chaos.py --seconds 1800 --kits 12         # the long run in BENCHMARKS.md
    tests/test_chaos.py runs a short one in the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/readings.py, also when a test imports this
from readings import reading_for

from tpskit.localhost import free_port, mosquitto_binary, wait_for

TPS_BASE = 3201012001000
FLOOR_MB = 24
DELIVERY = """
[delivery]
ack_timeout_s = 4.0
publish_timeout_s = 5.0
retry_initial_s = 0.2
retry_max_s = 1.0
"""
EVENTS = ("kill_kit", "kill_kit", "kill_district", "kill_broker", "fill_to_floor", "fill_disk")


class Proc:
    """One restartable process with its log."""

    def __init__(self, name: str, argv: list[str], log: Path, cwd: Path, ready: Any = None):
        self.name, self.argv, self.log, self.cwd, self.ready = name, argv, log, cwd, ready
        self.p: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.p = subprocess.Popen(self.argv, stdout=out, stderr=out, cwd=self.cwd)
        self.starts += 1
        if self.ready is not None:
            wait_for(lambda: self.alive() and self.ready(), 60, f"{self.name} ready")

    def alive(self) -> bool:
        if self.p is None or self.p.poll() is not None:
            if self.p is not None and self.ready is not None:
                raise RuntimeError(f"{self.name} exited {self.p.returncode}: {self.log.read_text()[-1500:]}")
            return False
        return True

    def kill(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)

    def stop(self) -> None:
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _ballast(disk: Path, leave_mb: float) -> int:
    """Fill `disk` until about `leave_mb` MB are free (0: until the filesystem refuses); bytes written."""
    path = disk / "ballast"
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    want = max(0, int(free - leave_mb * 2**20))
    written = 0
    chunk = b"\0" * 2**20
    with open(path, "ab") as f:
        try:
            while written < want or leave_mb == 0:
                f.write(chunk[: min(len(chunk), want - written)] if leave_mb else chunk)
                written += len(chunk)
                f.flush()
        except OSError:  # ENOSPC: full
            pass
    return written


def _outbox_rows(path: Path) -> list[tuple[str, str, str | None, str | None, str | None]]:
    if not path.exists():
        return []
    con = sqlite3.connect(path, timeout=30)
    try:
        return con.execute("SELECT submission_id, state, ack_status, ack_reason, receipt FROM outbox").fetchall()
    finally:
        con.close()


def run(seconds: float, kits: int = 6, interval: float = 1.0, seed: int = 1, period: float = 3.0,
        disk_mb: int = 128, work: Path | None = None, echo: Any = print) -> dict[str, Any]:
    """The chaos run itself (in the current mount namespace; see main)."""
    from tpskit.edge.config import load_kit_config
    from tpskit.edge.submit import sign_and_queue
    from tpskit.provisioning.district import bench_kit, district_init

    rnd = random.Random(seed)
    work = Path(work or tempfile.mkdtemp(prefix="tpskit-chaos-"))
    disk = work / "disk"
    disk.mkdir(parents=True, exist_ok=True)
    private_disk = False
    if disk_mb and os.environ.get("TPSKIT_CHAOS_NS") == "1":
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={disk_mb}m", "tmpfs", str(disk)], check=True)
        private_disk = True
    tps_codes = [str(TPS_BASE + i + 1) for i in range(kits)]
    (work / "tps.csv").write_text("tps,registered_voters\n" + "".join(f"{t},300\n" for t in tps_codes))
    port = free_port()
    root_user = getpass.getuser() if os.geteuid() == 0 else None
    d = district_init(disk / "district", work / "tps.csv", district_id="kab-chaos", broker_port=port,
                      bind="127.0.0.1", run_as=root_user)
    with d.config_path.open("a") as f:
        f.write(f"\n[limits]\nsubmissions_per_tps_hour = 100000\nmin_free_mb = {FLOOR_MB if private_disk else 0}\n")
    handles = []
    for i, tps in enumerate(tps_codes):
        kid = f"kit-{i:03d}"
        folder = bench_kit(d.root, kid, tps, work / "kits" / kid).folder
        with (folder / "kit.toml").open("a") as f:
            f.write(DELIVERY)
        handles.append((kid, tps, folder))
    py = [sys.executable, "-m", "tpskit.cli"]
    broker = Proc("broker", [mosquitto_binary(), "-c", str(d.broker_dir / "mosquitto.conf")], work / "broker.log",
                  work, ready=lambda: _listening(port))
    district_log = work / "district.log"

    def district_ready() -> bool:
        text = district_log.read_text(errors="replace") if district_log.exists() else ""
        return text.count('"district.ready"') >= district.starts

    district = Proc("district", [*py, "district", "serve", "--config", str(d.config_path)], district_log, d.root,
                    ready=district_ready)
    kit_procs = [Proc(kid, [*py, "kit", "deliver", "--config", str(folder / "kit.toml")], work / f"{kid}.log", folder)
                 for kid, _, folder in handles]
    figures: dict[str, Any] = {"seconds": seconds, "kits": kits, "private_disk_mb": disk_mb if private_disk else 0,
                               "events": dict.fromkeys(EVENTS, 0), "sign_refused": 0}
    stop = threading.Event()
    lock = threading.Lock()  # around restarts and the disk

    def produce() -> None:
        cfgs = [load_kit_config(folder / "kit.toml") for _, _, folder in handles]
        n = 0
        while not stop.is_set():
            for (_, tps, _), cfg in zip(handles, cfgs, strict=True):
                n += 1
                photo = b"\xff\xd8\xff\xe0" + os.urandom(16 * 1024) + b"\xff\xd9"
                try:
                    sign_and_queue(cfg, reading_for(tps, n), photo)
                except Exception:  # a kit's own disk or lock: the officer would be told; count it
                    figures["sign_refused"] += 1
            stop.wait(interval)

    round_done = threading.Event()  # every kind of event happened at least once

    def chaos() -> None:
        kinds = list(EVENTS if private_disk else EVENTS[:4])
        todo: list[str] = []
        while not stop.wait(period * rnd.uniform(0.5, 1.5)):
            if not todo:  # every kind once per round, in a seeded order: a short run sees each
                todo = rnd.sample(kinds, len(kinds))
            event = todo.pop()
            figures["events"][event] += 1
            with lock:
                if event == "kill_kit":
                    for p in rnd.sample(kit_procs, max(1, len(kit_procs) // 3)):
                        p.kill()
                    stop.wait(rnd.uniform(0.2, 1.5))
                    for p in kit_procs:
                        if not p.alive():
                            p.start()
                elif event in ("kill_district", "kill_broker"):
                    p = district if event == "kill_district" else broker
                    p.kill()
                    stop.wait(rnd.uniform(0.5, 2.5))
                    p.start()
                else:
                    _ballast(disk, FLOOR_MB / 2 if event == "fill_to_floor" else 0)
                    stop.wait(rnd.uniform(1.0, 3.0))
                    (disk / "ballast").unlink(missing_ok=True)
            if not todo:
                round_done.set()

    t0 = time.monotonic()
    broker.start()
    district.start()
    for p in kit_procs:
        p.start()
    threads = [threading.Thread(target=produce, daemon=True), threading.Thread(target=chaos, daemon=True)]
    try:
        for t in threads:
            t.start()
        # The time asked for, and at least one whole round of events: on a loaded machine the restarts are
        # slow and `seconds` alone ended a short run before every kind of chaos had happened.
        while time.monotonic() - t0 < seconds or not round_done.is_set():
            if time.monotonic() - t0 > max(300.0, 20 * seconds):
                break  # the figures then show the kinds that never happened
            time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(60)
        # Everything back; the kits drain their outboxes.
        (disk / "ballast").unlink(missing_ok=True)
        for p in (broker, district, *kit_procs):
            if not p.alive():
                p.start()
        outboxes = [folder / "data" / "outbox.sqlite" for _, _, folder in handles]

        def drained() -> bool:
            return all(r[1] in ("acknowledged", "rejected") for box in outboxes for r in _outbox_rows(box))

        drain_start = time.monotonic()
        with contextlib.suppress(TimeoutError):
            wait_for(drained, max(120.0, seconds), "every kit's outbox answered", interval=1.0)
        figures["drain_s"] = round(time.monotonic() - drain_start, 1)
    finally:
        stop.set()
        for p in (*kit_procs, district, broker):
            p.stop()
    rows = [r for box in outboxes for r in _outbox_rows(box)]
    sent = {r[0] for r in rows}
    con = sqlite3.connect(d.root / "district.sqlite", timeout=30)
    try:
        stored_rows = con.execute("SELECT submission_id, evidence_sha256 FROM results").fetchall()
        photos = {r[0] for r in con.execute("SELECT submission_id FROM evidence")}
    finally:
        con.close()
    stored = {r[0] for r in stored_rows}
    acked = {r[0] for r in rows if r[1] == "acknowledged"}
    figures.update({
        "sent": len(sent), "stored": len(sent & stored), "lost": len(sent - stored),
        "duplicated": len(stored_rows) - len(stored), "acknowledged": len(acked),
        "acknowledged_not_stored": len(acked - stored),
        "rejected": sorted({(r[3] or "").split(":")[0] for r in rows if r[1] == "rejected"}),
        "rejected_count": sum(1 for r in rows if r[1] == "rejected"),
        "unanswered": sum(1 for r in rows if r[1] not in ("acknowledged", "rejected")),
        "stored_without_photo": len(stored - photos),
        "restarts": {"broker": broker.starts - 1, "district": district.starts - 1,
                     "kits": sum(p.starts - 1 for p in kit_procs)},
        "ran_s": round(time.monotonic() - t0, 1)})
    echo(json.dumps(figures))
    if private_disk:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    shutil.rmtree(work, ignore_errors=True)
    return figures


def _args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--kits", type=int, default=6)
    ap.add_argument("--interval", type=float, default=1.0, help="each kit signs a result this often (s)")
    ap.add_argument("--period", type=float, default=3.0, help="mean seconds between chaos events")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--disk-mb", type=int, default=128, help="the district's private tmpfs (root only); 0: none")
    ap.add_argument("--json", action="store_true", help="print the figures as one JSON line only")
    return ap.parse_args(argv)


def measure(argv: list[str]) -> dict[str, Any]:
    """The figures of one run. As root, the run happens again in a mount namespace of its own, so that the
    district's tmpfs (and everything started on it) goes with it."""
    args = _args(argv)
    inner = os.environ.get("TPSKIT_CHAOS_NS") == "1"
    if args.disk_mb and os.geteuid() == 0 and not inner and shutil.which("unshare"):
        env = {**os.environ, "TPSKIT_CHAOS_NS": "1"}
        done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                               str(Path(__file__).resolve()), *argv, "--json"], env=env, capture_output=True,
                              text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith('{"seconds"')]
        if not lines:
            raise RuntimeError(f"the chaos run failed: {done.stdout[-3000:]}{done.stderr[-3000:]}")
        return json.loads(lines[-1])
    return run(args.seconds, args.kits, args.interval, args.seed, args.period, args.disk_mb if inner else 0,
               echo=lambda *_: None)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _args(argv)
    figures = measure(argv)
    if args.json:
        print(json.dumps(figures))
        return 1 if figures["lost"] or figures["duplicated"] or figures["acknowledged_not_stored"] else 0
    ev = figures["events"]
    print("| measure | value |\n|---|---|")
    print(f"| run | {figures['ran_s']} s ({figures['seconds']:.0f} s of chaos, then {figures['drain_s']} s to drain), "
          f"{figures['kits']} kits |")
    print(f"| chaos events | {ev['kill_kit']} kit kills, {ev['kill_district']} district kills, "
          f"{ev['kill_broker']} broker kills, {ev['fill_to_floor']} disk fills to below the floor, "
          f"{ev['fill_disk']} disk fills to full (private tmpfs {figures['private_disk_mb']} MB) |")
    print(f"| restarts | broker {figures['restarts']['broker']}, district {figures['restarts']['district']}, "
          f"kits {figures['restarts']['kits']} |")
    print(f"| sent (signed into the outboxes) | {figures['sent']} |")
    print(f"| stored | {figures['stored']} |")
    print(f"| lost | {figures['lost']} |")
    print(f"| duplicated | {figures['duplicated']} |")
    print(f"| acknowledged / rejected / unanswered | {figures['acknowledged']} / {figures['rejected_count']} "
          f"{figures['rejected']} / {figures['unanswered']} |")
    print(f"| acknowledged but not stored | {figures['acknowledged_not_stored']} |")
    print(f"| stored without their photo (disk below the floor) | {figures['stored_without_photo']} |")
    print(f"\nsent={figures['sent']} stored={figures['stored']} lost={figures['lost']} "
          f"duplicated={figures['duplicated']}")
    return 1 if figures["lost"] or figures["duplicated"] or figures["acknowledged_not_stored"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
