"""District ingest: verify -> store -> signed ack, one database transaction per batch of messages.

Pure of MQTT: the service feeds it (topic, payload) pairs and publishes the acks it returns, and
acknowledges the inbound messages to the broker only after the batch committed. A crash anywhere
before the commit means the broker redelivers; a repeat is recognised by submission id and answered
`duplicate`, so nothing is lost and nothing is counted twice.

A result is accepted only when all of these hold, else it is refused with the reason in brackets:
signature by the x5c key [bad_signature], certificate issued by the district CA [untrusted_certificate],
valid at the capture time and at arrival [certificate_expired], a capture time at most an hour after
arrival [clock_ahead], not revoked [revoked], a kit certificate [wrong_role], strict JSON and the schema's
bounds [malformed, schema], payload kit = certificate CN [kit_mismatch], certificate TPS = payload TPS =
topic TPS [tps_mismatch], TPS in the district's list [unknown_tps], template known [unknown_template],
the template's checks re-run [checks_failed], vote totals within the TPS's registered voters
[over_registered_voters], an announced photo within the size limit [evidence_too_large], the submission
id not reused for other content [submission_conflict] and the sequence number above every one stored
from that kit certificate for the same form: a lower one is an older result that the stored one
superseded, never stored so that it cannot become current [superseded]; the same one is a number
signed twice [replay].

Evidence: a photo is stored only for a submission that announced it (its verified result arrived first,
or earlier in the same batch, naming the photo's SHA-256 and size), and only that one photo; any other
photo is refused and not stored [evidence_unannounced, evidence_mismatch]. Until its photo arrives a
verified result waits in `pending`, unanswered; if another service instance completes and stores it, this
one answers it `duplicate` when the photo reaches it too (that instance may have died before its ack
left). Below the disk floor photos are not stored and the result is stored and acknowledged without it
(tpskit.district.limits).

Size and quotas: a result message above MAX_RESULT_BYTES or a photo above the limit is refused
[too_large]; new submissions and stored bytes per TPS and hour are bounded [quota: not stored, not
answered, so the kit publishes it again later].

A message that fails at storage although it passed every check (a defect) cannot fail its batch for
ever: the batch is split until that message is alone, and then refused on its own [storage_failed]
and acknowledged to the broker, provided the database still takes a well-formed write (otherwise the
error is the database's, and the batch is retried as a whole).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing as mp
import re
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, delete, exc, insert, select

from tpskit import topics
from tpskit.district.config import LimitsSection
from tpskit.district.db import evidence, forward_outbox, lock_batch, pending, placeholders, rejections, results
from tpskit.district.limits import DiskFloor, QuotaBook
from tpskit.envelope import (
    MAX_EVIDENCE_BYTES,
    MAX_RESULT_BYTES,
    AckPayload,
    CompactSigner,
    ResultPayload,
    VerificationError,
    Verifier,
    check_result_content,
    load_revocations,
    payload_bytes,
    sha256_hex,
    unverified_payload,
    verify_result,
)
from tpskit.events import Event, log_event, register
from tpskit.forms import Template
from tpskit.forwarded import forward_bytes
from tpskit.trust.tps import TpsInfo

log = logging.getLogger("tpskit.district.ingest")

register(
    Event("district.accepted", "action", "Verified results and their evidence photos were stored and acknowledged "
          "(one line per batch: count, and tps/kit/submission/seq of each)."),
    Event("district.duplicate", "info", "Results already stored arrived again; acknowledged as duplicates "
          "(one line per batch)."),
    Event("district.rejected", "security", "A message was refused (reason given); it is not stored as a result."),
    Event("district.evidence_mismatch", "security", "An evidence photo's SHA-256 differs from the signed one."),
    Event("district.waiting_evidence", "info", "Verified results wait for their evidence photos (one line per batch)."),
    Event("district.quota", "security", "A TPS sent more than its quota this hour: the message is not stored and not "
          "answered (the kit publishes it again later)."),
    Event("district.refusals_summarised", "security", "A TPS's refused messages this hour exceed what is recorded one "
          "by one; further ones are only counted (one line per batch)."),
    Event("district.disk_floor", "error", "Free disk space crossed the floor: below it photos are not stored (results "
          "still are, and their acks say so); above it again, photos are stored again."),
    Event("district.storage_failed", "error", "A message passed every check but could not be stored (a defect): it was "
          "isolated from its batch and refused on its own, so the other messages are stored."),
)
# Routine outcomes are logged one line per batch; refusals and mismatches one line per message.
PER_BATCH_EVENTS = frozenset({"district.accepted", "district.duplicate", "district.waiting_evidence",
                              "district.refusals_summarised"})

# What ResultPayload.submission_id allows; the last level of an evidence topic must be one.
SUBMISSION_ID = re.compile(r"[A-Za-z0-9-]{8,64}")

#: Longest refusal reason an ack carries (a schema error can quote a long value).
MAX_ACK_REASON = 1000
#: Longest refusal detail recorded in the rejections table.
MAX_DETAIL = 1000

#: What the ack of a result stored without its photo (disk floor) says.
PHOTO_NOT_KEPT = ("stored without its photo: the district's disk is below its floor; the kit keeps the photo, "
                  "send it again when asked")

# Fields that count people who voted; none may exceed the TPS's registered voters.


@dataclass(frozen=True)
class Ack:
    topic: str
    jws: str


class Checked(NamedTuple):
    """What can be known about one result message without the database (small and picklable, so a
    helper process can work it out): either verified, with its row and a signed `accepted` ack ready
    for when the database agrees, or refused with the reason and, when it can be routed, a signed
    `rejected` ack."""

    reason: str | None  # None: verified
    detail: str
    sid: str | None  # verified, or read unverified only to route a rejection
    kit: str | None
    seq: int
    env_sha: str
    evidence_sha: str | None
    row: dict[str, Any] | None  # the results row (received_at added when stored)
    ack: str | None
    evidence_bytes: int = 0
    serial: str = ""  # the kit certificate's serial: sequence numbers are per certificate


def _refused(reason: str, detail: str, payload: bytes) -> Checked:
    return Checked(reason, detail, None, None, 0, sha256_hex(payload), None, None, None)


@dataclass
class Checker:
    """Verification, identity binding and content checks of results, and signing of acks: everything
    per message that needs no database. One lives in the service, or one in each helper process."""

    verifier: Verifier
    tps: dict[str, TpsInfo]
    templates: dict[str, Template]  # by template id
    district_id: str
    key: Ed25519PrivateKey
    chain: list[x509.Certificate]
    revocations_path: Path | None = None
    evidence_max_bytes: int = MAX_EVIDENCE_BYTES

    def __post_init__(self) -> None:
        self._rev_mtime: float | None = None
        self._signer = CompactSigner(self.key, self.chain)
        #: Bumped at every change of the revocation list: a verdict taken at an older revision is stale.
        self.revision = 0
        self.reload_revocations()

    def reload_revocations(self) -> None:
        """Re-read revoked.json when it changed (cheap: one stat per batch)."""
        p = self.revocations_path
        if p is None:
            return
        try:
            mtime = p.stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime == self._rev_mtime:
            return
        self.verifier.revocations = load_revocations(p)
        self._rev_mtime = mtime
        self.revision += 1

    def check_many(self, items: list[tuple[str, bytes]]) -> list[Checked]:
        """(topic TPS, payload) of result messages, in order."""
        self.reload_revocations()
        now = dt.datetime.now(dt.UTC)
        return [self.check(topic_tps, payload, now) for topic_tps, payload in items]

    def check(self, topic_tps: str, payload: bytes, arrived: dt.datetime | None = None) -> Checked:
        if len(payload) > MAX_RESULT_BYTES:  # not even parsed: a result with its certificate is ~3.5 KB
            return _refused("too_large", f"a result message of {len(payload)} bytes is above the "
                            f"{MAX_RESULT_BYTES} bytes a result may take", payload)
        try:
            return self._check(topic_tps, payload, arrived or dt.datetime.now(dt.UTC))
        except Exception as e:  # one message must never fail the batch, and so the ingest of every TPS
            # Refused without an ack: were it our fault, the kit publishes again and is checked afresh.
            return _refused("malformed", f"could not be checked ({type(e).__name__})", payload)

    def _check(self, topic_tps: str, payload: bytes, arrived: dt.datetime) -> Checked:
        try:
            verified, result = verify_result(self.verifier, payload, arrived=arrived)
            self._check_content(result, topic_tps, verified.payload)
        except VerificationError as e:
            raw = e.payload if e.payload is not None else unverified_payload(payload.decode("ascii", "replace"))
            sid = _routable(raw.get("submission_id")) if isinstance(raw, dict) else None
            kit = _routable(raw.get("kit_id")) if isinstance(raw, dict) else None
            # A detail can quote the payload (a schema error names its field): PostgreSQL takes no NUL.
            detail = e.detail if e.detail.isprintable() else ascii(e.detail)[1:-1]
            detail = detail[:MAX_DETAIL]
            env_sha = sha256_hex(payload)
            ack = self.sign_ack(topic_tps, sid, kit, "rejected", env_sha, reason=f"{e.reason}: {detail}") \
                if sid else None
            return Checked(e.reason, detail, sid, kit, 0, env_sha, None, None, ack)
        env_sha = sha256_hex(verified.compact)
        ack = self.sign_ack(result.tps, result.submission_id, result.kit_id, "accepted", env_sha,
                            result.evidence_sha256)
        serial = str(verified.signer.serial)
        return Checked(None, "", result.submission_id, result.kit_id, result.seq, env_sha, result.evidence_sha256,
                       result_row(result, verified.compact, env_sha, serial), ack, result.evidence_bytes, serial)

    def sign_ack(self, tps: str, sid: str, kit: str | None, status: str, envelope_sha: str,
                 evidence_sha: str | None = None, reason: str | None = None) -> str:
        return self._signer.sign(ack_bytes(sid, kit, tps, status, envelope_sha, evidence_sha, reason, self.district_id))

    def _check_content(self, result: ResultPayload, topic_tps: str, raw: dict) -> None:
        if result.tps != topic_tps:
            raise VerificationError("tps_mismatch", f"payload TPS {result.tps} arrived on the topic of TPS "
                                    f"{topic_tps}", raw)
        info = self.tps.get(result.tps)
        if info is None:
            raise VerificationError("unknown_tps", f"TPS {result.tps} is not in this district's list", raw)
        check_result_content(result, self.templates.get(result.template_id), info.registered_voters, raw)
        if result.evidence_bytes > self.evidence_max_bytes:
            raise VerificationError("evidence_too_large", f"the announced photo of {result.evidence_bytes} bytes is "
                                    f"above the {self.evidence_max_bytes} bytes this district accepts; capture it "
                                    "again at a lower size", raw)


def _routable(value: object) -> str | None:
    """An id read from an unverified payload, kept only to route a rejection when it is harmless to store
    and sign: printable ASCII (no NUL, no lone surrogate, which no database or UTF-8 encoder takes)."""
    return value if isinstance(value, str) and len(value) <= 64 and value.isascii() and value.isprintable() else None


def ack_bytes(sid: str, kit: str | None, tps: str | None, status: str, envelope_sha: str, evidence_sha: str | None,
              reason: str | None, district: str, at: dt.datetime | None = None) -> bytes:
    """The payload of an ack, built from the one ack schema (`AckPayload`, which the kits parse), with
    `received_at` in UTC to the second and a refusal reason cut to MAX_ACK_REASON. ValueError (pydantic's
    ValidationError) on a value the schema refuses."""
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    if reason is not None and len(reason) > MAX_ACK_REASON:
        reason = reason[:MAX_ACK_REASON - 3] + "..."
    return payload_bytes(AckPayload(submission_id=sid, kit_id=kit, tps=tps, status=status,  # type: ignore[arg-type]
                                    reason=reason, envelope_sha256=envelope_sha, evidence_sha256=evidence_sha,
                                    district=district, received_at=when))


def result_row(result: ResultPayload, compact: str, env_sha: str, serial: str) -> dict[str, Any]:
    return {"submission_id": result.submission_id, "kit_id": result.kit_id, "cert_serial": serial, "tps": result.tps,
            "template_id": result.template_id, "form_code": result.form_code, "status": result.status,
            "seq": result.seq, "captured_at": result.captured_at.isoformat(), "envelope": compact,
            "envelope_sha256": env_sha, "evidence_sha256": result.evidence_sha256,
            "values_json": json.dumps(result.values(), separators=(",", ":"))}


# Helper processes: each builds its own Checker from the service's configuration once.
_WORKER_CHECKER: Checker | None = None


def _worker_init(make: Callable[[], Checker]) -> None:
    global _WORKER_CHECKER
    _WORKER_CHECKER = make()


def _worker_check(items: list[tuple[str, bytes]]) -> list[Checked]:
    assert _WORKER_CHECKER is not None
    return _WORKER_CHECKER.check_many(items)


class _Item(NamedTuple):
    """One message of a batch, classified: result, evidence, bad_evidence (not a submission id in its
    topic) or other (not ours; PUBACKed and forgotten)."""

    topic: str
    payload: bytes
    kind: str
    tps: str
    sid: str
    checked: Checked | None


def _poison(e: BaseException) -> bool:
    """An error one message's content can cause (retrying cannot help; isolating it can): an integrity
    or data error of the database, a value the driver cannot bind (OverflowError on SQLite), a defect in
    our per-message code. A lost connection, a locked or full database are not: the batch is retried."""
    if isinstance(e, exc.IntegrityError | exc.DataError):
        return True
    if isinstance(e, exc.StatementError) and not isinstance(e, exc.DBAPIError):
        return True  # raised while binding a parameter, before the database saw it
    return isinstance(e, OverflowError | ValueError | TypeError | UnicodeError | KeyError | AttributeError)


#: How many refused submissions are remembered, so that the photo following each is dropped quietly.
REMEMBER_REFUSED = 10_000

#: Messages refused on their own in a row, with nothing stored in between, after which the error is taken
#: for a systemic one (a defect every message meets) and the batch retried instead: never refuse everything.
MAX_POISON_RUN = 5


@dataclass
class Ingest:
    engine: Engine
    #: The per-message checks and ack signer of this process.
    checker: Checker
    # Helper processes that verify in parallel: a picklable factory of their Checker, and how many.
    helpers: int = 0
    make_checker: Callable[[], Checker] | None = None
    limits: LimitsSection = field(default_factory=LimitsSection)
    #: Where free disk space is measured for the floor (the database's folder).
    disk_path: Path = field(default_factory=Path.cwd)
    #: The district id when [national] forwarding is on: every stored result gets a forward-outbox row in
    #: the same transaction (tpskit.district.forward sends them).
    forward_district: str | None = None

    def __post_init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._pool: ProcessPoolExecutor | None = None
        self._thread: ThreadPoolExecutor | None = None
        self.quotas = QuotaBook(self.limits)
        self.floor = DiskFloor(self.disk_path, self.limits.min_free_mb)
        self._poison_run = 0
        # Submissions whose result was refused lately: their photo, which follows, is dropped quietly.
        self._refused: OrderedDict[str, None] = OrderedDict()
        # Verdicts of results waiting for their photo, with the revocation revision they were taken at: a
        # photo arriving in a later batch (usual when the service keeps up and batches are small) then needs
        # no second signature check unless the revocation list changed meanwhile.
        self._waiting_verdicts: OrderedDict[str, tuple[Checked, int]] = OrderedDict()
        # Results this ingest took in without answering (each waited for its photo) -> their kit. Another
        # service instance may complete and commit one and die before its ack leaves: its photo, reaching
        # this ingest with the result already stored, is then answered `duplicate` here, else the kit
        # waits for its ack timeout (tests/test_district_failover.py).
        self._unanswered: OrderedDict[str, str] = OrderedDict()
        if self.helpers > 0 and self.make_checker is not None:
            self._pool = ProcessPoolExecutor(self.helpers, mp_context=mp.get_context("spawn"),
                                             initializer=_worker_init, initargs=(self.make_checker,))

    def close(self) -> None:
        if self._thread is not None:
            self._thread.shutdown(cancel_futures=True)
            self._thread = None
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None

    def reload_revocations(self) -> None:
        self.checker.reload_revocations()

    # ------------------------------------------------------------------ batch
    def check(self, items: list[tuple[str, bytes]]) -> Callable[[], list[Checked]]:
        """Start checking result messages ((topic TPS, payload), in order); call the returned function
        for the outcomes, in the same order. With helper processes the work is split in contiguous
        chunks, one per helper, and runs while the caller does other things."""
        if self._pool is None or len(items) < 2 * self.helpers:
            # One thread of our own: it verifies while the service thread waits for the previous commit.
            if self._thread is None:
                self._thread = ThreadPoolExecutor(1, thread_name_prefix="district-verify")
            future = self._thread.submit(self.checker.check_many, items)
            return future.result
        size = -(-len(items) // self.helpers)
        self.counts["checked_by_helpers"] += len(items)
        futures = [self._pool.submit(_worker_check, items[i:i + size]) for i in range(0, len(items), size)]
        return lambda: [c for f in futures for c in f.result()]

    def process(self, messages: Iterable[tuple[str, bytes]],
                checked: Callable[[], list[Checked]] | None = None) -> list[Ack]:
        """Handle a batch, normally in one transaction; returns the acks to publish after the commit.

        Every result is checked first (signature, certificate, content: no database needed; `checked`
        when the caller already started that with `check`), then what the batch needs from the database
        is read with a few IN queries, decisions are made in memory in arrival order (later messages see
        earlier ones of the same batch; a photo that came just before its own result in the batch is taken
        right after it), and the writes go out as bulk inserts. A batch that fails at storage because of
        one message is split until that message is alone, and that one is refused (see the module doc).
        Raises only what the database as a whole fails with: the caller retries the batch.
        """
        msgs = list(messages)
        if checked is None and self._pool is not None:
            checked = self.check(result_items(msgs))
        elif checked is None:
            out = self.checker.check_many(result_items(msgs))
            checked = lambda: out  # noqa: E731
        items = _plan(msgs, checked())
        below, changed = self.floor.check()
        if changed:
            log_event(log, "district.disk_floor", below=below, free_mb=round(self.floor.free_mb),
                      floor_mb=self.limits.min_free_mb,
                      photos="not stored (results still are)" if below else "stored again")
        acks: list[Ack] = []
        logs: list[tuple[str, dict]] = []
        self._commit(items, acks, logs, below)
        grouped: dict[str, list[dict]] = {}
        for event_id, fields in logs:
            self.counts[event_id] += 1
            if event_id in PER_BATCH_EVENTS:
                grouped.setdefault(event_id, []).append(fields)
            else:
                log_event(log, event_id, **fields)
        for event_id, group in grouped.items():  # one line per batch: a line per result cost ~30 µs each
            log_event(log, event_id, count=len(group), results=group)
        return acks

    def _commit(self, items: list[_Item], acks: list[Ack], logs: list, below: bool) -> None:
        if not items:
            return
        part_acks: list[Ack] = []
        part_logs: list[tuple[str, dict]] = []
        try:
            used = self._transaction(items, part_acks, part_logs, below)
        except Exception as e:
            self.counts["batch_failed"] += 1
            if not _poison(e):
                raise
            if len(items) > 1:  # isolate the message that fails: each half in its own transaction
                self.counts["batch_split"] += 1
                half = len(items) // 2
                self._commit(items[:half], acks, logs, below)
                self._commit(items[half:], acks, logs, below)
                return
            if self._poison_run >= MAX_POISON_RUN or not self._database_takes_writes():
                raise  # every message fails, or the database does: not one message's fault
            self._poison_run += 1
            self._storage_failed(items[0], e, acks, logs)
            return
        self._poison_run = 0
        acks += part_acks
        logs += part_logs
        for tps, (subs, nbytes) in used.items():
            self.quotas.add(tps, subs, nbytes)

    def _transaction(self, items: list[_Item], acks: list[Ack], logs: list, below: bool) -> dict[str, list[int]]:
        """One transaction for `items`; returns what it stored per TPS (new submissions, bytes) for quotas."""
        sids: set[str] = set()
        kits: set[str] = set()
        for it in items:
            if it.kind == "evidence":
                sids.add(it.sid)
            elif it.kind == "result" and it.checked is not None and it.checked.reason is None:
                sids.add(it.checked.sid)  # type: ignore[arg-type]
                kits.add(it.checked.kit)  # type: ignore[arg-type]
        with self.engine.begin() as conn:
            # One batch at a time across service processes, reading what the others committed: so
            # duplicates, sequence order and photo pairing hold whichever process got a message.
            lock_batch(conn)
            b = _Batch.load(conn, sids, kits)
            for it in items:
                if it.kind == "result":
                    self._result(b, it, acks, logs)
                elif it.kind == "evidence":
                    self._evidence(b, it, acks, logs, below)
                elif it.kind == "bad_evidence":
                    self._reject(b, acks, logs, it, "malformed", "an evidence topic must end in a submission id",
                                 None, None)
            b.flush(conn)
        self._note_unanswered(b)
        logs += [("district.waiting_evidence", {"tps": p["submission_id"], "kit": p["kit_id"],
                                                "submission": p["submission_id"]})
                 for p in b.new_pending if p["submission_id"] not in b.done_pending]
        return b.used

    def _note_unanswered(self, b: _Batch) -> None:
        """After a commit: remember the results this batch left unanswered, forget those it answered."""
        for sid, kit in b.unanswered.items():
            self._unanswered[sid] = kit
            self._unanswered.move_to_end(sid)
        for sid in b.answered:
            self._unanswered.pop(sid, None)
        while len(self._unanswered) > REMEMBER_REFUSED:
            self._unanswered.popitem(last=False)

    def _database_takes_writes(self) -> bool:
        """Does the database take a well-formed write? (Then the failing message is at fault.)"""
        probe = {"received_at": time.time(), "topic": "probe", "kit_id": None, "submission_id": None,
                 "reason": "probe", "detail": "", "envelope_sha256": None}
        try:
            with self.engine.connect() as conn:
                trans = conn.begin()
                lock_batch(conn)
                conn.execute(insert(rejections), [probe])
                trans.rollback()
            return True
        except Exception:
            return False

    def _storage_failed(self, it: _Item, error: BaseException, acks: list[Ack], logs: list) -> None:
        """Refuse one message that cannot be stored, in a transaction of its own; acknowledged to the
        broker with its batch, so it is never redelivered."""
        c = it.checked
        sid = _routable(c.sid) if c is not None else (it.sid or None)
        kit = _routable(c.kit) if c is not None else None
        detail = f"it passed every check but could not be stored ({type(error).__name__}); reported as a defect"
        env_sha = sha256_hex(it.payload)
        row = {"received_at": time.time(), "topic": ascii(it.topic)[1:201], "kit_id": kit, "submission_id": sid,
               "reason": "storage_failed", "detail": detail, "envelope_sha256": env_sha}
        answer = it.kind == "result" and bool(sid)
        try:
            with self.engine.begin() as conn:
                lock_batch(conn)
                if it.kind == "evidence":  # the photo completed a waiting result, which is what failed
                    waiting = conn.execute(select(pending.c.envelope, pending.c.kit_id)
                                           .where(pending.c.submission_id == it.sid)).first()
                    if waiting is not None:
                        conn.execute(delete(pending).where(pending.c.submission_id == it.sid))
                        env_sha, kit, answer = sha256_hex(waiting[0]), waiting[1], True
                        row.update(kit_id=kit, envelope_sha256=env_sha, topic=topics.result_topic(it.tps))
                conn.execute(insert(rejections), [row])
        except Exception:
            self.counts["storage_failed_unrecorded"] += 1
        logs.append(("district.storage_failed", {"tps": it.tps, "kit": kit, "submission": sid,
                                                 "error": f"{type(error).__name__}: {str(error)[:300]}"}))
        self.counts["rejected:storage_failed"] += 1
        if sid:
            self._refused[sid] = None
        if answer and sid:
            self._ack(acks, it.tps, sid, kit, "rejected", env_sha, reason=f"storage_failed: {detail}")

    def _ack(self, acks: list[Ack], tps: str, sid: str, kit: str | None, status: str, envelope_sha: str,
             evidence_sha: str | None = None, reason: str | None = None) -> None:
        signed = self.checker.sign_ack(tps, sid, kit, status, envelope_sha, evidence_sha, reason)
        acks.append(Ack(topics.ack_topic(tps), signed))

    def _reject(self, b: _Batch, acks: list[Ack], logs: list, it: _Item, reason: str, detail: str,
                sid: str | None, kit: str | None, signed: str | None = None, answer: bool = True) -> None:
        """Refuse a message: recorded (one by one up to the TPS's hourly number, then summarised), logged,
        answered with a signed `rejected` ack when it can be routed and `answer`."""
        env_sha = sha256_hex(it.payload)
        self.counts["rejected:" + reason] += 1
        if it.kind == "result" and sid:
            b.answered.add(sid)
            self._refused[sid] = None
            if len(self._refused) > REMEMBER_REFUSED:
                self._refused.popitem(last=False)
        if self.quotas.record_refusal(it.tps):
            b.new_rejections.append({"received_at": time.time(), "topic": it.topic[:200], "kit_id": kit,
                                     "submission_id": sid, "reason": reason, "detail": detail[:MAX_DETAIL],
                                     "envelope_sha256": env_sha})
            logs.append(("district.rejected", {"tps": it.tps, "kit": kit, "submission": sid, "reason": reason,
                                               "detail": detail[:MAX_DETAIL]}))
        else:
            logs.append(("district.refusals_summarised", {"tps": it.tps, "reason": reason}))
        if not answer:
            return
        if signed is not None:
            acks.append(Ack(topics.ack_topic(it.tps), signed))
        elif sid:
            self._ack(acks, it.tps, sid, kit, "rejected", env_sha, reason=f"{reason}: {detail}")

    @staticmethod
    def _out_of_order(b: _Batch, c: Checked) -> tuple[str, str] | None:
        """(reason, detail) for a result whose sequence number is not above the highest stored from its kit
        certificate for the same form. A lower one was signed before the stored one (it completed late, or
        is an old result sent again): the stored one supersedes it, and since the rule makes the last one
        received current (tally.successors), storing it would make the older result count."""
        template = c.row["template_id"]  # type: ignore[index]
        last = b.max_seq.get((c.kit, c.serial, template), 0)  # type: ignore[arg-type]
        if c.seq < last:
            return "superseded", (f"this kit's result of sequence {last} for form {template} is already stored "
                                  f"and supersedes this older one (sequence {c.seq}), which is not stored")
        if c.seq == last:
            return "replay", f"sequence {c.seq} was already used by a result of {c.kit} stored with this certificate"
        return None

    def _result(self, b: _Batch, it: _Item, acks: list[Ack], logs: list) -> None:
        c = it.checked
        assert c is not None
        if c.reason is not None:
            self._reject(b, acks, logs, it, c.reason, c.detail, c.sid, c.kit, c.ack)
            return
        assert c.sid is not None and c.kit is not None and c.row is not None
        sid, env_sha, tps = c.sid, c.env_sha, it.tps
        stored = b.stored.get(sid)
        if stored is not None:
            b.answered.add(sid)
            if stored[0] == env_sha:
                logs.append(("district.duplicate", {"tps": tps, "kit": c.kit, "submission": sid}))
                photo_kept = (sid, stored[1]) in b.evidence
                self._ack(acks, tps, sid, c.kit, "duplicate", env_sha, stored[1] if photo_kept else None,
                          None if photo_kept else PHOTO_NOT_KEPT)
            else:
                self._reject(b, acks, logs, it, "submission_conflict",
                             "this submission id was already stored with other content", sid, c.kit)
            return
        waiting = b.pending.get(sid)
        if waiting is not None:
            if waiting.envelope_sha != env_sha:
                self._reject(b, acks, logs, it, "submission_conflict",
                             "this submission id is already waiting with other content", sid, c.kit)
                return
            b.unanswered[sid] = c.kit  # same result again, still waiting for its photo (maybe another's)
            return
        older = self._out_of_order(b, c)
        if older:
            self._reject(b, acks, logs, it, *older, sid, c.kit)
            return
        used = b.used.setdefault(tps, [0, 0])
        new_bytes = len(it.payload) + c.evidence_bytes  # the announced photo counts from its announcement
        over = self.quotas.over(tps, new_bytes, used[0], used[1])
        if over:  # not stored, not answered: the kit publishes it again, and an hour later it fits
            self.counts["quota"] += 1
            self._refused[sid] = None  # its photo, which follows, is dropped quietly
            logs.append(("district.quota", {"tps": tps, "kit": c.kit, "submission": sid, "why": over}))
            return
        used[0] += 1
        used[1] += new_bytes
        b.unanswered[sid] = c.kit
        compact = c.row["envelope"]
        b.pending[sid] = _Waiting(compact, env_sha, c.evidence_sha or "", c.evidence_bytes, c)
        self._waiting_verdicts[sid] = (c, self.checker.revision)
        if len(self._waiting_verdicts) > REMEMBER_REFUSED:
            self._waiting_verdicts.popitem(last=False)
        b.new_pending.append({"submission_id": sid, "kit_id": c.kit, "cert_serial": c.serial, "seq": c.seq,
                              "envelope": compact, "evidence_sha256": c.evidence_sha,
                              "evidence_bytes": c.evidence_bytes, "received_at": time.time()})

    def _store(self, b: _Batch, c: Checked, acks: list[Ack], logs: list, photo_kept: bool) -> None:
        row = c.row
        assert row is not None
        now = time.time()
        b.new_results.append({**row, "received_at": now})
        sid, kit, seq = row["submission_id"], row["kit_id"], row["seq"]
        b.stored[sid] = (row["envelope_sha256"], row["evidence_sha256"])
        b.answered.add(sid)
        key = (kit, c.serial, row["template_id"])
        b.max_seq[key] = max(b.max_seq.get(key, 0), seq)
        logs.append(("district.accepted", {"tps": row["tps"], "kit": kit, "submission": sid, "seq": seq,
                                           "status": row["status"], "photo": photo_kept}))
        if photo_kept and c.ack is not None:
            acks.append(Ack(topics.ack_topic(row["tps"]), c.ack))
        else:
            self._ack(acks, row["tps"], sid, kit, "accepted", row["envelope_sha256"],
                      row["evidence_sha256"] if photo_kept else None, None if photo_kept else PHOTO_NOT_KEPT)
        if self.forward_district is not None:  # the acceptance just signed for the kit travels on, as it is
            b.new_forwards.append({"submission_id": sid, "created_at": now, "message": forward_bytes(
                self.forward_district, row["envelope"], row["evidence_sha256"], acks[-1].jws, now).decode()})

    def _evidence(self, b: _Batch, it: _Item, acks: list[Ack], logs: list, below: bool) -> None:
        sid, payload = it.sid, it.payload
        if len(payload) > self.limits.evidence_max_bytes:
            self._reject(b, acks, logs, it, "too_large", f"a photo of {len(payload)} bytes is above the "
                         f"{self.limits.evidence_max_bytes} bytes this district accepts", sid, None, answer=False)
            return
        sha = sha256_hex(payload)
        stored = b.stored.get(sid)
        if stored is not None:
            if stored[1] != sha:
                self._reject(b, acks, logs, it, "evidence_mismatch", "a second, different photo for a stored "
                             "result (one photo per submission)", sid, None, answer=False)
            elif (sid, sha) not in b.evidence and not below:  # kept out by the disk floor then; room now
                b.evidence.add((sid, sha))
                b.new_evidence.append({"submission_id": sid, "sha256": sha, "tps": it.tps, "jpeg": payload,
                                       "received_at": time.time()})
            kit = self._unanswered.get(sid)
            if kit is not None and sid not in b.answered:
                # We took its result in unanswered and another instance stored it: that one's ack may have
                # died with it, so we answer too (the kit keeps the first answer it gets).
                b.answered.add(sid)
                logs.append(("district.duplicate", {"tps": it.tps, "kit": kit, "submission": sid}))
                kept = (sid, sha) in b.evidence
                self._ack(acks, it.tps, sid, kit, "duplicate", stored[0], sha if kept else None,
                          None if kept else PHOTO_NOT_KEPT)
            return  # the same photo again: nothing new to store
        waiting = b.pending.get(sid)
        if waiting is None and sid in self._refused:  # the photo of a refused result: expected, not stored
            self.counts["evidence_of_refused_result"] += 1
            return
        if waiting is None:
            # Not stored: only a photo a verified result announced is (the kit sends the result first).
            self._reject(b, acks, logs, it, "evidence_unannounced", "no verified result announced this photo; "
                         "a kit sends the result first, then its photo", sid, None, answer=False)
            return
        if waiting.evidence_sha != sha or waiting.evidence_bytes != len(payload):
            logs.append(("district.evidence_mismatch", {"tps": it.tps, "submission": sid, "got": sha,
                                                        "bytes": len(payload)}))
            self._reject(b, acks, logs, it, "evidence_mismatch", "this photo is not the one the signed result "
                         "announced (SHA-256 and size); the result keeps waiting for its own", sid, None,
                         answer=False)
            return
        del b.pending[sid]
        b.done_pending.add(sid)
        envelope = waiting.envelope.encode()
        c = waiting.checked
        if c is None:
            # Verified again, unless nothing changed: a kit revoked while its result waited is refused now.
            self.checker.reload_revocations()
            kept = self._waiting_verdicts.pop(sid, None)
            if kept is not None and kept[1] == self.checker.revision and kept[0].env_sha == waiting.envelope_sha:
                c = kept[0]
            else:
                c = self.checker.check(it.tps, envelope)
        result_it = it._replace(topic=topics.result_topic(it.tps), payload=envelope, kind="result", checked=c)
        if c.reason is not None:
            self._reject(b, acks, logs, result_it, c.reason, c.detail, c.sid, c.kit, c.ack)
            return
        older = self._out_of_order(b, c)
        if older:  # a later result of this kit was stored while this one waited for its photo
            self._reject(b, acks, logs, result_it, *older, sid, c.kit)
            return
        if not below:
            b.evidence.add((sid, sha))
            b.new_evidence.append({"submission_id": sid, "sha256": sha, "tps": it.tps, "jpeg": payload,
                                   "received_at": time.time()})
        self._store(b, c, acks, logs, photo_kept=not below)


def _plan(msgs: list[tuple[str, bytes]], outcomes: list[Checked]) -> list[_Item]:
    """Classify a batch's messages, in arrival order, except that a photo whose own verified result comes
    later in the same batch is moved right after that result ("the result first or together")."""
    it_outcomes = iter(outcomes)
    items: list[_Item] = []
    for topic, payload in msgs:
        t = topics.parse(topic)
        if t is not None and t.kind == topics.EVIDENCE:
            if SUBMISSION_ID.fullmatch(t.submission_id):
                items.append(_Item(topic, payload, "evidence", t.tps, t.submission_id, None))
            else:  # not a submission id: would not fit the evidence table (PostgreSQL refuses the batch)
                items.append(_Item(topic, payload, "bad_evidence", t.tps, "", None))
        elif t is not None and t.kind == topics.RESULT:
            items.append(_Item(topic, payload, "result", t.tps, "", next(it_outcomes)))
        else:
            items.append(_Item(topic, payload, "other", "", "", None))
    announced = {it.checked.sid: i for i, it in enumerate(items)
                 if it.kind == "result" and it.checked is not None and it.checked.reason is None}
    if not any(it.kind == "evidence" and announced.get(it.sid, -1) > i for i, it in enumerate(items)):
        return items
    out: list[_Item] = []
    deferred: dict[str, list[_Item]] = {}
    for i, it in enumerate(items):
        if it.kind == "evidence" and announced.get(it.sid, -1) > i:
            deferred.setdefault(it.sid, []).append(it)
            continue
        out.append(it)
        if it.kind == "result" and it.checked is not None and it.checked.reason is None:
            out.extend(deferred.pop(it.checked.sid, []))  # type: ignore[arg-type]
    return out


def result_items(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """(topic TPS, payload) of the result messages among `messages`, in order, for `Ingest.check`."""
    out = []
    for topic, payload in messages:
        t = topics.parse(topic)
        if t is not None and t.kind == topics.RESULT:
            out.append((t.tps, payload))
    return out


class _Waiting(NamedTuple):
    """A verified result waiting for its photo: what the photo must be."""

    envelope: str
    envelope_sha: str
    evidence_sha: str
    evidence_bytes: int
    checked: Checked | None = None  # verified in this very batch: no need to verify it again


@dataclass
class _Batch:
    """What one batch knows: rows read up front for its submission ids, and the writes it will make."""

    stored: dict[str, tuple[str, str]]  # submission -> (envelope sha256, evidence sha256)
    pending: dict[str, _Waiting]  # submission -> the result waiting for its photo
    evidence: set[tuple[str, str]]  # (submission, sha256) present
    max_seq: dict[tuple[str, str, str], int]  # (kit, certificate serial, template) -> highest sequence stored
    new_results: list[dict] = field(default_factory=list)
    new_evidence: list[dict] = field(default_factory=list)
    new_pending: list[dict] = field(default_factory=list)
    new_rejections: list[dict] = field(default_factory=list)
    done_pending: set[str] = field(default_factory=set)
    used: dict[str, list[int]] = field(default_factory=dict)  # TPS -> [new submissions, bytes] (quotas)
    new_forwards: list[dict] = field(default_factory=list)  # forward-outbox rows ([national])
    unanswered: dict[str, str] = field(default_factory=dict)  # results taken in without an answer -> kit
    answered: set[str] = field(default_factory=set)  # submissions this batch answered

    @classmethod
    def load(cls, conn: Connection, sids: set[str], kits: set[str]) -> _Batch:
        """A few IN queries by submission id and one by kit, in the driver's own SQL (a batch's reads are
        the same statements every time; SQLAlchemy's expanding IN compiled them per batch). The sequence
        numbers of the kits of the pending results come along, so a photo completing one needs no query."""
        if sids:
            ids, marks = tuple(sids), placeholders(conn, len(sids))
            stored = {r[0]: (r[1], r[2]) for r in conn.exec_driver_sql(
                "SELECT submission_id, envelope_sha256, evidence_sha256 FROM results "
                f"WHERE submission_id IN ({marks})", ids)}
            waiting_rows = conn.exec_driver_sql(
                "SELECT submission_id, envelope, evidence_sha256, evidence_bytes, kit_id FROM pending "
                f"WHERE submission_id IN ({marks})", ids).all()
            photos = {(r[0], r[1]) for r in conn.exec_driver_sql(
                f"SELECT submission_id, sha256 FROM evidence WHERE submission_id IN ({marks})", ids)}
        else:
            stored, waiting_rows, photos = {}, [], set()
        waiting = {r[0]: _Waiting(r[1], sha256_hex(r[1]), r[2] or "", int(r[3] or 0)) for r in waiting_rows}
        kits = kits | {r[4] for r in waiting_rows}
        max_seq: dict[tuple[str, str, str], int] = {}
        if kits:
            for kit, serial, template, top in conn.exec_driver_sql(
                    "SELECT kit_id, cert_serial, template_id, MAX(seq) FROM results "
                    f"WHERE kit_id IN ({placeholders(conn, len(kits))}) GROUP BY kit_id, cert_serial, template_id",
                    tuple(kits)):
                max_seq[(kit, serial, template)] = int(top)
        return cls(stored, waiting, photos, max_seq)

    def flush(self, conn: Connection) -> None:
        if self.new_evidence:
            conn.execute(insert(evidence), self.new_evidence)
        new_pending = [p for p in self.new_pending if p["submission_id"] not in self.done_pending]
        if new_pending:
            conn.execute(insert(pending), new_pending)
        old_done = self.done_pending - {p["submission_id"] for p in self.new_pending}
        if old_done:
            conn.execute(delete(pending).where(pending.c.submission_id.in_(list(old_done))))
        if self.new_results:
            conn.execute(insert(results), self.new_results)
        if self.new_rejections:
            conn.execute(insert(rejections), self.new_rejections)
        if self.new_forwards:
            conn.execute(insert(forward_outbox), self.new_forwards)
