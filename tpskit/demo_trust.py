"""The trust-chain half of `make demo`: provision, broker, district service, sign, deliver, receipts.

`run_trust_demo(workdir, readings)` is called by `tpskit.demo` with the reader's results and the photos
they came from. Everything it starts (mosquitto, the district service) is stopped in `finally`.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tpskit.forms import valid_tps
from tpskit.localhost import free_port, mosquitto_binary, wait_for


def run_trust_demo(workdir: Path, readings: list[tuple[dict, bytes]], *, echo: Any = print,
                   during: Any = None, pages: Any = None) -> dict:
    """Provision a district and one kit per reading, deliver each signed reading, print tally and receipts.

    `during(district_root, kits)`, when given, runs while the broker and the district service are still up
    (after the kits' own deliveries have stopped: a kit daemon reuses the kit's MQTT client id), before
    the tally and the export, so that what it delivers is counted too. `pages({"dashboard": URL})`, when
    given, runs last, with everything still up (the district's dashboard on a free loopback port).

    Leaves `workdir/district/ca.pem` and `workdir/district/signed-results.jsonl` for observers.
    Returns a summary: paths, per-kit receipts, how many results the export re-verified.
    """
    from tpskit.district import tally
    from tpskit.district.config import load_district_config
    from tpskit.district.db import open_db
    from tpskit.district.verify_cli import recount_export, verify_export
    from tpskit.edge.config import load_kit_config
    from tpskit.edge.deliver import Delivery
    from tpskit.edge.reading import Reading
    from tpskit.edge.submit import sign_and_queue
    from tpskit.envelope import Verifier, parse_ack
    from tpskit.provisioning.district import bench_kit, district_init
    from tpskit.trust.certs import load_certs
    from tpskit.trust.identity import ROLE_DISTRICT
    from tpskit.trust.tps import read_tps_csv

    workdir = Path(workdir).resolve()
    for sub in ("district", "kits"):
        shutil.rmtree(workdir / sub, ignore_errors=True)
    workdir.mkdir(parents=True, exist_ok=True)
    usable = [(r, j) for r, j in readings if r.get("status") in ("ok", "review") and valid_tps(str(r.get("tps")))]
    skipped = len(readings) - len(usable)
    codes = sorted({r["tps"] for r, _ in usable})
    csv = workdir / "tps.csv"
    csv.write_text("tps,registered_voters\n" + "".join(f"{t},300\n" for t in codes))
    port = free_port()
    d = district_init(workdir / "district", csv, district_id="demo", broker_port=port, bind="127.0.0.1",
                      run_as=getpass.getuser() if os.geteuid() == 0 else None)
    dashboard_port = free_port()
    with d.config_path.open("a") as f:
        f.write(f"\n[dashboard]\nport = {dashboard_port}\n")
    kits = []
    for i, (reading, _) in enumerate(usable):
        issued = bench_kit(d.root, f"kit-{i + 1:02d}", reading["tps"], workdir / "kits" / f"kit-{i + 1:02d}")
        with open(issued.folder / "kit.toml", "a") as f:
            f.write("\n[delivery]\nack_timeout_s = 5.0\nretry_initial_s = 0.3\nretry_max_s = 2.0\n")
        kits.append(issued)
    echo(f"district 'demo': CA {d.ca_cert_path}, broker on 127.0.0.1:{port}, {len(kits)} kits"
         + (f" ({skipped} rejected readings not signed)" if skipped else ""))

    broker_log = open(d.root / "mosquitto.log", "ab")  # noqa: SIM115 - closed in finally
    service_log_path = d.root / "district-service.log"
    service_log = open(service_log_path, "ab")  # noqa: SIM115
    broker = service = None
    deliveries: list[Delivery] = []
    receipts: list[dict[str, Any]] = []
    try:
        broker = subprocess.Popen([mosquitto_binary(), "-c", str(d.broker_dir / "mosquitto.conf")],
                                  stdout=broker_log, stderr=broker_log)

        def broker_up() -> bool:
            if broker.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {(d.root / 'mosquitto.log').read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return False

        wait_for(broker_up, 15, "mosquitto")
        service = subprocess.Popen([sys.executable, "-m", "tpskit.cli", "district", "serve", "--config",
                                    str(d.config_path)], stdout=service_log, stderr=service_log)

        def service_up() -> bool:
            if service.poll() is not None:
                raise RuntimeError(f"district service exited: {service_log_path.read_text()[-2000:]}")
            return '"district.ready"' in service_log_path.read_text()

        wait_for(service_up, 60, "the district service")
        echo("district service subscribed; kits signing and delivering")
        rows = []
        for issued, (reading, jpeg) in zip(kits, usable, strict=True):
            cfg = load_kit_config(issued.folder / "kit.toml")
            row = sign_and_queue(cfg, Reading.from_dict(reading), jpeg)
            delivery = Delivery(cfg).start()
            deliveries.append(delivery)
            rows.append((issued, row, delivery))
        verifier = Verifier(load_certs(d.ca_cert_path))
        for issued, row, delivery in rows:
            r = delivery.wait_answered(row.submission_id, 60)
            rec: dict[str, Any] = {"kit": issued.kit_id, "tps": issued.tps, "submission_id": row.submission_id,
                                   "seq": row.seq, "state": r.state if r else "queued",
                                   "ack": r.ack_status if r else None, "reason": r.reason if r else None}
            if r is not None and r.receipt_jws:
                ack = parse_ack(verifier.verify(r.receipt_jws, role=ROLE_DISTRICT))
                rec["stored_sha256"] = ack.envelope_sha256
                rec["receipt_matches"] = ack.envelope_sha256 == row.envelope_sha256
            receipts.append(rec)
        if during is not None:
            for delivery in deliveries:
                delivery.stop()
            deliveries.clear()
            during(d.root, kits)
        cfg_d = load_district_config(d.config_path)
        engine = open_db(cfg_d.database.url)
        signed_path = d.root / "signed-results.jsonl"
        tps_list = read_tps_csv(d.root / "tps.csv")
        n_export = tally.export_signed(engine, signed_path, district=cfg_d.district.id, tps=tps_list)
        tallies = tally.compute(engine, tps_list)
        tally.write_csv(tallies, d.root / "tally.csv")
        tally.write_json(tallies, d.root / "tally.json")
        engine.dispose()
        tally_text = tally.render_text(tallies)
        echo("\nDistrict tally:\n" + tally_text)
        echo("Receipts (the district's signed acknowledgements, kept on each kit):")
        for rec in receipts:
            echo(f"  {rec['kit']} TPS {rec['tps']} seq {rec['seq']}: {rec['ack'] or rec['state']}"
                 + (f" ({rec['reason']})" if rec.get("reason") else "")
                 + (f", district stored sha256 {rec['stored_sha256'][:16]}... = what the kit signed"
                    if rec.get("receipt_matches") else ""))
        # The observer: every line re-verified, then the tally recounted from the export alone.
        report = verify_export(signed_path.read_text().splitlines(), d.ca_cert_path)
        verified = report.results - report.failed
        superseded = sum(1 for r in report.lines if r.line and r.line.get("state") == "superseded")
        counted = recount_export(report)
        equal = [x.to_json() for x in counted.tallies] == [x.to_json() for x in tallies] and not counted.problems
        echo(f"\nObserver check: tpskit verify {signed_path} --ca {d.ca_cert_path} --tally"
             f"\n  {verified} of {report.results} results verified ({superseded} superseded by a later result of "
             f"their TPS, not counted); the recount from the export "
             + ("equals the district tally" if equal else "DIFFERS from the district tally: "
                + "; ".join(counted.problems)))
        if pages is not None:
            pages({"dashboard": f"http://127.0.0.1:{dashboard_port}"})
        return {"district_dir": str(d.root), "ca": str(d.ca_cert_path), "signed_results": str(signed_path),
                "exported": n_export, "verified": verified, "superseded": superseded, "recount_equal": equal,
                "receipts": receipts, "tally": tally_text, "skipped_rejected": skipped, "broker_port": port}
    finally:
        for delivery in deliveries:
            with contextlib.suppress(Exception):  # keep stopping the rest
                delivery.stop()
        for proc in (service, broker):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        broker_log.close()
        service_log.close()
