"""Shared fixtures: a throwaway district (CA, broker files, kits) made by our own provisioning code, a
real mosquitto on a free loopback port started with that configuration, the district service
(in-process or as a subprocess), and a throwaway PostgreSQL.

Never the machine's own services: every broker and database here is started by the tests on a free
port in a temporary folder and stopped at teardown. Waits poll a condition with a deadline.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tpskit.edge.reading import Reading
from tpskit.localhost import free_port, mosquitto_binary, wait_for
from tpskit.topics import ack_topic, evidence_topic, result_topic

ROOT = Path(__file__).resolve().parent.parent
PPWP = "c-hasil-ppwp-2024"
TPS_CODES = [f"320101200100{i}" for i in range(1, 10)]
REGISTERED = 250


# ------------------------------------------------------------------------------------------ helpers
def make_reading(tps: str, votes: tuple[int, int, int] = (60, 50, 40), *, status: str = "ok",
                 invalid: int = 3) -> dict[str, Any]:
    """A reading result of the PPWP template whose numbers satisfy every check of the template."""
    a, b, c = votes
    sah = a + b + c
    total = sah + invalid
    dpt = max(200, total + 5)
    values = {
        "dpt": dpt, "dptb": 2, "dpk": 2, "pemilih_total": dpt + 4,
        "pengguna_dpt": total - 2, "pengguna_dptb": 1, "pengguna_dpk": 1, "pengguna_total": total,
        "ss_diterima": dpt + 10, "ss_rusak": 1, "ss_sisa": dpt + 10 - 1 - total, "ss_digunakan": total,
        "paslon_01": a, "paslon_02": b, "paslon_03": c, "suara_sah": sah, "suara_tidak_sah": invalid,
        "suara_total": total,
    }
    from tpskit.forms import load_templates

    template = next(t for t in load_templates().values() if t.id == PPWP)
    checks = [{"id": ch.id, "passed": ch.holds(values)} for ch in template.checks]
    return {
        "photo": "sheet.jpg", "template": PPWP, "form_code": "PPWP", "tps": tps, "status": status,
        "reason": None, "message": None,
        "fields": {n: {"value": v, "confidence": 0.999, "status": "ok", "boxes": []} for n, v in values.items()},
        "checks": checks, "timings_ms": {},
    }


def reading_of(tps: str, votes: tuple[int, int, int] = (60, 50, 40), *, status: str = "ok",
               invalid: int = 3) -> Reading:
    """`make_reading` as the typed `Reading` the kit signs."""
    return Reading.from_dict(make_reading(tps, votes, status=status, invalid=invalid))


def fake_jpeg(tag: str, size: int = 2048) -> bytes:
    body = (tag.encode() * (size // max(1, len(tag)) + 1))[:size]
    return b"\xff\xd8\xff\xe0" + body + b"\xff\xd9"


def connect_outcome(port: int, ca: Path, cert: Path, key: Path, timeout: float = 5.0) -> str:
    """One fresh MQTT v5 connection attempt over TLS: 'connected' or 'refused: why'."""
    import ssl

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}", protocol=mqtt.MQTTv5)
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    client.tls_set_context(ctx)
    got: list[Any] = []
    client.on_connect = lambda c, u, f, rc, p: got.append(rc)
    try:
        client.connect("127.0.0.1", port)
        deadline = time.monotonic() + timeout
        # TLS 1.3 completes the client side before the server has checked our certificate: the
        # refusal then arrives as an alert on the first read, so read until CONNACK or closure.
        while not got and time.monotonic() < deadline:
            if client.loop(0.1) != mqtt.MQTT_ERR_SUCCESS:
                return "refused: connection closed by the broker"
    except (ssl.SSLError, OSError) as e:
        return f"refused: {e}"
    finally:
        with contextlib.suppress(Exception):
            client.disconnect()
    if got and not got[0].is_failure:
        return "connected"
    return f"refused: {got[0] if got else 'no CONNACK'}"


# ------------------------------------------------------------------------------------------ broker
class Broker:
    """A real mosquitto started from a generated configuration; stop/start/kill for outage tests."""

    def __init__(self, conf: Path, port: int, log: Path):
        self.conf, self.port, self.log = conf, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 15.0) -> Broker:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([mosquitto_binary(), "-c", str(self.conf)], stdout=out, stderr=out)

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return True
            except OSError:
                return False

        wait_for(up, timeout, f"mosquitto on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def reload(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)


# ------------------------------------------------------------------------------------------ rig
@dataclass
class KitHandle:
    kit_id: str
    tps: str
    folder: Path

    @property
    def config_path(self) -> Path:
        return self.folder / "kit.toml"

    def config(self) -> Any:
        from tpskit.edge.config import load_kit_config

        return load_kit_config(self.config_path)


FAST_DELIVERY = """
[delivery]
ack_timeout_s = 4.0
publish_timeout_s = 5.0
retry_initial_s = 0.2
retry_max_s = 1.0
"""


# The dashboard on any free port (services of several tests run at once). Quotas far above the default
# (120 new submissions per TPS and hour): the tests stream hundreds of
# results per kit. tests/test_district_quotas.py sets its own.
RIG_LIMITS = """
[limits]
submissions_per_tps_hour = 100000
min_free_mb = 0

