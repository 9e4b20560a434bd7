"""The district's forwarder: sends the forward-outbox to the national JetStream stream, in order.

The ingest writes one outbox row per accepted result in the transaction that stores the result
(tpskit.district.ingest); this thread reads the unsent rows oldest first, publishes them one after the other
(each waits for JetStream's ack, so the stream holds a district's results in its acceptance order, also after
a failure), and marks them sent after the acks. A crash between an ack and the mark publishes the row again:
its Nats-Msg-Id is in JetStream's duplicate window (and national storage is idempotent beyond it). NATS
unreachable: the rows wait, and the backlog goes out in order when it is back.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from sqlalchemy import Engine, func, select, update

from tpskit.district.config import NationalSection
from tpskit.district.db import forward_outbox
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
)


class Forwarder:
    """One per district service (its first process): `start()`, `wake()` after a commit, `stop()`."""

    def __init__(self, engine: Engine, district: str, cfg: NationalSection):
        self.engine, self.district, self.cfg = engine, district, cfg
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

    def unsent(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(forward_outbox)
                                    .where(forward_outbox.c.sent_at.is_(None))).scalar_one())

    # ------------------------------------------------------------------ the thread
    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        js: JetStream | None = None
        while not self._stop.is_set():
            try:
                if js is None:
                    js = await JetStream.connect(self.cfg.servers, name=f"district-{self.district}")
                    await js.ensure_stream(self.cfg.replicas, deadline_s=10)
                    log_event(log, "district.forward_connected", district=self.district)
                if not await self._round(js):  # nothing to send: sleep until woken (or poll now and then)
                    await asyncio.to_thread(self._wake.wait, 1.0)
                    self._wake.clear()
            except Exception as e:
                log_event(log, "district.forward_failed", district=self.district,
                          error=f"{type(e).__name__}: {e}"[:300])
                await asyncio.to_thread(self._stop.wait, self.cfg.retry_s)
                # A connection that keeps failing is replaced; nats-py otherwise reconnects on its own.
                if js is not None and not js.nc.is_connected:
                    await js.close()
                    js = None
        if js is not None:
            await js.close()

    async def _round(self, js: JetStream) -> bool:
        """Send one batch of unsent rows in order; returns whether there were any."""
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
                if self._stop.is_set():
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
