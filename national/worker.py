"""A national worker (`tpskit national work`; run any number): takes batches from the durable pull consumer that
every worker shares, verifies each message again (tpskit.national.verify), stores the batch in one PostgreSQL
transaction (ON CONFLICT DO NOTHING on (province, submission id)) and acknowledges the messages to JetStream
only after the commit. A worker killed before its acks: JetStream delivers the messages again after
`ack_wait_s`, to any worker, and the second copy is recognised and not stored. A refused message is recorded,
logged and acknowledged (it would be refused again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, tuple_

from tpskit.events import Event, log_event, register
from tpskit.jetstream import JetStream, Pulled
from tpskit.national.config import NationalConfig
from tpskit.national.db import national_rejections, national_results, open_national_db
from tpskit.national.verify import NationalChecker, Refusal
from tpskit.tally import province_of

log = logging.getLogger("tpskit.national.worker")

register(
    Event("national.ready", "info", "A national worker is connected to NATS and PostgreSQL and consuming."),
    Event("national.stored", "action", "A batch was verified and committed (one line per batch: stored, already "
          "stored, refused)."),
    Event("national.rejected", "security", "A forwarded message was refused (reason given): a forged or altered "
          "acceptance or kit result, a district forwarding another's TPS; recorded, never stored as a result."),
    Event("national.conflict", "security", "A submission id arrived again with other content; the first stays."),
    Event("national.batch_failed", "error", "A batch could not be committed; it is not acknowledged, and JetStream "
          "delivers it again."),
    Event("national.stopped", "info", "The national worker stopped."),
)


_COLUMNS = [c.name for c in national_results.columns]
_INSERT_SQL = (f"INSERT INTO national_results ({', '.join(_COLUMNS)}) VALUES ({', '.join(['%s'] * len(_COLUMNS))}) "
               "ON CONFLICT DO NOTHING RETURNING submission_id")


def _insert_new(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the rows, skipping submissions already stored; returns the submission ids inserted. psycopg's
    executemany (pipelined, a prepared statement): SQLAlchemy building a many-row VALUES statement per batch
    cost more CPU than verifying the batch."""
    new: set[str] = set()
    with conn.connection.driver_connection.cursor() as cur:  # type: ignore[union-attr]
        cur.executemany(_INSERT_SQL, [tuple(r[c] for c in _COLUMNS) for r in rows], returning=True)
        while True:
            new.update(r[0] for r in cur.fetchall())
            if not cur.nextset():
                break
    return new


@dataclass
class Store:
    """One batch of checked messages into PostgreSQL, in one transaction."""

    engine: Engine
    counts: Counter[str] = field(default_factory=Counter)

    def commit(self, batch: list[tuple[Pulled, dict[str, Any] | Refusal]]) -> None:
        rows = {}
        for _, out in batch:
            if isinstance(out, dict):
                rows.setdefault(out["submission_id"], out)  # the same submission twice in one batch: once
        refused = [(p, r) for p, r in batch if isinstance(r, Refusal)]
        for r in rows.values():
            r["stored_at"] = time.time()  # committed a moment later: the end of the end-to-end latency
        with self.engine.begin() as conn:
            new: set[str] = set()
            if rows:
                new = _insert_new(conn, list(rows.values()))
            again = [r for sid, r in rows.items() if sid not in new]
            conflicts = []
            if again:
                keys = [(r["province"], r["submission_id"]) for r in again]
                have = dict(conn.execute(select(national_results.c.submission_id, national_results.c.envelope_sha256)
                                         .where(tuple_(national_results.c.province,
                                                       national_results.c.submission_id).in_(keys))).all())
                conflicts = [r for r in again if have.get(r["submission_id"]) != r["envelope_sha256"]]
            if refused or conflicts:
                now = time.time()
                conn.execute(insert(national_rejections), [
                    {"at": now, "district": r.district, "submission_id": r.submission_id, "reason": r.reason,
                     "detail": r.detail, "stream_seq": p.stream_seq} for p, r in refused] + [
                    {"at": now, "district": r["district"], "submission_id": r["submission_id"],
                     "reason": "submission_conflict", "detail": "this submission id is stored with other content",
                     "stream_seq": 0} for r in conflicts])
        for p, r in refused:
            log_event(log, "national.rejected", district=r.district, submission=r.submission_id, reason=r.reason,
                      detail=r.detail, stream_seq=p.stream_seq)
        for r in conflicts:
            log_event(log, "national.conflict", district=r["district"], submission=r["submission_id"])
        self.counts["stored"] += len(new)
        self.counts["already_stored"] += len(batch) - len(refused) - len(new) - len(conflicts)
        self.counts["refused"] += len(refused) + len(conflicts)
        log_event(log, "national.stored", stored=len(new), already_stored=len(batch) - len(refused) - len(new)
                  - len(conflicts), refused=len(refused) + len(conflicts))