[dashboard]
port = 0
"""


@dataclass
class Rig:
    """One district: its folder, its broker, its kits, and ways to run the district service."""

    root: Path
    broker: Broker
    kits: list[KitHandle]
    district_config: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    services: list[Any] = field(default_factory=list)

    def kit(self, i: int) -> KitHandle:
        return self.kits[i]

    def district_cfg(self) -> Any:
        from tpskit.district.config import load_district_config

        return load_district_config(self.district_config)

    def serve_inprocess(self) -> Any:
        from tpskit.district.service import DistrictService

        svc = DistrictService(self.district_cfg()).start()
        self.services.append(svc)
        assert svc.wait_ready(15), "district service did not subscribe"
        return svc

    def serve_subprocess(self, log_name: str = "district.log") -> subprocess.Popen[bytes]:
        """`tpskit district serve` as a real process; returns once it has subscribed."""
        log = self.root / log_name
        before = self._ready_count(log)
        with open(log, "ab") as out:
            p = subprocess.Popen([sys.executable, "-m", "tpskit.cli", "district", "serve", "--config",
                                  str(self.district_config)], stdout=out, stderr=out, cwd=self.root)
        self.procs.append(p)

        def ready() -> bool:
            if p.poll() is not None:
                raise AssertionError(f"district service exited {p.returncode}:\n{log.read_text()}")
            return self._ready_count(log) > before

        wait_for(ready, 30, "district service ready")
        return p

    @staticmethod
    def _ready_count(log: Path) -> int:
        return log.read_text().count('"event": "district.ready"') if log.exists() else 0

    def db(self) -> Any:
        from tpskit.district.db import open_db

        return open_db(self.district_cfg().database.url)

    def stored(self) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from tpskit.district.db import results

        engine = self.db()
        try:
            with engine.connect() as c:
                return [dict(r._mapping) for r in c.execute(select(results))]
        finally:
            engine.dispose()

    def count_stored(self) -> int:
        """Cheap poll for SQLite rigs (one query, no engine)."""
        import sqlite3

        url = self.district_cfg().database.url
        path = url[len("sqlite:///"):]
        if not os.path.exists(path):
            return 0
        con = sqlite3.connect(path, timeout=5)
        try:
            return con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            con.close()

    def rejections(self) -> list[dict[str, Any]]:
        from sqlalchemy import select

        from tpskit.district.db import rejections

        engine = self.db()
        try:
            with engine.connect() as c:
                return [dict(r._mapping) for r in c.execute(select(rejections))]
        finally:
            engine.dispose()

    def close(self) -> None:
        for svc in self.services:
            with contextlib.suppress(Exception):
                svc.stop()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        self.broker.stop()


def build_rig(base: Path, n_kits: int = 3, *, db_url: str | None = None, delivery: str = FAST_DELIVERY,
              district_id: str = "kab-test", tps_codes: list[str] = TPS_CODES, extra_config: str = "",
              reader: str = "paho") -> Rig:
    """`extra_config`: TOML appended to district.toml (e.g. a [national] section). `reader`: the district's
    MQTT reader, "paho" (its public API, the default) or "lean" ([ingest] lean)."""
    import getpass

    from tpskit.provisioning.district import bench_kit, district_init

    base.mkdir(parents=True, exist_ok=True)
    csv = base / "tps.csv"
    csv.write_text("tps,registered_voters\n" + "".join(f"{t},{REGISTERED}\n" for t in tps_codes))
    port = free_port()
    d = district_init(base / "district", csv, district_id=district_id, broker_host="127.0.0.1", broker_port=port,
                      bind="127.0.0.1", run_as=getpass.getuser() if os.geteuid() == 0 else None)
    kits = []
    for i in range(n_kits):
        kid = f"kit-{i + 1:02d}"
        issued = bench_kit(d.root, kid, tps_codes[i], base / "kits" / kid)
        with open(issued.folder / "kit.toml", "a") as f:
            f.write(delivery)
        kits.append(KitHandle(kid, tps_codes[i], issued.folder))
    if db_url:
        text = d.config_path.read_text().replace('url = "sqlite:///district.sqlite"', f'url = "{db_url}"')
        d.config_path.write_text(text)
    with d.config_path.open("a") as f:  # test streams send hundreds of results per kit in seconds
        f.write(RIG_LIMITS + extra_config)
        if reader == "lean":
            f.write("\n[ingest]\nlean = true\n")
    broker = Broker(d.broker_dir / "mosquitto.conf", port, base / "mosquitto.log").start()
    return Rig(d.root, broker, kits, d.config_path)


@pytest.fixture(params=["paho", "lean"])
def mqtt_reader(request: pytest.FixtureRequest) -> str:
    """Both district MQTT readers: an end-to-end test taking this fixture runs once with each."""
    return request.param


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Callable[..., Rig]]:
    made: list[Rig] = []

    def make(n_kits: int = 3, **kw: Any) -> Rig:
        rig = build_rig(tmp_path / f"rig{len(made)}", n_kits, **kw)
        made.append(rig)
        return rig

    yield make
    for rig in made:
        rig.close()


# ------------------------------------------------------------------------------------------ raw kit client
class RawKit:
    """A kit's MQTT identity without the delivery loop: publish anything, collect verified acks."""

    def __init__(self, handle: KitHandle):
        from tpskit.edge.transport import MqttLink, TlsIdentity
        from tpskit.envelope import Verifier
        from tpskit.trust.certs import load_certs

        cfg = handle.config()
        self.cfg = cfg
        self.acks: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.verifier = Verifier(load_certs(cfg.identity.ca))
        self.link = MqttLink(f"{cfg.kit.id}-raw", TlsIdentity(str(cfg.identity.ca), str(cfg.identity.certificate),
                                                              str(cfg.identity.key)),
                             cfg.broker, subscriptions=[ack_topic(cfg.kit.tps)], on_message=self._on_message)
        self.link.start()
        assert self.link.wait_connected(15), f"raw kit could not connect: {self.link.last_error}"
        wait_for(lambda: True, 0.1, "subscription")  # SUBSCRIBE is sent in on_connect before we publish

    def _on_message(self, topic: str, payload: bytes) -> None:
        from tpskit.envelope import parse_ack

        ack = parse_ack(self.verifier.verify(payload, role="district"))
        with self._lock:
            self.acks.setdefault(ack.submission_id, []).append(ack)

    def signed(self, reading: Reading | dict[str, Any], evidence: bytes, seq: int, *, submission_id: str | None = None,
               tps: str | None = None) -> tuple[str, str]:
        """(submission id, compact JWS) signed with this kit's key, without the outbox."""
        import uuid

        from tpskit.edge.submit import build_payload
        from tpskit.envelope import payload_bytes, sha256_hex, sign_compact
        from tpskit.trust.certs import load_certs
        from tpskit.trust.keys import load_key

        sid = submission_id or str(uuid.uuid4())
        typed = reading if isinstance(reading, Reading) else Reading.from_dict(reading)
        payload = build_payload(typed, kit_id=self.cfg.kit.id, tps=tps or self.cfg.kit.tps, seq=seq, submission_id=sid,
                                evidence_sha256=sha256_hex(evidence), evidence_bytes=len(evidence))
        return sid, sign_compact(payload_bytes(payload), load_key(self.cfg.identity.key),
                                 load_certs(self.cfg.identity.certificate))

    def send(self, sid: str, compact: str | bytes, evidence: bytes, tps: str | None = None) -> None:
        tps = tps or self.cfg.kit.tps
        out = self.link.publish(result_topic(tps), compact, 10)  # the result announces its photo: first
        assert out.delivered, out.reason
        out = self.link.publish(evidence_topic(tps, sid), evidence, 10)
        assert out.delivered, out.reason

    def send_nowait(self, sid: str, compact: str, evidence: bytes) -> None:
        """Publish without waiting for PUBACKs (paho keeps them in flight): a fast stream."""
        tps = self.cfg.kit.tps
        assert self.link.publish(result_topic(tps), compact, 10, wait=False).delivered
        assert self.link.publish(evidence_topic(tps, sid), evidence, 10, wait=False).delivered

    def all_acks(self) -> list[Any]:
        """Every ack so far, copied under the lock: the client thread adds acks while a test reads them
        (iterating `acks` itself raced with it: 'dictionary changed size during iteration')."""
        with self._lock:
            return [a for acks in self.acks.values() for a in acks]

    def acks_for(self, sid: str) -> list[Any]:
        with self._lock:
            return list(self.acks.get(sid, []))

    def wait_ack(self, sid: str, timeout: float = 15) -> Any:
        return wait_for(lambda: (self.acks_for(sid) or [None])[-1], timeout, f"ack for {sid}")

    def wait_ack_all(self, sid: str, n: int, timeout: float = 15) -> list[Any]:
        return wait_for(lambda: len(got := self.acks_for(sid)) >= n and got, timeout, f"{n} acks for {sid}")

    def close(self) -> None:
        self.link.stop()


