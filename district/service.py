"""The district service: broker link + ingest worker. `tpskit district serve` runs one of these."""

from __future__ import annotations

import functools
import gc
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from collections.abc import Callable

from tpskit import topics
from tpskit.district import schema
from tpskit.district.config import DistrictConfig
from tpskit.district.db import make_engine, open_db
from tpskit.district.forward import Forwarder
from tpskit.district.ingest import Ack, Checked, Checker, Ingest, result_items
from tpskit.district.transport import SUBSCRIPTIONS, DistrictLink, Inbound, lean_problem, share_subscriptions
from tpskit.envelope import Verifier
from tpskit.events import Event, log_event, register, setup_logging
from tpskit.forms import load_templates
from tpskit.systemd import SystemdNotifier
from tpskit.trust.certs import load_certs, share_identity
from tpskit.trust.keys import load_key
from tpskit.trust.tps import read_tps_csv

log = logging.getLogger("tpskit.district.service")

register(
    Event("district.ready", "info", "The district service is subscribed and ingesting."),
    Event("district.broker", "warning", "The broker connection changed state (connected, refused, lost)."),
    Event("district.batch_failed", "error", "A batch could not be committed; the broker will redeliver it."),
    Event("district.stopped", "info", "The district service stopped."),
    Event("district.share_died", "error", "A service process of a share of the TPS list exited; all stop."),
    Event("district.schema_upgraded", "action", "The database was brought to this release's schema revision at "
          "start (from `before`, none for an empty database, to `after`)."),
    Event("district.schema_newer", "error", "The database is at a schema revision newer than this release knows "
          "(a later release upgraded it); the service does not start and leaves it untouched."),
    Event("district.share_identity_missing", "error", "[ingest] processes = N needs one certificate per process "
          "(tpskit provision service-shares); the service does not start without them."),
)


def build_checker(cfg: DistrictConfig) -> Checker:
    """The per-message checks and the ack signer, from the configuration (also in helper processes)."""
    templates = {t.id: t for t in load_templates(cfg.district.templates_dir).values()}
    return Checker(verifier=Verifier(load_certs(cfg.identity.ca)), tps=read_tps_csv(cfg.district.tps_list),
                   templates=templates, district_id=cfg.district.id, key=load_key(cfg.identity.key),
                   chain=load_certs(cfg.identity.certificate), revocations_path=cfg.district.revocations,
                   evidence_max_bytes=cfg.limits.evidence_max_bytes)


def build_ingest(cfg: DistrictConfig) -> Ingest:
    return Ingest(engine=open_db(cfg.database.url, writer=True), checker=build_checker(cfg),
                  helpers=cfg.ingest.verify_processes, make_checker=functools.partial(build_checker, cfg),
                  limits=cfg.limits, disk_path=cfg.disk_path,
                  forward_district=cfg.district.id if cfg.national.enabled else None)


def client_ids(cfg: DistrictConfig, shares: int | None = None) -> list[str]:
    """The MQTT client ids (persistent sessions) of the service's processes."""
    base = cfg.broker.client_id or "tpskit-district"
    n = cfg.ingest.processes if shares is None else shares
    return [base] if n == 1 else [f"{base}-{i + 1}of{n}" for i in range(n)]


def share_config(cfg: DistrictConfig, share: int, shares: int) -> DistrictConfig:
    """The configuration of one service process: with several, each has its own certificate (the broker
    binds one session to one certificate), issued by `tpskit provision service-shares`."""
    if shares == 1:
        return cfg
    cert, key = share_identity(cfg.identity.certificate, cfg.identity.key, share, shares)
    return cfg.model_copy(update={"identity": cfg.identity.model_copy(update={"certificate": cert, "key": key})})


def missing_share_identities(cfg: DistrictConfig, shares: int) -> list[str]:
    if shares == 1:
        return []
    out = []
    for i in range(shares):
        cert, key = share_identity(cfg.identity.certificate, cfg.identity.key, i, shares)
        out += [str(p) for p in (cert, key) if not p.exists()]
    return out


