"""The district's forwarder: sends the forward-outbox to the national JetStream stream, in order.

The ingest writes one outbox row per accepted result in the transaction that stores the result
(tpskit.district.ingest); this thread reads the unsent rows oldest first, publishes them one after the other
(each waits for JetStream's ack, so the stream holds a district's results in its acceptance order, also after
a failure), and marks them sent after the acks. A crash between an ack and the mark publishes the row again:
its Nats-Msg-Id is in JetStream's duplicate window (and national storage is idempotent beyond it). NATS
unreachable: the rows wait, and the backlog goes out in order when it is back.

A district with several service instances (docs/failover.md) forwards through one of them at a time: the one
holding the district's row in `forward_lease`, claimed and renewed with a conditional UPDATE before each round
(no instance ever holds a transaction open while it publishes). The others only look at the lease now and then;
when the holder dies its lease lapses after `[national] lease_s` and one of them takes over from the oldest row
not marked sent. So each result is published once in normal running, not once per instance. Should two ever
publish at once (a holder that stalled past its lease, or instance clocks that disagree), nothing is lost or
reordered: each publishes the same rows in ascending order, each publish awaiting the stream's ack, so a row is
first stored only after the one before it, and the second copy falls in JetStream's duplicate window.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid

from sqlalchemy import Engine, exc, func, insert, or_, select, update

from tpskit.district.config import NationalSection
from tpskit.district.db import forward_lease, forward_outbox
from tpskit.events import Event, log_event, register
from tpskit.forwarded import message_id, subject_for
from tpskit.jetstream import JetStream

log = logging.getLogger("tpskit.district.forward")

register(
    Event("district.forward_connected", "info", "The forwarder reached the national NATS cluster."),
    Event("district.forward_failed", "warning", "Forwarding stopped on an error (NATS unreachable, no stream "
          "quorum); the unsent results wait in the outbox and go out in order when it works again."),
    Event("district.forwarded", "info", "Accepted results were published to the national stream (one line per "
          "round: count, duplicates the stream dropped, the last outbox row)."),
    Event("district.forward_lease", "info", "This service instance took the district's forward lease (it "
          "forwards the outbox now: the previous holder stopped or its lease lapsed) or lost it."),
)


class Forwarder:
    """One per district service (its first process): `start()`, `wake()` after a commit, `stop()`."""

    def __init__(self, engine: Engine, district: str, cfg: NationalSection, holder: str | None = None):
        self.engine, self.district, self.cfg = engine, district, cfg
        #: This instance in the lease table: unique per process, readable by an operator.
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:200]
        self.leading = False  # holds the forward lease (as of its last claim)
        self.subject = subject_for(district)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.duplicates = 0

    def start(self) -> Forwarder:
        self._thread = threading.Thread(target=self._run, name="district-forward", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(15)
        self.release()

    def unsent(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(forward_outbox)
                                    .where(forward_outbox.c.sent_at.is_(None))).scalar_one())

    # ------------------------------------------------------------------ the lease
    def claim(self) -> bool:
        """Take or renew the district's forward lease; whether this instance holds it now. Taken when it is
        ours or lapsed, in one conditional UPDATE (two instances racing: the database lets one through)."""
        now = time.time()
        lease = forward_lease.c
        with self.engine.begin() as conn:
            got = conn.execute(update(forward_lease)
                               .where(lease.district == self.district, or_(lease.holder == self.holder,
                                                                            lease.expires_at < now))
                               .values(holder=self.holder, expires_at=now + self.cfg.lease_s)).rowcount == 1
            exists = got or conn.execute(select(lease.holder).where(lease.district == self.district)).first()
        if not exists:  # the district's first forwarder: the primary key lets one insert through
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(forward_lease).values(district=self.district, holder=self.holder,
                                                              expires_at=now + self.cfg.lease_s))
                got = True
            except exc.IntegrityError:
                got = False
        if got != self.leading:
            log_event(log, "district.forward_lease", district=self.district, holder=self.holder,
                      state="taken" if got else "lost")
        self.leading = got
        return got

    def release(self) -> None:
        """At a clean stop: let another instance take over at once instead of after the lease."""
        if not self.leading:
            return
        self.leading = False
        try:
            with self.engine.begin() as conn:
                conn.execute(update(forward_lease).where(forward_lease.c.district == self.district,
                                                         forward_lease.c.holder == self.holder)
                             .values(expires_at=0.0))
        except Exception as e:  # the database is gone: the lease lapses by itself
            log_event(log, "district.forward_failed", district=self.district,
                      error=f"releasing the lease: {type(e).__name__}: {e}"[:300])

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        js: JetStream | None = None
        failing_since: float | None = None
        yield_until = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() < yield_until or not await asyncio.to_thread(self.claim):
                    # another instance forwards (or may, while we cannot): look again later
                    await asyncio.to_thread(self._stop.wait, self.cfg.lease_s / 3)
                    continue
                renewed = time.monotonic()
                if js is None:
                    js = await JetStream.connect(self.cfg.servers, name=f"district-{self.district}")
                    await js.ensure_stream(self.cfg.replicas, deadline_s=10)
                    log_event(log, "district.forward_connected", district=self.district)
                # A round ends by half the lease, so the lease is renewed before it can lapse under us.
                if not await self._round(js, renewed + self.cfg.lease_s / 2):
                    # nothing to send: sleep until woken (or poll now and then)
                    await asyncio.to_thread(self._wake.wait, 1.0)
                    self._wake.clear()
                failing_since = None
            except Exception as e:
                log_event(log, "district.forward_failed", district=self.district,
                          error=f"{type(e).__name__}: {e}"[:300])
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.cfg.lease_s and self.leading:
                    # Failing for a whole lease (NATS unreachable from here?): give another instance a turn.
                    await asyncio.to_thread(self.release)
                    failing_since, yield_until = None, now + self.cfg.lease_s / 2
                await asyncio.to_thread(self._stop.wait, self.cfg.retry_s)
                # A connection that keeps failing is replaced; nats-py otherwise reconnects on its own.
                if js is not None and not js.nc.is_connected:
                    await js.close()
                    js = None
        if js is not None:
            await js.close()

    async def _round(self, js: JetStream, until: float = float("inf")) -> bool:
        """Send one batch of unsent rows in order, stopping early at `until` (time.monotonic); returns
        whether there were any."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(forward_outbox.c.id, forward_outbox.c.submission_id, forward_outbox.c.message)
                                .where(forward_outbox.c.sent_at.is_(None)).order_by(forward_outbox.c.id)
                                .limit(self.cfg.batch_max)).all()
        if not rows:
            return False
        done: list[int] = []
        dups = 0
        try:
            for row_id, sid, message in rows:
                if self._stop.is_set() or time.monotonic() > until:
                    break
                got = await js.publish(self.subject, message.encode(), message_id(self.district, sid))
                done.append(row_id)
                dups += got.duplicate
        finally:  # what JetStream acknowledged is marked, also when a later publish failed
            if done:
                self.sent += len(done)  # counted first: whoever sees the rows marked sees them counted
                self.duplicates += dups
                with self.engine.begin() as conn:
                    conn.execute(update(forward_outbox).where(forward_outbox.c.id.in_(done))
                                 .values(sent_at=time.time()))
                log_event(log, "district.forwarded", district=self.district, count=len(done), duplicates=dups,
                          last=done[-1])
        return True