@pytest.fixture
def raw_kit_factory() -> Iterator[Callable[[KitHandle], RawKit]]:
    made: list[RawKit] = []

    def make(handle: KitHandle) -> RawKit:
        k = RawKit(handle)
        made.append(k)
        return k

    yield make
    for k in made:
        k.close()


# ------------------------------------------------------------------------------------------ postgresql
def _pg_ctl() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise RuntimeError("PostgreSQL binaries not found under /usr/lib/postgresql; run `make system-deps`")
    return found[-1]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL on a free port (never the machine's server on 5432)."""
    pg_ctl = _pg_ctl()
    bindir = Path(pg_ctl).parent
    import tempfile

    # Its own folder directly under /tmp: pytest's tmp folders are private to the test user, and as root
    # the server runs as the postgres user, which must be able to reach its files.
    base = Path(tempfile.mkdtemp(prefix="tpskit-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    port = free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as the postgres system user
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chown(sock, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "tpskit", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    log = base / "pg.log"
    subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o",
                    f"-F -p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://tpskit@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class PgNode:
    """One PostgreSQL server of a primary/standby pair: started, stopped at once (a lost machine: every
    process of the server quits without a checkpoint, clients see their connections refused), promoted."""

    data: Path
    port: int
    log: Path
    sock: Path
    prefix: list[str]
    options: str = ""

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self.prefix, _pg_ctl(), "-D", str(self.data), *args], check=check,
                              capture_output=True)

    def start(self) -> PgNode:
        self._ctl("-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-F -p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1 {self.options}", "start")
        return self

    def lose(self) -> None:
        """The machine is gone: every server process quits at once, nothing flushed or checkpointed."""
        self._ctl("-m", "immediate", "-w", "stop", check=False)

    def promote(self) -> None:
        """The documented promotion (docs/failover.md): `pg_ctl promote`, waiting until it takes writes."""
        self._ctl("-w", "-t", "60", "promote")

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(f"postgresql://tpskit@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description is not None else []


@dataclass
class PgPair:
    primary: PgNode
    standby: PgNode

    @property
    def url(self) -> str:
        """The district's database URL: both servers, the one that takes writes chosen at each connection
        (libpq's target_session_attrs=read-write, through SQLAlchemy's psycopg dialect)."""
        return (f"postgresql+psycopg://tpskit@/postgres?host=127.0.0.1:{self.primary.port}"
                f"&host=127.0.0.1:{self.standby.port}&target_session_attrs=read-write&connect_timeout=5")


@pytest.fixture
def postgres_pair() -> Iterator[PgPair]:
    """A throwaway PostgreSQL primary with a synchronous streaming-replication standby (initdb, then
    pg_basebackup -R from the running primary), on free ports. Synchronous: a commit returns only once
    the standby has the WAL on disk, so a result the district acknowledged survives the primary's loss."""
    import tempfile

    bindir = Path(_pg_ctl()).parent
    base = Path(tempfile.mkdtemp(prefix="tpskit-pgpair-"))
    prefix: list[str] = []
    sock = base / "sock"
    sock.mkdir()
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        import pwd

        pw = pwd.getpwnam("postgres")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chown(sock, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    primary = PgNode(base / "primary", free_port(), base / "primary.log", sock, prefix,
                     "-c synchronous_standby_names='*' -c synchronous_commit=on")
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(primary.data), "-U", "tpskit", "--auth=trust",
                    "-E", "UTF8", "--no-sync"], check=True, capture_output=True)
    primary.start()
    standby = PgNode(base / "standby", free_port(), base / "standby.log", sock, prefix)
    try:
        subprocess.run([*prefix, str(bindir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port),
                        "-U", "tpskit", "-D", str(standby.data), "-R", "-X", "stream", "-c", "fast", "--no-sync"],
                       check=True, capture_output=True)
        standby.start()
        wait_for(lambda: primary.sql("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'"), 30,
                 "the standby streaming synchronously")
        yield PgPair(primary, standby)
    finally:
        primary.lose()
        standby.lose()
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(postgres_url: str) -> str:
    """A new, empty database on the throwaway PostgreSQL; its URL."""
    import uuid

    import psycopg

    name = f"d_{uuid.uuid4().hex[:12]}"
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


def load_json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


# ------------------------------------------------------------------------------------------ nats, national
@pytest.fixture(scope="module")
def nats_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Three nats-server nodes with JetStream, clustered on free loopback ports (never the machine's 4222).
    Shared by a module's tests; `national_stream` gives each test an empty stream."""
    from tpskit.localnats import NatsCluster

    cluster = NatsCluster(tmp_path_factory.mktemp("nats")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def run_js(servers: list[str], fn: Callable[[Any], Any]) -> Any:
    """Run `await fn(js)` on a fresh JetStream connection (tests talk to the stream directly)."""
    from tpskit.jetstream import run_with

    return run_with(servers, fn, "test")


@pytest.fixture
def national_stream(nats_cluster: Any) -> Any:
    """The cluster with the results stream deleted and created again (R3): nothing left from another test."""
    from tpskit.forwarded import STREAM

    async def fresh(js: Any) -> None:
        import asyncio

        from nats.js.errors import NotFoundError

        # A cluster a previous test killed and restarted may still be electing its leaders: a delete that
        # times out is tried again (suppressed, it left that test's messages in the stream for the next).
        deadline = time.monotonic() + 60
        while True:
            try:
                await js.js.delete_stream(STREAM)
            except NotFoundError:
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        await js.ensure_stream(3)
        assert await js.stream_messages() == 0

    run_js(nats_cluster.urls, fresh)
    return nats_cluster


@pytest.fixture
def national_db_url(postgres_url: str) -> Iterator[str]:
    """An empty database of its own on the throwaway PostgreSQL."""
    import uuid

    import psycopg

    name = f"national_{uuid.uuid4().hex[:12]}"
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + f"/{name}"


def national_toml(folder: Path, servers: list[str], db_url: str, rigs: list[Rig], ack_wait_s: float = 30.0) -> Path:
    """A national.toml trusting the rigs' districts."""
    lines = ["[nats]", "servers = [" + ", ".join(f'"{u}"' for u in servers) + "]", f"ack_wait_s = {ack_wait_s}", "",
             "[database]", f'url = "{db_url}"', ""]
    for rig in rigs:
        cfg = rig.district_cfg()
        lines += ["[[districts]]", f'id = "{cfg.district.id}"', f'ca = "{cfg.identity.ca}"',
                  f'tps_list = "{cfg.district.tps_list}"', ""]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "national.toml"
    path.write_text("\n".join(lines))
    return path


def national_section(servers: list[str]) -> str:
    """The district.toml [national] section forwarding to `servers`, retrying fast."""
    return ("\n[national]\nenabled = true\nservers = [" + ", ".join(f'"{u}"' for u in servers) + "]\n"
            "retry_s = 0.3\n")


# ------------------------------------------------------------------------------------------ browser
@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium (Debian's, through Selenium) for every page test of the session (tests/browser.py)."""
    from browser import start_chromium

    driver = start_chromium()
    try:
        yield driver
    finally:
        driver.quit()