class DistrictService:
    """One service process: every TPS (share 0 of 1), or the TPS whose code modulo `shares` is `share`."""

    def __init__(self, cfg: DistrictConfig, share: int = 0, shares: int = 1):
        cfg = share_config(cfg, share, shares)
        self.cfg = cfg
        self.share = f"{share + 1}/{shares}"
        self.ingest = build_ingest(cfg)
        subs = SUBSCRIPTIONS if shares == 1 else share_subscriptions(self.ingest.checker.tps, share, shares)
        # One link per broker of the district (mosquitto brokers are not clustered), one inbox for all.
        inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()
        self.links = [DistrictLink(cfg, on_status=functools.partial(self._on_status, f"{host}:{port}"),
                                   client_id=client_ids(cfg, shares)[share], subscriptions=subs,
                                   endpoint=(host, port), via=i, inbox=inbox)
                      for i, (host, port) in enumerate(cfg.broker.endpoints)]
        self.link = self.links[0]
        self.inbox = inbox
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.processed = 0
        # One forwarder per district, in the first process: the outbox is sent in one order.
        self.forwarder: Forwarder | None = None
        if cfg.national.enabled and share == 0:
            self.forwarder = Forwarder(open_db(cfg.database.url), cfg.district.id, cfg.national)

    def _on_status(self, broker: str, what: str, detail: str | None) -> None:
        if what == "subscribed":
            log_event(log, "district.ready", district=self.cfg.district.id, broker=broker, share=self.share)
        else:
            log_event(log, "district.broker", state=what, detail=detail, broker=broker, share=self.share)

    def start(self) -> DistrictService:
        self._worker = threading.Thread(target=self._work, name="district-ingest", daemon=True)
        self._worker.start()
        for link in self.links:
            link.start()
        if self.forwarder is not None:
            self.forwarder.start()
        return self

    def wait_ready(self, timeout: float) -> bool:
        """Subscribed at every broker of the district."""
        deadline = time.monotonic() + timeout
        return all(link.subscribed.wait(max(0.0, deadline - time.monotonic())) for link in self.links)

    def serving(self) -> bool:
        """Subscribed at one broker at least (a district with one of its brokers down still serves)."""
        return any(link.subscribed.is_set() for link in self.links)

    def alive(self) -> bool:
        """The ingest thread runs (systemd's watchdog is fed only while it does)."""
        return self._worker is not None and self._worker.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._worker is not None:
            self._worker.join(10)
        for link in self.links:
            link.stop()
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder.engine.dispose()
        self.ingest.close()
        self.ingest.engine.dispose()
        log_event(log, "district.stopped", district=self.cfg.district.id, processed=self.processed,
                  share=self.share)

    def __enter__(self) -> DistrictService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _work(self) -> None:
        """Two batches in flight: while batch N is decided, committed and acknowledged here, batch N+1 is
        already being verified (by the helper processes, when configured). Decisions, commits and
        PUBACKs stay in arrival order, one batch after the other."""
        inbox = self.inbox
        limit = self.cfg.ingest.batch_max
        retry: list[Inbound] = []  # failed batches, retried before anything newer (per-kit order)
        ahead: tuple[list[Inbound], Callable[[], list[Checked]]] | None = None  # being verified
        while not self._stop.is_set():
            batch, retry = retry[:limit], retry[limit:]
            if not batch and ahead is None:
                try:
                    batch.append(inbox.get(timeout=0.2))
                except queue.Empty:
                    continue
            while len(batch) < limit and not retry:
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    break
            nxt = (batch, self.ingest.check(result_items([(m.topic, m.payload) for m in batch]))) if batch else None
            if ahead is not None:
                done, checked = ahead
                try:
                    acks = self.ingest.process(((m.topic, m.payload) for m in done), checked)
                except Exception as e:
                    log_event(log, "district.batch_failed", size=len(done), error=repr(e))
                    self._stop.wait(1.0)
                    # Retried first, in order (the next batch's checks are redone after it); the broker
                    # also redelivers them on reconnect.
                    retry = done + (nxt[0] if nxt else []) + retry
                    ahead = None
                    continue
                self._answer(done, acks)
                self.processed += len(done)
                if self.forwarder is not None:
                    self.forwarder.wake()
            ahead = nxt


    def _answer(self, done: list[Inbound], acks: list[Ack]) -> None:
        """Publish a committed batch's acks and PUBACK its messages, each through the broker it came from:
        the one the kit is connected to (a kit that moved publishes there again and is answered there)."""
        if len(self.links) == 1:
            self.link.publish_many([(a.topic, a.jws.encode("ascii")) for a in acks])
            self.link.confirm_many(done)
            return
        via: dict[str, set[int]] = {}  # ack topic -> the links its TPS's messages came through
        for m in done:
            t = topics.parse(m.topic)
            if t is not None:
                via.setdefault(topics.ack_topic(t.tps), set()).add(m.via)
        out: list[list[tuple[str, bytes]]] = [[] for _ in self.links]
        for a in acks:
            for i in via.get(a.topic) or range(len(self.links)):
                out[i].append((a.topic, a.jws.encode("ascii")))
        for i, link in enumerate(self.links):
            if out[i]:
                link.publish_many(out[i])
            link.confirm_many([m for m in done if m.via == i])


