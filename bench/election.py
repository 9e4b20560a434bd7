"""Election night: simulated kits report through several real districts to the national tier, while faults
are injected on a schedule; prints per-stage throughput and latency, queue depths, CPU per result, and
lost and duplicated counts.

Real pieces, all started here on free loopback ports: per district a mosquitto with the generated
configuration and `tpskit district serve` (SQLite, [national] forwarding on); a three-node nats-server
cluster with the replicated results stream (R3); `tpskit national work` processes; a throwaway PostgreSQL.
The kits are simulated (one publisher process per district, one MQTT connection and certificate per TPS,
every connection of a district served by one thread on one epoll selector: KitSwarm): each TPS signs its
result when its time comes (the capture time is the signing time), publishes it and its photo, and publishes
it again when no signed ack came within 15 s, like a kit's outbox. Every kit has its own Ed25519 key, CSR and
certificate from the district CA (issue_kits: the same checks as sign-csr, kits.json and the broker's users
written once); all kits connect before the night starts.

The night: every TPS reports once (and a few send a correction later); 90 % of first reports follow a curve
over the night (beta(2, 3)), a tenth of the TPS report within a burst of 1/36 of the night (ten minutes of
six hours) at the curve's peak. Faults: a NATS node SIGKILLed at 30 % of the night and restarted at 50 %,
a national worker SIGKILLed at 55 % and restarted at 60 %, a district service SIGKILLed at 65 % and restarted
at 68 %, a district broker restarted at 75 %.

national_ratio: after the night, on the same stream, one national worker from a fresh consumer into a fresh
database (verifying and storing everything) against one consumer that only fetches and acknowledges, in
rounds (--ratio-rounds, the median round is reported), the two side by side in each round. Also measured,
and labelled as not the target: the same worker with its checks replaced by parsing alone (ParseOnly), which
isolates what trusting no district costs, and the CPU of one Ed25519 verification.

    .venv/bin/python bench/election.py --quick            # a few minutes (BENCHMARKS.md)

The last line: results=.. lost=.. duplicated=.. p50_s=.. p99_s=.. national_ratio=.. tally_match=0|1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import getpass
import json
import multiprocessing as mp
import os
import random
import re
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/readings.py, bench/ingest.py
from ingest import children_of, cpu_seconds
from readings import reading_for

from tpskit.localhost import free_port, mosquitto_binary, wait_for

ACK_TIMEOUT_S = 15.0
PHOTO_BYTES = 2048
CONNECTS_PER_STEP = 8


# ------------------------------------------------------------------------------------------ plan
def tps_codes(province: int, regency: int, n: int) -> list[str]:
    """n TPS codes of one regency: 10 TPS per village, 10 villages per kecamatan."""
    out = []
    for j in range(n):
        village = j // 10
        out.append(f"{province:02d}{regency:02d}{village // 10 + 1:02d}{2001 + village % 10:04d}{j % 10 + 1:03d}")
    return out


def night_plan(codes: list[str], night_s: float, rng: random.Random,
               corrections: float) -> list[tuple[float, str, int]]:
    """(second of the night, TPS, seq): first reports on the curve with the burst, then a few corrections."""
    peak = night_s / 3  # the mode of beta(2, 3)
    burst = set(rng.sample(codes, max(1, len(codes) // 10)))
    plan = []
    for code in codes:
        t = peak + rng.uniform(0, night_s / 36) if code in burst else rng.betavariate(2, 3) * night_s
        plan.append((t, code, 1))
        if rng.random() < corrections:
            plan.append((min(night_s, t + rng.uniform(5, night_s / 4)), code, 2))
    return sorted(plan)


# ------------------------------------------------------------------------------------------ districts
@dataclass
class District:
    id: str
    root: Path
    config: Path
    port: int
    codes: list[str]
    kits: list[dict[str, str]] = field(default_factory=list)
    broker: subprocess.Popen[bytes] | None = None
    service: subprocess.Popen[bytes] | None = None

    @property
    def db(self) -> Path:
        return self.root / "district" / "district.sqlite"


def provision(work: Path, district_id: str, codes: list[str], national: str) -> dict[str, Any]:
    """One district: CA, broker files, service identity, one kit key and certificate per TPS (own process)."""
    from tpskit.provisioning.district import district_init

    root = work / district_id
    root.mkdir(parents=True)
    (root / "tps.csv").write_text("tps,registered_voters\n" + "".join(f"{c},300\n" for c in codes))
    port = free_port()
    d = district_init(root / "district", root / "tps.csv", district_id=district_id, broker_host="127.0.0.1",
                      broker_port=port, bind="127.0.0.1", run_as=getpass.getuser() if os.geteuid() == 0 else None)
    with d.config_path.open("a") as f:
        f.write("\n[limits]\nsubmissions_per_tps_hour = 100000\nmin_free_mb = 0\n" + national)
    kits = issue_kits(d.root, district_id, codes, root / "kits")
    return {"id": district_id, "root": str(root), "config": str(d.config_path), "port": port, "codes": codes,
            "kits": kits, "broker_conf": str(d.broker_dir / "mosquitto.conf")}


def issue_kits(district: Path, district_id: str, codes: list[str], kits_dir: Path) -> list[dict[str, str]]:
    """Every kit its own Ed25519 key and CSR (`tpskit kit keygen`'s code) and a certificate the district CA
    signs from that CSR, the checks of `tpskit provision sign-csr` on each; then kits.json and the broker's
    dynamic security file written once for all (`broker_sync`, the broker not started yet). sign-csr run once
    per kit rewrites both files with every kit so far, re-signs the CRL and re-reads the TPS list each time:
    quadratic, about 30 minutes for 1,025 kits where this takes seconds."""
    from cryptography import x509

    from tpskit.files import write_atomic
    from tpskit.provisioning.district import broker_sync, open_district
    from tpskit.provisioning.pki import issue_role_cert, mqtt_username, utcnow
    from tpskit.trust.certs import cert_pem, fingerprint, load_cert
    from tpskit.trust.csr import keygen
    from tpskit.trust.identity import ROLE_KIT, identity_of
    from tpskit.trust.keys import load_key

    d = open_district(district)
    ca, ca_key = load_cert(d.ca_cert_path), load_key(d.ca_key_path)

    def one(i: int, code: str) -> tuple[str, dict[str, str], dict[str, str]]:
        kit_id, folder = f"kit-{district_id}-{i:04d}", kits_dir / code
        key_path, csr_path = keygen(folder, kit_id, code)
        csr = x509.load_pem_x509_csr(csr_path.read_bytes())
        ident = identity_of(csr)
        assert csr.is_signature_valid and (ident.common_name, ident.role, ident.tps) == (kit_id, ROLE_KIT, code)
        cert = issue_role_cert(ca_key, ca, csr.public_key(), kit_id, ROLE_KIT, code)
        write_atomic(folder / "kit.pem", cert_pem(cert))
        entry = {"tps": code, "serial": str(cert.serial_number), "mqtt_user": mqtt_username(cert),
                 "fingerprint": fingerprint(cert), "issued_at": utcnow().isoformat()}
        return kit_id, entry, {"id": kit_id, "tps": code, "ca": str(d.ca_cert_path), "cert": str(folder / "kit.pem"),
                               "key": str(key_path)}

    # Threads: most of a kit's time is the fsync of its new key, which overlaps with the others'.
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(one, range(len(codes)), codes))
    issued = {kit_id: entry for kit_id, entry, _ in made}
    kits = [k for _, _, k in made]
    write_atomic(d.root / "kits.json", json.dumps(issued, indent=2))
    broker_sync(d.root)  # the broker is not running: its dynamic security file, every kit's user and role
    return kits


def start_broker(conf: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    import socket

    with open(log, "ab") as out:
        p = subprocess.Popen([mosquitto_binary(), "-c", conf], stdout=out, stderr=out)

    def up() -> bool:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
        return False

    wait_for(up, 20, f"mosquitto on {port}")
    return p


def start_logged(argv: list[str], log: Path, ready: str, timeout: float = 60) -> subprocess.Popen[bytes]:
    before = log.read_text().count(ready) if log.exists() else 0
    with open(log, "ab") as out:
        p = subprocess.Popen(argv, stdout=out, stderr=out)

    def up() -> bool:
        if p.poll() is not None:
            raise SystemExit(f"{argv[3:5]} exited {p.returncode}:\n{log.read_text()[-3000:]}")
        return log.read_text().count(ready) > before

    wait_for(up, timeout, " ".join(argv[3:5]))
    return p


def kill(p: subprocess.Popen[bytes] | None) -> None:
    if p is not None and p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait(10)


def restart_service(d: District) -> None:
    kill(d.service)
    d.service = start_logged([sys.executable, "-m", "tpskit.cli", "district", "serve", "--config", str(d.config)],
                             d.root / "district.log", '"district.ready"')


def restart_broker(d: District) -> None:
    """Stopped (SIGTERM: mosquitto saves its persistent sessions) and started again on the same port."""
    assert d.broker is not None
    d.broker.terminate()
    d.broker.wait(20)
    d.broker = start_broker(str(d.root / "district" / "broker" / "mosquitto.conf"), d.port, d.root / "mosquitto.log")


# ------------------------------------------------------------------------------------------ kits
class KitSwarm:
    """One district's kits, each its own MQTT connection with its own certificate, served by one thread on
    one epoll selector (paho's external-loop calls). A kit's own link (tpskit.edge.transport.MqttLink) runs
    two threads and paho's select(), which fails past file descriptor 1024: one process held about 330
    kits that way, and a thousand idle links' wake-ups cost more CPU than the night's results."""

    def __init__(self, kits: list[dict[str, str]], port: int, on_message: Any) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from tpskit.edge.transport import TlsIdentity, tls_context

        self.port = port
        self.sel = selectors.DefaultSelector()
        self.clients: dict[str, Any] = {}
        self.connected: set[str] = set()
        self.down: dict[str, float] = {}  # TPS -> when to (re)connect
        self.reconnects = 0
        self._misc = 0.0
        self._props = Properties(PacketTypes.CONNECT)
        self._props.SessionExpiryInterval = 600
        for k in kits:
            c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{k['id']}-bench", protocol=mqtt.MQTTv5,
                            userdata=k["tps"])
            c.tls_set_context(tls_context(TlsIdentity(k["ca"], k["cert"], k["key"])))
            c.max_inflight_messages_set(1000)
            c.max_queued_messages_set(0)
            c.on_connect = self._on_connect
            c.on_disconnect = self._on_disconnect
            c.on_message = lambda _c, _tps, msg: on_message(msg.topic, msg.payload)
            c.on_socket_open = lambda c, _tps, sock: self.sel.register(sock, selectors.EVENT_READ, c)
            c.on_socket_close = self._forget
            c.on_socket_register_write = lambda c, _tps, sock: self._watch(c, sock, True)
            c.on_socket_unregister_write = lambda c, _tps, sock: self._watch(c, sock, False)
            self.clients[k["tps"]] = c
            self.down[k["tps"]] = 0.0

    def _watch(self, c: Any, sock: Any, write: bool) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.modify(sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if write else 0), c)

    def _forget(self, c: Any, tps: str, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)

    def _on_connect(self, c: Any, tps: str, flags: Any, rc: Any, props: Any) -> None:
        if not rc.is_failure:
            c.subscribe(f"tps/{tps}/ack", qos=1)
            self.connected.add(tps)

    def _on_disconnect(self, c: Any, tps: str, flags: Any, rc: Any, props: Any) -> None:
        self.connected.discard(tps)
        self.down[tps] = time.time() + random.uniform(0.5, 2.0)  # like a kit's backoff, spread
        self.reconnects += 1

    def publish(self, tps: str, topic: str, payload: bytes | str) -> bool:
        """QoS 1, not awaited (the signed ack is what counts), as a kit's outbox does; False when the kit is
        not connected (it publishes again after its ack timeout)."""
        if tps not in self.connected:
            return False
        return self.clients[tps].publish(topic, payload, qos=1).rc == 0

    def step(self, timeout: float) -> None:
        now = time.time()
        due = [tps for tps, when in self.down.items() if when <= now]
        # A few handshakes per round, so that each CONNECT follows its handshake at once and the connected
        # kits are served meanwhile (a thousand handshakes in one go took a minute at load 15, and the broker
        # then refused the first kits' late CONNECTs as protocol errors).
        for tps in due[:CONNECTS_PER_STEP]:
            del self.down[tps]
            try:  # blocking TCP and TLS handshake, a few ms
                self.clients[tps].connect("127.0.0.1", self.port, keepalive=30, clean_start=False,
                                          properties=self._props)
            except OSError:
                self.down[tps] = time.time() + random.uniform(1.0, 3.0)
        for key, events in self.sel.select(0 if len(due) > CONNECTS_PER_STEP else timeout):
            c = key.data
            if events & selectors.EVENT_READ:
                c.loop_read()
                while c._sock is not None and c._sock.pending():  # TLS records already decrypted: no epoll event
                    c.loop_read()
            if events & selectors.EVENT_WRITE and c._sock is not None:
                c.loop_write()
        if now - self._misc >= 1.0:  # keepalive pings and timeouts
            self._misc = now
            for c in self.clients.values():
                c.loop_misc()

    def close(self) -> None:
        for c in self.clients.values():
            with contextlib.suppress(Exception):
                c.disconnect()
        self.step(0.2)


def kits_process(kits: list[dict[str, str]], port: int, plan: list[tuple[float, str, int]], ready: Any,
                 start: Any, night_s: float, out: Any) -> None:
    """One district's simulated kits (own process): connect them all, say so on `ready`, wait for the night's
    start time on `start`; then sign each result when its time comes, publish it with its photo, and publish
    again until a signed ack names it. Reports (sid, tps, seq, signed_at) of every result."""
    from tpskit.edge.submit import build_payload
    from tpskit.envelope import payload_bytes, sha256_hex, sign_compact, unverified_payload
    from tpskit.trust.certs import load_certs
    from tpskit.trust.keys import load_key

    acked: set[str] = set()

    def on_ack(topic: str, payload: bytes) -> None:
        ack = unverified_payload(payload.decode("ascii", "replace")) or {}
        if ack.get("status") in ("accepted", "duplicate"):
            acked.add(str(ack.get("submission_id")))

    by_tps = {k["tps"]: k for k in kits}
    swarm = KitSwarm(kits, port, on_ack)
    connect_by = time.time() + 600
    while len(swarm.connected) < len(kits) and time.time() < connect_by:
        swarm.step(0.05)
    keys = {k["tps"]: (load_key(Path(k["key"])), load_certs(Path(k["cert"]))) for k in kits}
    ready.put(len(swarm.connected))
    while not (t0 := start.value):  # keep the sessions alive while the other districts connect
        swarm.step(0.5)
    deadline = t0 + night_s + 240
    sent: list[tuple[str, str, int, float]] = []
    waiting: dict[str, tuple[str, str, bytes, float]] = {}  # sid -> (tps, compact, photo, last publish)
    todo = list(plan)
    i = 0
    while time.time() < deadline:
        now = time.time()
        while i < len(todo) and t0 + todo[i][0] <= now:
            _, tps, seq = todo[i]
            i += 1
            k = by_tps[tps]
            photo = os.urandom(PHOTO_BYTES)
            sid = str(uuid.uuid4())
            signed_at = time.time()
            p = build_payload(reading_for(tps, seq * 7 + len(sent)), kit_id=k["id"], tps=tps, seq=seq,
                              submission_id=sid, evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo),
                              captured_at=dt.datetime.fromtimestamp(signed_at, dt.UTC))
            compact = sign_compact(payload_bytes(p), *keys[tps])
            sent.append((sid, tps, seq, signed_at))
            waiting[sid] = (tps, compact, photo, 0.0)
        for sid in [s for s in waiting if s in acked]:
            del waiting[sid]
        for sid, (tps, compact, photo, last) in list(waiting.items()):
            if now - last >= ACK_TIMEOUT_S:
                # the result announces its photo; a kit not connected publishes as soon as it is, as a kit does
                sent_now = swarm.publish(tps, f"tps/{tps}/result", compact)
                swarm.publish(tps, f"tps/{tps}/evidence/{sid}", photo)
                waiting[sid] = (tps, compact, photo, now if sent_now else 0.0)
        if i >= len(todo) and not waiting:
            break
        swarm.step(0.02)
    out.put({"sent": sent, "unacked": len(waiting), "reconnects": swarm.reconnects})
    swarm.close()


# ------------------------------------------------------------------------------------------ postgres
def start_postgres() -> tuple[str, Any]:
    """A throwaway PostgreSQL on a free port (never the machine's 5432); returns (URL, stop)."""
    import glob

    bindir = Path(sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]).parent
    base = Path(tempfile.mkdtemp(prefix="tpskit-election-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chown(sock, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "tpskit", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    # Durable as a national server would be (fsync on), on this machine's disk.
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(base / "pg.log"), "-w", "-t", "60",
                    "-o", f"-p {port} -k {sock} -c listen_addresses=127.0.0.1", "start"],
                   check=True, capture_output=True)

    def stop() -> None:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)

    postmaster = int((data / "postmaster.pid").read_text().split()[0])
    stop.pid = postmaster  # type: ignore[attr-defined]
    return f"postgresql+psycopg://tpskit@127.0.0.1:{port}", stop


def create_database(base_url: str, name: str) -> str:
    import psycopg

    with psycopg.connect(base_url.replace("postgresql+psycopg://", "postgresql://") + "/postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base_url}/{name}"


# ------------------------------------------------------------------------------------------ measuring
def js_call(servers: list[str], fn: Any) -> Any:
    from tpskit.jetstream import run_with

    return run_with(servers, fn, "bench")


async def drain(js: Any, batch: int) -> dict[str, Any]:
    """Fetch and acknowledge the whole stream from a fresh consumer, verifying nothing (the raw rate)."""
    durable = f"raw-{uuid.uuid4().hex[:8]}"
    sub = await js.pull_consumer(durable, 60)
    total = await js.stream_messages()
    got: list[Any] = []
    start, cpu = time.perf_counter(), time.process_time()
    while len(got) < total:
        msgs = await js.fetch(sub, batch, 2.0)
        for m in msgs:
            await m.ack()
        got += msgs
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await js.delete_consumer(durable)
    return {"seconds": elapsed, "cpu": cpu, "messages": len(got), "got": got}


def raw_drain(servers: list[str], batch: int, out: Any) -> None:
    """Own process: `drain`, reporting per message (submission id, JetStream's timestamp) for the stage
    latencies."""
    from tpskit.envelope import unverified_payload
    from tpskit.forwarded import parse_forwarded

    async def run(js: Any) -> None:
        raw = await drain(js, batch)
        stamps = []
        for m in raw.pop("got"):
            f = parse_forwarded(m.data)
            stamps.append((unverified_payload(f.envelope)["submission_id"], m._msg.metadata.timestamp.timestamp()))
        out.put({**raw, "stamps": stamps})

    js_call(servers, run)


class ParseOnly:
    """The national check without the checking (bench only, for the second ratio): reads what a national worker
    reads (the forwarded message, the kit's payload and the acceptance's payload: strict JSON and their schemas)
    and builds the same row, but verifies no signature and no certificate, matches no acceptance to its
    result and re-runs no arithmetic. The difference to the real worker is the cost of trusting no district."""

    def check(self, data: bytes) -> dict[str, Any]:
        from tpskit.envelope import AckPayload, ResultPayload, sha256_hex, strict_json
        from tpskit.envelope.signing import unb64url
        from tpskit.forwarded import parse_forwarded
        from tpskit.national.verify import national_row

        msg = parse_forwarded(data)
        result = ResultPayload.model_validate(strict_json(unb64url(msg.envelope.split(".")[1])))
        AckPayload.model_validate(strict_json(unb64url(msg.acceptance.split(".")[1])))
        return national_row(msg.district, result, msg.envelope, sha256_hex(msg.envelope), msg.acceptance,
                            msg.received_at)


def worker_phase(config: Path, db_url: str, total: int, verify: bool) -> dict[str, Any]:
    """One national worker (the real NationalWorker, in a thread of this process) from a fresh consumer into a
    fresh database, timed like `drain`: from its first fetch to the acknowledgement of the stream's last
    message. `verify=False`: its checker is ParseOnly."""
    from tpskit.jetstream import JetStream, Pulled
    from tpskit.national.config import load_national_config
    from tpskit.national.worker import NationalWorker

    cfg = load_national_config(config)
    durable = f"replay-{uuid.uuid4().hex[:8]}"
    cfg = cfg.model_copy(update={"database": cfg.database.model_copy(update={"url": db_url}),
                                 "nats": cfg.nats.model_copy(update={"durable": durable, "ack_wait_s": 60})})
    worker = NationalWorker(cfg)
    if not verify:
        worker.checker = ParseOnly()  # type: ignore[assignment]
    marks: dict[str, tuple[float, float]] = {}
    done = threading.Event()
    acked = [0]
    fetch, ack = JetStream.fetch, Pulled.ack

    async def timed_fetch(sub: Any, batch: int, timeout: float) -> list[Any]:
        marks.setdefault("start", (time.perf_counter(), time.process_time()))
        return await fetch(sub, batch, timeout)

    async def counted_ack(self: Any) -> None:
        await ack(self)
        acked[0] += 1
        if acked[0] >= total and "end" not in marks:
            marks["end"] = (time.perf_counter(), time.process_time())
            done.set()

    JetStream.fetch, Pulled.ack = staticmethod(timed_fetch), counted_ack  # type: ignore[method-assign,assignment]
    try:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        if not done.wait(900):
            raise TimeoutError(f"the replay worker acknowledged {acked[0]} of {total} messages")
        worker.stop_event.set()
        thread.join(60)
    finally:
        JetStream.fetch, Pulled.ack = staticmethod(fetch), ack  # type: ignore[method-assign]
    js_call(cfg.nats.servers, lambda js: js.delete_consumer(durable))
    (w0, c0), (w1, c1) = marks["start"], marks["end"]
    return {"seconds": w1 - w0, "cpu": c1 - c0, "messages": total, "counts": dict(worker.store.counts)}


def ed25519_verify_cpu(n: int = 2000) -> float:
    """CPU seconds of one Ed25519 verification of a kit-sized signing input (about 2.5 KB), on this machine now."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    data = os.urandom(2500)
    sig, pub = key.sign(data), key.public_key()
    cpu = time.process_time()
    for _ in range(n):
        pub.verify(sig, data)
    return (time.process_time() - cpu) / n


def ratio_rounds(config: Path, servers: list[str], db_urls: list[tuple[str, str]], out: Any) -> None:
    """Own process, after the night, on the same stream: per round, back to back so that they meet the same
    load, the raw drain, one verifying national worker (fresh database) and the same worker parsing only
    (fresh database), and the CPU of one Ed25519 verification."""
    rounds = []
    for verify_url, parse_url in db_urls:
        raw = js_call(servers, lambda js: drain(js, 200))
        raw.pop("got")
        rounds.append({"raw": raw, "verify": worker_phase(config, verify_url, raw["messages"], True),
                       "parse": worker_phase(config, parse_url, raw["messages"], False),
                       "ed25519_s": ed25519_verify_cpu()})
    out.put(rounds)


def outbox_unsent(db: Path) -> int:
    try:
        con = sqlite3.connect(db, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM forward_outbox WHERE sent_at IS NULL").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0


def national_count(engine: Any) -> int:
    from sqlalchemy import text

    try:
        with engine.connect() as c:
            return int(c.execute(text("SELECT COUNT(*) FROM national_results")).scalar_one())
    except Exception:
        return 0


async def stream_size(js: Any) -> int:
    """Bytes the results stream holds (one replica's copy)."""
    from tpskit.jetstream import STREAM

    return int((await js.js.stream_info(STREAM)).state.bytes)


def table_bytes(engine: Any) -> int:
    """The national results table on disk: every partition with its indexes and TOAST."""
    from sqlalchemy import text

    with engine.connect() as c:
        return int(c.execute(text(
            "SELECT COALESCE(SUM(pg_total_relation_size(i.inhrelid)), 0) FROM pg_inherits i "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'national_results'")).scalar_one())


def kits_waiting(signed: list[float], stored: list[float], at: list[float]) -> list[tuple[float, int]]:
    """Results signed and not yet stored by their district, at each time of `at` (the kits' side of the queue:
    the broker's persistent sessions hold them while a district service is down)."""
    events = sorted([(t, 1) for t in signed] + [(t, -1) for t in stored])
    out, n, i = [], 0, 0
    for t in sorted(at):
        while i < len(events) and events[i][0] <= t:
            n += events[i][1]
            i += 1
        out.append((t, n))
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def peak_rate(times: list[float], window: float = 5.0) -> float:
    """The most results in any `window` seconds, per second."""
    s = sorted(times)
    best, j = 0, 0
    for i in range(len(s)):
        while s[i] - s[j] > window:
            j += 1
        best = max(best, i - j + 1)
    return best / window


def tallies_match(districts: list[District], national_engine: Any, tps: dict[str, Any]) -> tuple[bool, str]:
    """Every area of every district's tally equals the national one, and the nation is the sum of the regencies."""
    from tpskit.district.db import open_db
    from tpskit.district.tally import compute as district_compute
    from tpskit.national.tally import compute as national_compute
    from tpskit.trust.tps import read_tps_csv

    national = {(a.level, a.code): (a.reported, a.in_review, a.totals) for t in national_compute(national_engine, tps)
                for a in t.areas}
    summed: dict[str, int] = {}
    for d in districts:
        engine = open_db(f"sqlite:///{d.db}")
        try:
            for t in district_compute(engine, read_tps_csv(d.root / "tps.csv")):
                for a in t.areas:
                    if national.get((a.level, a.code)) != (a.reported, a.in_review, a.totals):
                        return False, f"{d.id} {a.level} {a.code}: district {a.totals}, national " \
                                      f"{national.get((a.level, a.code))}"
                    if a.level == "regency":
                        for k, v in a.totals.items():
                            summed[k] = summed.get(k, 0) + v
        finally:
            engine.dispose()
    nation = national.get(("nation", "ID"))
    if nation is None or nation[2] != summed:
        return False, f"nation {nation} != sum of regencies {summed}"
    return True, f"{len(national)} areas, nation {nation[2]}"


# ------------------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a shortened night: 4 districts x 200 TPS, 120 s")
    ap.add_argument("--districts", type=int, default=None)
    ap.add_argument("--tps", type=int, default=None, help="TPS per district")
    ap.add_argument("--night-s", type=float, default=None, help="length of the simulated night, seconds")
    ap.add_argument("--workers", type=int, default=2, help="national workers")
    ap.add_argument("--corrections", type=float, default=0.05, help="share of TPS sending a correction later")
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--markdown", type=Path, default=None, help="update this file's election-night section")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--ratio-rounds", type=int, default=3, help="rounds of the national_ratio measurement (median)")
    ap.add_argument("--plot", type=Path, default=None, help="write a PNG of queue depth and latency over the night")
    args = ap.parse_args()
    n_districts = args.districts or (4 if args.quick else 8)
    n_tps = args.tps or (200 if args.quick else 1025)
    night_s = args.night_s or (120.0 if args.quick else 1800.0)
    rng = random.Random(args.seed)

    from sqlalchemy import create_engine

    from tpskit.localnats import NatsCluster
    from tpskit.national.db import open_national_db, partitions

    work = Path(tempfile.mkdtemp(prefix="tpskit-election-"))
    t_setup = time.time()
    print(f"work folder {work}; {n_districts} districts x {n_tps} TPS, night {night_s:.0f} s", file=sys.stderr)
    pg_url, pg_stop = start_postgres()
    cluster = NatsCluster(work / "nats").start()
    districts: list[District] = []
    workers: list[subprocess.Popen[bytes]] = []
    try:
        national_section = ("\n[national]\nenabled = true\nservers = [" + ", ".join(f'"{u}"' for u in cluster.urls)
                            + "]\nretry_s = 0.5\n")
        # Two provinces (31, 32): the national table's partitions show it.
        specs = [(f"kab-{i + 1:02d}", tps_codes(31 + i % 2, i + 1, n_tps)) for i in range(n_districts)]
        ctx = mp.get_context("spawn")
        t_provision = time.time()
        with ctx.Pool(2) as pool:
            made = pool.starmap(provision, [(work, did, codes, national_section) for did, codes in specs])
        provision_s = time.time() - t_provision
        for m in made:
            districts.append(District(m["id"], Path(m["root"]), Path(m["config"]), m["port"], m["codes"], m["kits"]))
            districts[-1].broker = start_broker(m["broker_conf"], m["port"], Path(m["root"]) / "mosquitto.log")
        for d in districts:
            d.service = start_logged([sys.executable, "-m", "tpskit.cli", "district", "serve", "--config",
                                      str(d.config)], d.root / "district.log", '"district.ready"')
        db_url = create_database(pg_url, "national")
        toml = ["[nats]", "servers = [" + ", ".join(f'"{u}"' for u in cluster.urls) + "]", "ack_wait_s = 10", "",
                "[database]", f'url = "{db_url}"', ""]
        for d in districts:
            toml += ["[[districts]]", f'id = "{d.id}"', f'ca = "{d.root / "district" / "ca.pem"}"',
                     f'tps_list = "{d.root / "tps.csv"}"', ""]
        ncfg = work / "national.toml"
        ncfg.write_text("\n".join(toml))
        worker_argv = [sys.executable, "-m", "tpskit.cli", "national", "work", "--config", str(ncfg)]
        for w in range(args.workers):
            workers.append(start_logged(worker_argv, work / f"worker-{w}.log", '"national.ready"'))
        engine = create_engine(db_url)

        # ---- the night
        plans = {d.id: night_plan(d.codes, night_s, rng, args.corrections) for d in districts}
        expected = sum(len(p) for p in plans.values())
        q, ready, start = ctx.Queue(), ctx.Queue(), ctx.Value("d", 0.0)
        t_connect = time.time()
        brokers_cpu = [component_cpu(districts, cluster, workers, pg_stop)["mosquitto (all districts)"]]
        pubs = [ctx.Process(target=kits_process, args=(d.kits, d.port, plans[d.id], ready, start, night_s, q))
                for d in districts]
        for p in pubs:
            p.start()
        connected = sum(ready.get(timeout=900) for _ in pubs)
        connect_s = time.time() - t_connect
        brokers_cpu.append(component_cpu(districts, cluster, workers, pg_stop)["mosquitto (all districts)"])
        # The brokers with every kit connected and nothing to say (keepalive pings every 30 s): the cost of a
        # connection held through the night, apart from the cost of a result.
        idle_s = 0.0 if args.quick else min(30.0, night_s / 20)
        time.sleep(idle_s)
        brokers_cpu.append(component_cpu(districts, cluster, workers, pg_stop)["mosquitto (all districts)"])
        setup_s = time.time() - t_setup
        t0 = time.time() + 1
        start.value = t0
        deadline = t0 + night_s + 240
        cpu0 = component_cpu(districts, cluster, workers, pg_stop)
        faults = [] if args.no_faults else [
            (0.30, "kill NATS node n2", lambda: cluster.kill(1)),
            (0.50, "restart NATS node n2", lambda: cluster.restart(1)),
            (0.55, "kill national worker 1", lambda: workers[0].send_signal(signal.SIGKILL)),
            (0.60, "restart national worker 1",
             lambda: workers.__setitem__(0, start_logged(worker_argv, work / "worker-0.log", '"national.ready"'))),
            (0.65, f"kill district service {districts[0].id}", lambda: kill(districts[0].service)),
            (0.68, f"restart district service {districts[0].id}", lambda: restart_service(districts[0])),
            (0.75, f"restart broker of {districts[-1].id}", lambda: restart_broker(districts[-1])),
        ]
        depth: list[tuple[float, int, int, int]] = []  # (t, district outboxes unsent, national queue, stored)
        fault_log: list[tuple[float, str]] = []

        async def monitor(js: Any) -> None:
            pending_faults = list(faults)
            while True:
                now = time.time()
                while pending_faults and now >= t0 + pending_faults[0][0] * night_s:
                    _, what, do = pending_faults.pop(0)
                    await asyncio.to_thread(do)
                    fault_log.append((time.time() - t0, what))
                unsent = sum(outbox_unsent(d.db) for d in districts)
                try:
                    queued = await js.pending("national")
                except Exception:
                    queued = -1
                stored = await asyncio.to_thread(national_count, engine)
                depth.append((now - t0, unsent, queued, stored))
                if now > t0 + night_s and stored >= expected and not pending_faults:
                    return
                if now > deadline:
                    return
                await asyncio.sleep(1.0)

        js_call(cluster.urls, monitor)
        reports = [q.get(timeout=300) for _ in pubs]
        for p in pubs:
            p.join(30)
        cpu1 = component_cpu(districts, cluster, workers, pg_stop)
        sent = [s for r in reports for s in r["sent"]]
        unacked = sum(r["unacked"] for r in reports)
        reconnects = sum(r["reconnects"] for r in reports)

        # ---- counts
        from sqlalchemy import text

        with engine.connect() as c:
            rows = c.execute(text("SELECT submission_id, captured_at, received_at, stored_at FROM national_results")
                             ).all()
        national_ids = [r[0] for r in rows]
        district_rows = 0
        district_distinct = 0
        district_received: dict[str, float] = {}
        for d in districts:
            con = sqlite3.connect(d.db)
            district_rows += con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
            district_distinct += con.execute("SELECT COUNT(DISTINCT submission_id) FROM results").fetchone()[0]
            district_received.update(dict(con.execute("SELECT submission_id, received_at FROM results")))
            con.close()
        sent_ids = {s[0] for s in sent}
        lost = len(sent_ids - set(national_ids))
        duplicated = (len(national_ids) - len(set(national_ids))) + (district_rows - district_distinct)
        ratio_q = ctx.Queue()
        drain = ctx.Process(target=raw_drain, args=(cluster.urls, 200, ratio_q))
        drain.start()
        raw = ratio_q.get(timeout=600)
        drain.join(30)
        stream_msgs = raw["messages"]
        stamped = dict(raw["stamps"])

        # ---- national_ratio: per round, the raw drain, one verifying worker and one parsing worker, each
        # from a fresh consumer (and database), on the same stream; the median round's ratio is reported
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(30)
        db_urls = [(create_database(pg_url, f"replay_{r}_verify"), create_database(pg_url, f"replay_{r}_parse"))
                   for r in range(args.ratio_rounds)]
        for v, p in db_urls:
            for url in (v, p):
                open_national_db(url, {d.codes[0][:2] for d in districts}).dispose()
        ratio_q = ctx.Queue()
        measuring = ctx.Process(target=ratio_rounds, args=(ncfg, cluster.urls, db_urls, ratio_q))
        measuring.start()
        rounds = ratio_q.get(timeout=1800)
        measuring.join(30)

        def rate(phase: dict[str, Any]) -> float:
            return phase["messages"] / phase["seconds"]

        def cpu_ms(phase: dict[str, Any]) -> float:
            return 1000 * phase["cpu"] / max(1, phase["messages"])

        ratios = [rate(r["verify"]) / rate(r["raw"]) for r in rounds]
        national_ratio = sorted(ratios)[len(ratios) // 2]
        median = rounds[ratios.index(national_ratio)]
        parse_ratios = [rate(r["parse"]) / rate(r["raw"]) for r in rounds]

        # ---- tally
        from tpskit.national.config import load_national_config
        from tpskit.national.verify import NationalChecker

        all_tps = NationalChecker(load_national_config(ncfg).districts).tps
        match, tally_detail = tallies_match(districts, open_national_db(db_url, []), all_tps)
        parts = partitions(open_national_db(db_url, []))
        national_bytes = table_bytes(engine)
        stream_bytes = js_call(cluster.urls, stream_size)
        district_bytes = sum(f.stat().st_size for d in districts for f in d.db.parent.glob("district.sqlite*"))

        # ---- stages
        signed_at = {s[0]: s[3] for s in sent}
        e2e = [r[3] - signed_at[r[0]] for r in rows if r[0] in signed_at]
        kit_district = [district_received[s] - signed_at[s] for s in district_received if s in signed_at]
        district_stream = [stamped[s] - district_received[s] for s in stamped if s in district_received]
        stream_national = [r[3] - stamped[r[0]] for r in rows if r[0] in stamped]
        stages = [
            ("kits sign -> district stored", len(district_received), list(district_received.values()), kit_district),
            ("district stored -> stream (R3)", len(stamped), list(stamped.values()), district_stream),
            ("stream -> national stored", len(rows), [r[3] for r in rows], stream_national),
            ("end to end (kit signature -> national commit)", len(rows), [r[3] for r in rows], e2e),
        ]
        burst_share = peak_rate([s[3] for s in sent], 5.0)
        components = {k: (cpu1.get(k, 0.0) - cpu0.get(k, 0.0)) for k in cpu0}

        # ---- report
        out = []
        out.append(f"election night: {n_districts} districts x {n_tps} TPS = {n_districts * n_tps} TPS, "
                   f"{len(sent)} results signed over a {night_s:.0f} s night (setup {setup_s:.0f} s: "
                   f"{n_districts * n_tps} kit keys and certificates {provision_s:.0f} s, {connected} kits "
                   f"connected {connect_s:.0f} s), "
                   f"{args.workers} national workers, NATS 3 nodes R3, PostgreSQL {len(parts)} province partitions")
        out.append(f"arrival: peak {burst_share:.1f} results/s over 5 s (the burst), mean "
                   f"{len(sent) / night_s:.1f}/s")
        out.append("faults: " + "; ".join(f"{what} at {t:.0f} s" for t, what in fault_log) if fault_log else
                   "faults: none")
        out.append("")
        out.append(f"| {'stage':<46} | results | mean /s | peak /s (5 s) | p50 s | p99 s | max s |")
        out.append(f"|{'-' * 48}|---------|---------|---------------|-------|-------|-------|")
        for name, count, times, lat in stages:
            span = (max(times) - min(times)) if times else 0
            out.append(f"| {name:<46} | {count:7d} | {count / span if span else 0:7.1f} | {peak_rate(times):13.1f} | "
                       f"{percentile(lat, 0.5):5.2f} | {percentile(lat, 0.99):5.2f} | "
                       f"{max(lat) if lat else float('nan'):5.2f} |")
        out.append("")
        deepest = max(depth, key=lambda x: x[1]) if depth else (0, 0, 0, 0)
        deepest_q = max(depth, key=lambda x: x[2]) if depth else (0, 0, 0, 0)
        kit_queue = kits_waiting([s[3] - t0 for s in sent],
                                 [district_received[s[0]] - t0 for s in sent if s[0] in district_received],
                                 [t for t, *_ in depth])
        deepest_k = max(kit_queue, key=lambda x: x[1]) if kit_queue else (0, 0)
        out.append(f"queue depth: kits waiting for their district (signed, not stored there yet) at most "
                   f"{deepest_k[1]} (at {deepest_k[0]:.0f} s); district outboxes at most {deepest[1]} unsent (at "
                   f"{deepest[0]:.0f} s); national "
                   f"consumer at most {deepest_q[2]} pending (at {deepest_q[0]:.0f} s); samples every 1 s in "
                   f"{work / 'depth.csv'}")
        (work / "depth.csv").write_text("t_s,district_unsent,national_pending,national_stored\n" + "".join(
            f"{t:.1f},{a},{b},{c}\n" for t, a, b, c in depth))
        out.append("")
        out.append("| component | CPU s | CPU ms per result |")
        out.append("|---|---|---|")
        for k, v in components.items():
            out.append(f"| {k} | {v:.1f} | {1000 * v / max(1, len(sent)):.2f} |")
        out.append("")
        out.append(f"national_ratio (one verifying worker / the raw drain, each from a fresh consumer, rounds back "
                   f"to back): {', '.join(f'{x:.2f}' for x in ratios)}; median round: the worker "
                   f"{rate(median['verify']):.0f}/s ({cpu_ms(median['verify']):.2f} ms CPU per message), the raw "
                   f"drain {rate(median['raw']):.0f}/s ({cpu_ms(median['raw']):.2f} ms CPU per message to fetch and "
                   f"acknowledge)")
        out.append(f"not the target, the cost of trusting no district: the same worker parsing instead of verifying "
                   f"(same fetch, JSON, schemas, batch write, acks) / the raw drain: "
                   f"{', '.join(f'{x:.2f}' for x in parse_ratios)} ({rate(median['parse']):.0f}/s, "
                   f"{cpu_ms(median['parse']):.2f} ms CPU per message); verifying / parsing: "
                   f"{', '.join(f'{v / p:.2f}' for v, p in zip(ratios, parse_ratios, strict=True))}")
        ed, raw_ms = 1000 * median["ed25519_s"], cpu_ms(median["raw"])
        out.append(f"floor: one Ed25519 verification costs {ed:.3f} ms CPU here; a result from a kit met for the first "
                   f"time needs three (its signature, the CA's on its certificate, the district's acceptance): "
                   f"{3 * ed:.2f} ms against {raw_ms:.2f} ms to fetch and acknowledge, so in CPU a process doing "
                   f"nothing but these would reach {raw_ms / (raw_ms + 3 * ed):.2f} of the raw rate")
        out.append(f"stream: {stream_msgs} messages for {len(set(national_ids))} results; kits left unacknowledged: "
                   f"{unacked}; district rows {district_rows}")
        out.append(f"tally: {'match' if match else 'MISMATCH'} ({tally_detail})")
        out.append("partitions: " + ", ".join(f"{k} {v}" for k, v in parts.items()))
        n_ids = max(1, len(set(national_ids)))
        idle_us = 1e6 * (brokers_cpu[2] - brokers_cpu[1]) / max(idle_s, 1e-9) / max(1, connected)
        out.append(f"kit connections: {connected} TLS sessions in {connect_s:.0f} s, the brokers' CPU "
                   f"{1000 * (brokers_cpu[1] - brokers_cpu[0]) / max(1, connected):.2f} ms per connection"
                   + (f"; held idle (keepalive 30 s) {idle_us:.1f} µs of broker CPU per kit per second over "
                      f"{idle_s:.0f} s" if idle_s else "") + f"; kits reconnecting during the night: {reconnects}")
        out.append(f"storage per result: national table {national_bytes / n_ids:.0f} B (with indexes), stream "
                   f"{stream_bytes / max(1, stream_msgs):.0f} B per message per replica (3 replicas), district "
                   f"database {district_bytes / max(1, district_rows):.0f} B (with the {PHOTO_BYTES} B photo)")
        if args.plot:
            plot(args.plot, depth, [(r[3] - t0, r[3] - signed_at[r[0]]) for r in rows if r[0] in signed_at], fault_log,
                 night_s, [s[3] - t0 for s in sent], kit_queue)
            out.append(f"plot: {args.plot}")
        p50, p99 = percentile(e2e, 0.5), percentile(e2e, 0.99)
        out.append(f"results={len(sent)} lost={lost} duplicated={duplicated} p50_s={p50:.2f} p99_s={p99:.2f} "
                   f"national_ratio={national_ratio:.2f} tally_match={int(match)}")
        text_out = "\n".join(out)
        print(text_out)
        if args.markdown:
            update_markdown(args.markdown, text_out, args, expected)
        return 0 if lost == 0 and duplicated == 0 and match else 1
    finally:
        for w in workers:
            if w.poll() is None:
                w.terminate()
        for d in districts:
            for p in (d.service, d.broker):
                if p is not None and p.poll() is None:
                    p.terminate()
        for p in [*workers, *[d.service for d in districts], *[d.broker for d in districts]]:
            if p is not None:
                with contextlib.suppress(Exception):
                    p.wait(20)
        cluster.stop()
        pg_stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def component_cpu(districts: list[District], cluster: Any, workers: list[Any], pg_stop: Any) -> dict[str, float]:
    """CPU seconds so far of each component's processes and their children, summed over the component (a
    process killed by a fault takes its CPU with it: those components are counted low)."""
    groups: dict[str, list[int]] = {
        "mosquitto (all districts)": [d.broker.pid for d in districts if d.broker is not None],
        "district services (all)": [d.service.pid for d in districts if d.service is not None],
        "nats-server (3 nodes)": [n.proc.pid for n in cluster.nodes if n.proc is not None],
        "national workers": [w.pid for w in workers],
        "postgresql (national)": [pg_stop.pid],
    }
    out = {}
    for name, pids in groups.items():
        every = [q for p in pids for q in (p, *children_of(p))]
        out[name] = sum(cpu_seconds(p) or 0.0 for p in every)
    return out


def plot(path: Path, depth: list[tuple[float, int, int, int]], latency: list[tuple[float, float]],
         faults: list[tuple[float, str]], night_s: float, signed: list[float] | None = None,
         kit_queue: list[tuple[float, int]] | None = None) -> None:
    """A PNG of the night (Pillow, no plotting library), against seconds of the night, the faults as vertical
    lines: results signed and committed nationally per second (10 s bins) when `signed` is given, queue depths,
    and end-to-end latency per result at its national commit."""
    from PIL import Image, ImageDraw

    depth = [d for d in depth if d[0] >= 0]  # the samples before the first kit's first result
    t_max = max([night_s] + [t for t, *_ in depth] + [t for t, _ in latency]) or 1.0
    series: list[tuple[str, list[tuple[list[tuple[float, float]], str]]]] = []
    if signed is not None:
        def per_s(times: list[float], bin_s: float = 10.0) -> list[tuple[float, float]]:
            counts = [0] * (int(t_max // bin_s) + 1)
            for t in times:
                if 0 <= t <= t_max:
                    counts[int(t // bin_s)] += 1
            return [(i * bin_s + bin_s / 2, c / bin_s) for i, c in enumerate(counts)]
        series.append(("results per second (10 s bins): signed by the kits (green), committed nationally (black)",
                       [(per_s(signed), "green"), (per_s([t for t, _ in latency]), "black")]))
    queues: list[tuple[list[tuple[float, float]], str]] = [
        ([(t, a) for t, a, _, _ in depth], "blue"), ([(t, max(b, 0)) for t, _, b, _ in depth], "red")]
    if kit_queue is not None:
        queues.insert(0, ([(t, float(n)) for t, n in kit_queue if t >= 0], "purple"))
    series.append(("queue depth (results): " + ("kits waiting for their district (purple), " if kit_queue else "")
                   + "district outboxes to NATS (blue), national consumer (red)", queues))
    series.append(("end-to-end latency per result (s), kit signature -> national commit", [(latency, "points")]))
    w, left, pad, panel_h = 1000, 70, 30, 240
    h = pad + len(series) * (panel_h + pad)
    img = Image.new("RGB", (w, h), "white")
    g = ImageDraw.Draw(img)

    def x(t: float) -> float:
        return left + (w - left - pad) * t / t_max

    for n, (title, lines) in enumerate(series):
        top = pad + n * (panel_h + pad)
        bottom = top + panel_h
        v_max = max([v for pts, _ in lines for _, v in pts] + [1e-9]) * 1.1
        g.rectangle([left, top, w - pad, bottom], outline="gray")
        g.text((left + 5, top + 3), title, fill="black")
        g.text((5, top), f"{v_max:.1f}", fill="black")
        g.text((5, bottom - 10), "0", fill="black")
        for t, what in faults:
            g.line([x(t), top, x(t), bottom], fill="orange")
            g.text((x(t) + 2, bottom - 12), what.split()[0] + " " + what.split()[-1], fill="orange")
        for pts, colour in lines:
            xy = [(x(t), bottom - (bottom - top) * v / v_max) for t, v in sorted(pts)]
            if colour == "points":
                for px, py in xy:
                    g.point((px, py), fill="black")
            elif len(xy) > 1:
                g.line(xy, fill=colour, width=2)
    for t in range(0, int(t_max) + 1, max(1, int(t_max) // 10)):
        g.text((x(t) - 8, h - pad + 5), f"{t}s", fill="black")
    img.save(path)


def update_markdown(path: Path, table: str, args: Any, expected: int) -> None:
    text = path.read_text() if path.exists() else ""
    head = "## Election night (bench/election.py)"
    section = (f"{head}\n\nMeasured with `bench/election.py {'--quick' if args.quick else ''}`".rstrip()
               + f" on this 2-core machine shared with other work ({time.strftime('%Y-%m-%d')}).\n\n```\n"
               + table + "\n```\n")
    if head in text:
        text = re.sub(rf"{re.escape(head)}\n.*?(?=\n## |\Z)", section.rstrip("\n"), text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
