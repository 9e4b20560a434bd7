"""Delivery: outbox <-> transport, until the district's signed acknowledgement comes back.

One result is in flight at a time, oldest first (stop-and-wait), so the district always sees a kit's
sequence numbers in order. For the oldest unanswered row: publish the signed result, then its evidence
photo (QoS 1; a PUBACK failure code is a refusal, retried with backoff), mark it `sent`, wait for the
ack. No ack within `ack_timeout_s` -> publish both again (the district answers a repeat with
`duplicate`, never a second count); likewise at once when the link came up on another of the
district's brokers (`[broker] failover`: the ack may have been lost with the broker it went to). An
ack is accepted only when it verifies against the district CA, is signed by a district-role
certificate, names one of our submissions and carries the SHA-256 of exactly the envelope we sent; it
is then stored as the officer's receipt.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tpskit import topics
from tpskit.edge.config import KitConfig
from tpskit.edge.outbox import Outbox, OutboxRow
from tpskit.edge.transport import MqttLink, TlsIdentity
from tpskit.envelope import VerificationError, Verifier, parse_ack
from tpskit.events import Event, log_event, register
from tpskit.trust.certs import load_certs
from tpskit.trust.identity import ROLE_DISTRICT

log = logging.getLogger("tpskit.kit.delivery")

register(
    Event("kit.queued", "action", "A signed result and its evidence photo were stored in the outbox."),
    Event("kit.sent", "info", "The broker confirmed (PUBACK) a result; waiting for the district's ack."),
    Event("kit.acknowledged", "action", "The district's signed ack arrived and was stored as the receipt."),
    Event("kit.rejected_by_district", "warning", "The district refused a result; its signed reason is kept."),
    Event("kit.publish_refused", "error", "The broker refused or did not confirm a publish; will retry."),
    Event("kit.broker_unreachable", "warning", "The kit cannot connect to the broker; results wait in the outbox."),
    Event("kit.ack_ignored", "security", "A message on the ack topic did not verify or does not match a result."),
    Event("kit.republish", "info", "No ack arrived in time, or the kit moved to another broker; the result is "
                                   "published again."),
    Event("kit.broker_failover", "warning", "The kit is connected to another of the district's brokers than before "
                                            "(the one it used is unreachable); it stays there."),
    Event("kit.delivery_error", "error", "The delivery loop hit an unexpected error (e.g. reading the outbox); "
                                         "it retries after a pause instead of stopping."),
)


@dataclass(frozen=True)
class Receipt:
    submission_id: str
    seq: int
    state: str
    ack_status: str | None
    reason: str | None
    receipt_jws: str | None
    envelope_sha256: str


def receipt_of(row: OutboxRow) -> Receipt:
    return Receipt(row.submission_id, row.seq, row.state, row.ack_status, row.ack_reason, row.receipt,
                   row.envelope_sha256)


class Delivery:
    """The kit's delivery loop. `start()` / `stop()`; safe to restart across reboots (state is in SQLite)."""

    def __init__(self, cfg: KitConfig, outbox: Outbox | None = None, *,
                 on_change: Callable[[str, str], None] | None = None):
        self.cfg = cfg
        self.outbox = outbox or Outbox(cfg.outbox_path)
        self._own_outbox = outbox is None
        self.on_change = on_change  # (submission_id, new state) for lights / screen
        self.verifier = Verifier(load_certs(cfg.identity.ca))
        self.result_topic, self.ack_topic = topics.result_topic(cfg.kit.tps), topics.ack_topic(cfg.kit.tps)
        self.link = MqttLink(
            cfg.client_id, TlsIdentity(str(cfg.identity.ca), str(cfg.identity.certificate), str(cfg.identity.key)),
            cfg.broker, subscriptions=[self.ack_topic], retry=cfg.delivery, on_message=self._on_message,
            on_status=self._on_status)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was_up: bool | None = None
        self._last_broker: tuple[str, int] | None = None
        # Set when the link came up on another broker than before: a result sent and not acknowledged goes
        # out again at once (its ack may have been lost with the other broker; the district dedups).
        self._moved = threading.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> Delivery:
        self._stop.clear()
        self.link.start()
        self._thread = threading.Thread(target=self._loop, name="kit-delivery", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.link.stop()
        if self._own_outbox:
            self.outbox.close()

    def __enter__(self) -> Delivery:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def notify(self) -> None:
        """Call after queuing a new result so it goes out without waiting for the next poll."""
        self._wake.set()

    # ------------------------------------------------------------------ queries
    def receipt(self, submission_id: str) -> Receipt | None:
        row = self.outbox.get(submission_id)
        return receipt_of(row) if row else None

    def wait_answered(self, submission_id: str, timeout: float) -> Receipt | None:
        """Wait until the district answered (acknowledged or rejected); None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.receipt(submission_id)
            if r is not None and r.state in ("acknowledged", "rejected"):
                return r
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            time.sleep(min(0.05, left))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is pending in the outbox."""
        deadline = time.monotonic() + timeout
        while self.outbox.next_pending() is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    # ------------------------------------------------------------------ callbacks (MQTT thread)
    def _on_status(self, up: bool, error: str | None) -> None:
        if self._stop.is_set():
            return  # our own disconnect at stop()
        if not up and self._was_up is not False:
            log_event(log, "kit.broker_unreachable", kit=self.cfg.kit.id, why=error)
        if up:
            where = self.link.connected_to
            if self._last_broker is not None and where != self._last_broker:
                log_event(log, "kit.broker_failover", kit=self.cfg.kit.id, broker=f"{where[0]}:{where[1]}",
                          previous=f"{self._last_broker[0]}:{self._last_broker[1]}")
                self._moved.set()
            self._last_broker = where
        self._was_up = up
        self._wake.set()

    def _on_message(self, topic: str, payload: bytes) -> None:
        if topic != self.ack_topic:
            return
        try:
            verified = self.verifier.verify(payload, role=ROLE_DISTRICT)
            ack = parse_ack(verified)
        except VerificationError as e:
            log_event(log, "kit.ack_ignored", kit=self.cfg.kit.id, reason=e.reason, detail=e.detail)
            return
        row = self.outbox.get(ack.submission_id)
        if row is None:
            return  # an ack for another kit at this TPS
        if ack.envelope_sha256 != row.envelope_sha256:
            log_event(log, "kit.ack_ignored", kit=self.cfg.kit.id, submission=ack.submission_id,
                      reason="hash_mismatch", detail="the ack is for different content than we signed")
            return
        if self.outbox.mark_answered(ack.submission_id, ack.status, ack.reason, verified.compact):
            if ack.status == "rejected":
                log_event(log, "kit.rejected_by_district", kit=self.cfg.kit.id, submission=ack.submission_id,
                          seq=row.seq, why=ack.reason)
                self._changed(ack.submission_id, "rejected")
            else:
                log_event(log, "kit.acknowledged", kit=self.cfg.kit.id, submission=ack.submission_id,
                          seq=row.seq, status=ack.status)
                self._changed(ack.submission_id, "acknowledged")
        self._wake.set()

    def _changed(self, sid: str, state: str) -> None:
        if self.on_change is not None:
            self.on_change(sid, state)

    # ------------------------------------------------------------------ the loop
    def _backoff(self, attempts: int) -> float:
        d = self.cfg.delivery
        return min(d.retry_max_s, d.retry_initial_s * 2 ** min(attempts, 16)) * random.uniform(0.8, 1.0)

    def _loop(self) -> None:
        # One unexpected error (a disk I/O error, a locked database) must not end this thread: nothing would
        # deliver the queued results again until a restart, while the daemon looks healthy.
        sent_here: dict[str, float] = {}  # submission -> monotonic time we last published it
        while not self._stop.is_set():
            try:
                self._step(sent_here)
            except Exception as e:
                log_event(log, "kit.delivery_error", kit=self.cfg.kit.id, error=repr(e))
                self._stop.wait(self.cfg.delivery.retry_initial_s)

    def _step(self, sent_here: dict[str, float]) -> None:
        """One pass: publish the oldest unanswered result when it is due, else wait a little."""
        self._wake.clear()
        row = self.outbox.next_pending()
        if row is None or row.state == "queued":
            self._moved.clear()  # nothing sent is waiting for an ack
        if row is None:
            self._wake.wait(1.0)
            return
        if not self.link.connected.is_set():
            self._wake.wait(0.5)
            return
        now = time.time()
        if row.next_attempt_at > now:
            self._wake.wait(min(row.next_attempt_at - now, 1.0))
            return
        last = sent_here.get(row.submission_id)
        if row.state == "sent":
            moved = self._moved.is_set()
            since = (time.monotonic() - last) if last is not None else (now - (row.sent_at or 0))
            if since < self.cfg.delivery.ack_timeout_s and not moved:
                self._wake.wait(min(self.cfg.delivery.ack_timeout_s - since, 1.0))
                return
            self._moved.clear()
            log_event(log, "kit.republish", kit=self.cfg.kit.id, submission=row.submission_id, seq=row.seq,
                      why="another broker" if moved else "no ack in time")
        self._publish(row)
        sent_here[row.submission_id] = time.monotonic()

    def _publish(self, row: OutboxRow) -> None:
        timeout = self.cfg.delivery.publish_timeout_s
        # The signed result first: it announces its photo (SHA-256 and size), and the district stores only
        # a photo a verified result announced.
        for topic, body in ((self.result_topic, row.envelope.encode()),
                            (topics.evidence_topic(self.cfg.kit.tps, row.submission_id), row.evidence)):
            out = self.link.publish(topic, body, timeout)
            if not out.delivered:
                log_event(log, "kit.publish_refused", kit=self.cfg.kit.id, submission=row.submission_id,
                          topic=topic, reason_code=out.reason_code, why=out.reason)
                self.outbox.record_failure(row.submission_id, out.reason, time.time() + self._backoff(row.attempts))
                return
        self.outbox.mark_sent(row.submission_id)
        log_event(log, "kit.sent", kit=self.cfg.kit.id, submission=row.submission_id, seq=row.seq)
        self._changed(row.submission_id, "sent")