def serve(cfg: DistrictConfig, stop: threading.Event) -> int:
    """Run the service until `stop`: one process, or `[ingest] processes` of them, this one serving
    the first share of the TPS list and spawned children the others. Returns the exit status."""
    shares = max(1, min(cfg.ingest.processes, len(read_tps_csv(cfg.district.tps_list))))
    missing = missing_share_identities(cfg, shares)
    if missing:
        log_event(log, "district.share_identity_missing", shares=shares, missing=missing,
                  fix=f"tpskit provision service-shares --dir DISTRICT --processes {shares}")
        return 1
    if cfg.ingest.lean and (problem := lean_problem()) is not None:
        log_event(log, "district.lean_unsupported", detail=problem)
        return 1
    # The schema is upgraded here, once, before any share process opens the database (each would wait
    # for the migration lock and find nothing left to do).
    engine = make_engine(cfg.database.url, writer=True)
    try:
        done = schema.upgrade(engine)
    except schema.SchemaError as e:
        log_event(log, "district.schema_newer", detail=str(e))
        return 1
    finally:
        engine.dispose()
    if done.changed:
        log_event(log, "district.schema_upgraded", before=done.before, after=done.after)
    _tune_gc()
    ctx = mp.get_context("spawn")
    children = [ctx.Process(target=_serve_share, args=(cfg, i, shares, os.getpid()), daemon=True,
                            name=f"district-share-{i + 1}of{shares}") for i in range(1, shares)]
    for p in children:
        p.start()
    status = 0
    # systemd (Type=notify, WatchdogSec=): READY once subscribed, WATCHDOG while the ingest thread lives.
    notifier = SystemdNotifier()
    ready = False
    fed = 0.0
    svc = DistrictService(cfg, 0, shares).start()
    from tpskit.district.dashboard import start_dashboard

    dashboard = start_dashboard(cfg)  # in the first process only: it reads every share's results from the database
    try:
        while not stop.wait(0.5):
            dead = [p for p in children if not p.is_alive()]
            if dead:  # its TPS would go unserved: stop, and let the supervisor restart the whole service
                log_event(log, "district.share_died", share=dead[0].name, exitcode=dead[0].exitcode)
                status = 1
                break
            if not ready and svc.serving():
                notifier.ready(f"district {cfg.district.id}: subscribed, {shares} process(es)")
                ready = True
            interval = notifier.watchdog_interval_s
            if interval and svc.alive() and time.monotonic() - fed >= interval / 2:
                notifier.watchdog()
                fed = time.monotonic()
    finally:
        notifier.stopping()
        if dashboard is not None:
            dashboard.stop()
        svc.stop()
        for p in children:
            p.terminate()
        for p in children:
            p.join(20)
    return status


def _serve_share(cfg: DistrictConfig, share: int, shares: int, parent: int) -> None:
    """A child process: its share until SIGTERM, or until the parent is gone (even SIGKILLed)."""
    setup_logging()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    _tune_gc()
    svc = DistrictService(cfg, share, shares).start()
    try:
        while not stop.wait(0.5) and os.getppid() == parent:
            pass
    finally:
        svc.stop()


def _tune_gc() -> None:
    """For a service process only (it changes the whole interpreter): the cyclic garbage collector
    walked every long-lived object (modules, templates, caches) each few hundred allocations, and a
    batch allocates tens of thousands. Freeze what exists at start-up and collect the young generation
    less often; the ingest makes few reference cycles."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