class NationalWorker:
    def __init__(self, cfg: NationalConfig):
        self.cfg = cfg
        self.checker = NationalChecker(cfg.districts)
        provinces = {province_of(code) for code in self.checker.tps}
        self.store = Store(open_national_db(cfg.database.url, provinces))
        self.stop_event = threading.Event()

    def run(self) -> None:
        """Until `stop_event` (the command sets it on SIGTERM)."""
        asyncio.run(self._main())

    async def _main(self) -> None:
        """Up to three batches in flight: while one is committed (in a thread) and then acknowledged, the next
        is verified and, when the stream is ahead, the one after it is already being fetched (the worker
        waited on NATS with the CPU idle otherwise: a third of its wall time in the profile of a replay).
        A batch whose commit fails is not acknowledged: JetStream delivers it again. On stop, what was
        fetched is verified and committed too."""
        js: JetStream | None = None
        sub = None
        committing: asyncio.Task[None] | None = None
        fetching: asyncio.Task[list[Pulled]] | None = None
        try:
            while True:
                try:
                    if js is None:
                        js = await JetStream.connect(self.cfg.nats.servers, name="national-worker")
                    if sub is None:
                        # Again until it works: while a node is lost the stream or its consumer may time out
                        # here on a connection that is up (before, the worker then fetched from no consumer
                        # until the connection itself dropped).
                        await js.ensure_stream(self.cfg.nats.replicas)
                        sub = await js.pull_consumer(self.cfg.nats.durable, self.cfg.nats.ack_wait_s)
                        log_event(log, "national.ready", durable=self.cfg.nats.durable)
                    if fetching is None:
                        if self.stop_event.is_set():
                            break
                        fetching = asyncio.create_task(js.fetch(sub, self.cfg.worker.batch_max, timeout=1.0))
                    task, fetching = fetching, None
                    msgs = await task
                    if len(msgs) >= self.cfg.worker.batch_max and not self.stop_event.is_set():
                        # A full batch: the stream is ahead of us (a backlog, a burst). A short one means
                        # caught up: no prefetch then, so that a worker killed holds no more messages
                        # unacknowledged (each waits ack_wait_s) than before.
                        fetching = asyncio.create_task(js.fetch(sub, self.cfg.worker.batch_max, timeout=1.0))
                    batch = await self._check(msgs)
                    if committing is not None:
                        task_c, committing = committing, None
                        await task_c
                    if batch:
                        committing = asyncio.create_task(self._commit(batch))
                except Exception as e:
                    log_event(log, "national.batch_failed", error=f"{type(e).__name__}: {e}"[:300])
                    if fetching is not None:  # its messages, if any, are delivered again after ack_wait_s
                        fetching.cancel()
                        fetching = None
                    await asyncio.sleep(1.0)
                    if js is not None and not js.nc.is_connected:
                        await js.close()
                        js, sub = None, None
                    if self.stop_event.is_set():
                        break
            if committing is not None:
                with contextlib.suppress(Exception):
                    await committing
        finally:
            if js is not None:
                await js.close()
            self.store.engine.dispose()
            log_event(log, "national.stopped", **self.store.counts)

    async def _check(self, msgs: list[Pulled]) -> list[tuple[Pulled, dict[str, Any] | Refusal]]:
        """Verify a batch on the event loop, giving it a turn first (the next batch's request goes out) and
        then every few messages (that batch is read off the socket meanwhile)."""
        out = []
        for i, m in enumerate(msgs):
            if i % 16 == 0:
                await asyncio.sleep(0)
            out.append((m, self.checker.check(m.data)))
        return out

    async def _commit(self, batch: list[tuple[Pulled, dict[str, Any] | Refusal]]) -> None:
        await asyncio.to_thread(self.store.commit, batch)  # the event loop keeps the connection alive meanwhile
        for m, _ in batch:  # only after the commit
            await m.ack()
