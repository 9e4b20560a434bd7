"""Broker stress: kit connections, client-id churn and provisioning changes while results are delivered.

mosquitto 2.0.11 (Debian 12) segfaulted (session_expiry__remove) in 3 of 3 runs of 10 to 27 s that mixed
kit connections, shared client ids and the SIGHUP reloads an ACL file needs after every `sign-csr` and
`revoke`. This runs the same mix against a district broker and reports whether the broker survived and
whether every result of the steady kits was stored exactly once:

- `--mode dynsec` (what tpskit does): the generated configuration (certificate subject = user name =
  client id, the dynamic security plugin); provisioning changes are real `sign-csr`, `sign-csr --replace`
  and `revoke` runs, applied by the plugin at run time;
- `--mode reload` (what tpskit did before): the same district with an ACL file, the CN as user name,
  free client ids, and a SIGHUP after every provisioning change.

Churners connect with the kits' certificates asking for any client id (their own, another kit's, the
district service's), with clean and persistent sessions of random expiry, and drop the connection
cleanly or abruptly. tests/test_broker_stress.py runs a short dynsec run in the suite.

    .venv/bin/python bench/broker_stress.py --seconds 600 --mode dynsec
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from tpskit import topics
from tpskit.localhost import free_port, mosquitto_binary, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/readings.py, also when a test imports this
from readings import reading_for

TPS_BASE = 3201012001000
NO_SUBSCRIBERS = 0x10  # MQTT v5 PUBACK reason code: accepted, but no subscription matched


def _start_broker(conf: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdout=out, stderr=out)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    wait_for(up, 15, "mosquitto")
    return proc


def _legacy_conf(conf: Path, acl: Path) -> None:
    """The configuration tpskit generated before: ACL file, CN as user name, client ids free."""
    lines = [ln for ln in conf.read_text().splitlines()
             if not ln.startswith(("plugin", "use_subject_as_username", "use_username_as_clientid"))]
    lines.insert(3, f"acl_file {acl}")
    lines.append("use_identity_as_username true")
    conf.write_text("\n".join(lines) + "\n")


def _legacy_acl(path: Path, district_cn: str, kits: dict[str, str]) -> None:
    out = [f"user {district_cn}", f"topic read {topics.ALL_RESULTS}", f"topic read {topics.ALL_EVIDENCE}",
           f"topic write {topics.ALL_ACKS}", ""]
    for kid, tps in sorted(kits.items()):
        out += [f"user {kid}", f"topic write {topics.result_topic(tps)}", f"topic write {topics.evidence_filter(tps)}",
                f"topic read {topics.ack_topic(tps)}", ""]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(out))
    os.replace(tmp, path)


def _client(port: int, ca: str, cert: str, key: str, client_id: str, clean: bool, expiry: int) -> Any:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                    reconnect_on_failure=False)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    c.tls_set_context(ctx)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = expiry
    c.connect("127.0.0.1", port, keepalive=10, clean_start=clean, properties=props)
    return c


def run(seconds: float, mode: str = "dynsec", steady_kits: int = 4, churners: int = 3, work: Path | None = None,
        echo: Any = print) -> dict[str, Any]:
    """Run the mix for `seconds`; returns the figures (and never leaves a process behind)."""
    from tpskit.config import BrokerSection
    from tpskit.district.config import load_district_config
    from tpskit.district.service import DistrictService
    from tpskit.edge.config import DeliverySection
    from tpskit.edge.submit import build_payload
    from tpskit.edge.transport import MqttLink, TlsIdentity
    from tpskit.envelope import payload_bytes, sha256_hex, sign_compact
    from tpskit.provisioning.district import bench_kit, district_init, revoke, service_user, sign_csr
    from tpskit.trust.certs import load_certs
    from tpskit.trust.csr import keygen
    from tpskit.trust.identity import TrustError
    from tpskit.trust.keys import load_key

    work = Path(work or tempfile.mkdtemp(prefix="tpskit-broker-stress-"))
    n_tps = steady_kits + 40
    tps_codes = [str(TPS_BASE + i + 1) for i in range(n_tps)]
    (work / "tps.csv").write_text("tps,registered_voters\n" + "".join(f"{t},300\n" for t in tps_codes))
    port = free_port()
    d = district_init(work / "district", work / "tps.csv", district_id="kab-stress", broker_port=port,
                      bind="127.0.0.1", run_as=getpass.getuser() if os.geteuid() == 0 else None)
    with d.config_path.open("a") as f:
        f.write("\n[limits]\nsubmissions_per_tps_hour = 100000\nmin_free_mb = 0\n")
    kits: dict[str, tuple[str, Path]] = {}
    for i in range(steady_kits):
        kid = f"steady-{i:02d}"
        kits[kid] = (tps_codes[i], bench_kit(d.root, kid, tps_codes[i], work / "kits" / kid).folder)
    conf = d.broker_dir / "mosquitto.conf"
    acl = d.broker_dir / "acl"
    legacy_kits = {k: t for k, (t, _) in kits.items()}
    if mode == "reload":
        _legacy_conf(conf, acl)
        _legacy_acl(acl, service_user("kab-stress"), legacy_kits)
    log = work / "mosquitto.log"
    broker = _start_broker(conf, port, log)
    cfg = load_district_config(d.config_path)
    service = DistrictService(cfg).start()
    # The kits below count a result as sent on the broker's PUBACK, not on the district's ack: one published
    # before the service's session has subscribed is dropped by the broker (PUBACK 0x10). Under CPU load
    # that lost the first results of a run (a real kit publishes again until the district acks).
    if not service.wait_ready(60):
        service.stop()
        broker.terminate()
        raise RuntimeError(f"the district service did not subscribe within 60 s: {log.read_text()[-2000:]}")
    stop = threading.Event()
    figures: dict[str, Any] = {"mode": mode, "seconds": seconds, "sent": 0, "connections": 0, "provisioning": 0,
                               "reloads": 0, "crash": None}
    lock = threading.Lock()
    sent: list[str] = []
    unrouted: list[str] = []
    errors: list[str] = []

    def steady(kid: str) -> None:
        tps, folder = kits[kid]
        key, chain = load_key(folder / "kit.key"), load_certs(folder / "kit.pem")
        link = MqttLink(kid, TlsIdentity(str(d.ca_cert_path), str(folder / "kit.pem"), str(folder / "kit.key")),
                        BrokerSection(host="127.0.0.1", port=port),
                        retry=DeliverySection(retry_initial_s=0.1, retry_max_s=0.5))
        link.start()
        seq = 0
        try:
            while not stop.is_set():
                if not link.wait_connected(1):
                    continue
                seq += 1
                photo = os.urandom(2048)
                sid = str(uuid.uuid4())
                p = build_payload(reading_for(tps, seq), kit_id=kid, tps=tps, seq=seq, submission_id=sid,
                                  evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
                compact = sign_compact(payload_bytes(p), key, chain)
                # Like a kit: publish until the broker confirms both (a churner may kick this session).
                while not stop.is_set():
                    a = link.publish(topics.result_topic(tps), compact, 5)
                    b = link.publish(topics.evidence_topic(tps, sid), photo, 5) if a.delivered else a
                    if a.delivered and b.delivered:
                        with lock:
                            sent.append(sid)
                            # PUBACK 0x10: no subscriber matched, so the broker dropped it (the district's
                            # session was not subscribed yet). A real kit, without the district's ack,
                            # publishes it again; this one does not wait for acks.
                            unrouted.extend([sid] if NO_SUBSCRIBERS in (a.reason_code, b.reason_code) else [])
                        break
                    link.wait_connected(1)
                time.sleep(0.02)
        finally:
            link.stop()

    def churn(i: int) -> None:
        rnd = random.Random(i)
        ids = [*kits, service_user("kab-stress"), "district-kab-stress", "x"]
        while not stop.is_set():
            kid = rnd.choice(list(kits))
            _, folder = kits[kid]
            try:
                c = _client(port, str(d.ca_cert_path), str(folder / "kit.pem"), str(folder / "kit.key"),
                            rnd.choice(ids), rnd.random() < 0.5, rnd.choice([0, 5, 3600]))
                c.loop_start()
                c.subscribe(topics.ack_topic(kits[kid][0]), qos=1)
                time.sleep(rnd.random() * 0.2)
                if rnd.random() < 0.5:
                    c.disconnect()
                else:  # gone without a DISCONNECT
                    sock = c.socket()
                    if sock is not None:
                        sock.close()
                c.loop_stop()
                with lock:
                    figures["connections"] += 1
            except (OSError, ssl.SSLError):
                time.sleep(0.05)

    def provision() -> None:
        rnd = random.Random(99)
        extra: dict[str, str] = {}
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if mode == "dynsec":
                    if extra and rnd.random() < 0.4:
                        kid = rnd.choice(list(extra))
                        revoke(d.root, kid, "stress")
                        extra.pop(kid)
                    elif extra and rnd.random() < 0.5:
                        kid = rnd.choice(list(extra))
                        _, csr = keygen(work / "re" / f"{kid}-{n}", kid, extra[kid])
                        sign_csr(d.root, csr, out_dir=work / "re" / f"{kid}-{n}", kit_paths="relative", replace=True)
                    else:
                        kid = f"extra-{n:04d}"
                        extra[kid] = tps_codes[steady_kits + n % 40]
                        bench_kit(d.root, kid, extra[kid], work / "extra" / kid)
                else:
                    kid = f"extra-{n:04d}"
                    if extra and rnd.random() < 0.4:
                        extra.pop(rnd.choice(list(extra)))
                    else:
                        extra[kid] = tps_codes[steady_kits + n % 40]
                    _legacy_acl(acl, service_user("kab-stress"), {**legacy_kits, **extra})
                    if broker.poll() is None:
                        broker.send_signal(signal.SIGHUP)
                        figures["reloads"] += 1
                figures["provisioning"] += 1
            except TrustError as e:  # ProvisioningError is one
                errors.append(str(e))
            stop.wait(0.3)

    threads = [threading.Thread(target=steady, args=(k,), daemon=True) for k in kits]
    threads += [threading.Thread(target=churn, args=(i,), daemon=True) for i in range(churners)]
    threads.append(threading.Thread(target=provision, daemon=True))
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        while time.monotonic() - t0 < seconds:
            if broker.poll() is not None:
                figures["crash"] = {"after_s": round(time.monotonic() - t0, 1), "returncode": broker.returncode}
                break
            time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
    figures["ran_s"] = round(time.monotonic() - t0, 1)
    figures["broker_alive"] = broker.poll() is None
    figures["sent"] = len(sent)
    figures["unrouted"] = len(unrouted)
    figures["provisioning_errors"] = errors[:3]
    stored: set[str] = set()
    if figures["broker_alive"]:
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: _stored(cfg.database.url) >= set(sent), 60, "every result of the steady kits stored")
    service.stop()
    stored_rows = _stored_rows(cfg.database.url)
    stored = set(stored_rows)
    figures["stored"] = len(stored & set(sent))
    figures["lost"] = len(set(sent) - stored)
    figures["duplicated"] = len(stored_rows) - len(stored)
    figures["lost_where"] = _whereabouts(cfg.database.url, sorted(set(sent) - stored)[:5])
    if broker.poll() is None:
        broker.terminate()
        broker.wait(10)
    tail = [ln for ln in log.read_text(errors="replace").splitlines() if "rror" in ln or "egmentation" in ln][-3:]
    figures["broker_log_errors"] = tail
    echo(json.dumps(figures))
    return figures


def _stored_rows(url: str) -> list[str]:
    from sqlalchemy import select

    from tpskit.district.db import open_db, results

    engine = open_db(url)
    try:
        with engine.connect() as c:
            return [r[0] for r in c.execute(select(results.c.submission_id))]
    finally:
        engine.dispose()


def _whereabouts(url: str, sids: list[str]) -> dict[str, list[str]]:
    """What the district knows of results sent and not stored: waiting for their photo, refused (why)."""
    from sqlalchemy import select

    from tpskit.district.db import open_db, pending, rejections

    engine = open_db(url)
    try:
        with engine.connect() as c:
            out: dict[str, list[str]] = {}
            for sid in sids:
                waiting = c.execute(select(pending).where(pending.c.submission_id == sid))
                seen = [f"pending seq {r.seq}" for r in waiting]
                seen += [f"rejected {r.reason}: {r.detail}"
                         for r in c.execute(select(rejections).where(rejections.c.submission_id == sid))]
                out[sid] = seen or ["never seen"]
            return out
    finally:
        engine.dispose()


def _stored(url: str) -> set[str]:
    return set(_stored_rows(url))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--mode", choices=["dynsec", "reload"], default="dynsec")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--kits", type=int, default=4)
    ap.add_argument("--churners", type=int, default=3)
    args = ap.parse_args(argv)
    rows = [run(args.seconds, args.mode, args.kits, args.churners) for _ in range(args.runs)]
    crashed = sum(1 for r in rows if r["crash"])
    print("\n| run | mode | ran (s) | broker | connections | provisioning changes | reloads | sent | stored | lost |"
          " duplicated |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(rows, 1):
        state = f"crashed (exit {r['crash']['returncode']}) after {r['crash']['after_s']} s" if r["crash"] else "alive"
        print(f"| {i} | {r['mode']} | {r['ran_s']} | {state} | {r['connections']} | {r['provisioning']} | "
              f"{r['reloads']} | {r['sent']} | {r['stored']} | {r['lost']} | {r['duplicated']} |")
    print(f"\nbroker_crashes={crashed}/{len(rows)} lost={sum(r['lost'] for r in rows)} "
          f"duplicated={sum(r['duplicated'] for r in rows)}")
    return 1 if crashed or any(r["lost"] or r["duplicated"] for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
