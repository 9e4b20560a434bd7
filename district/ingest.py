"""District ingest: verify -> store -> signed ack, one database transaction per batch of messages.

Pure of MQTT: the service feeds it (topic, payload) pairs and publishes the acks it returns, and
acknowledges the inbound messages to the broker only after the batch committed. A crash anywhere
before the commit means the broker redelivers; a repeat is recognised by submission id and answered
`duplicate`, so nothing is lost and nothing is counted twice.

A result is accepted only when all of these hold, else it is refused with the reason in brackets:
signature by the x5c key [bad_signature], certificate issued by the district CA [untrusted_certificate],
valid now [certificate_expired], not revoked [revoked], a kit certificate [wrong_role], schema
[schema, malformed], payload kit = certificate CN [kit_mismatch], certificate TPS = payload TPS = topic
TPS [tps_mismatch], TPS in the district's list [unknown_tps], template known [unknown_template], the
template's checks re-run [checks_failed], vote totals within the TPS's registered voters
[over_registered_voters], the submission id not reused for other content [submission_conflict] and the
kit's sequence number above every one accepted before [replay]. Its evidence photo must arrive with the
SHA-256 the signed payload names; until it does, the verified result waits in `pending`, unanswered.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing as mp
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, delete, func, insert, select

from tpskit.district.db import evidence, lock_batch, pending, placeholders, rejections, results
from tpskit.envelope import (
    ACK_SCHEMA,
    CompactSigner,
    ResultPayload,
    VerificationError,
    Verifier,
    canonical_json,
    load_revocations,
    recheck_arithmetic,
    sha256_hex,
    unverified_payload,
    verify_result,
)
from tpskit.events import Event, log_event, register
from tpskit.forms import Template
from tpskit.provisioning.district import TpsInfo

log = logging.getLogger("tpskit.district.ingest")

register(
    Event("district.accepted", "action", "Verified results and their evidence photos were stored and acknowledged "
          "(one line per batch: count, and tps/kit/submission/seq of each)."),
    Event("district.duplicate", "info", "Results already stored arrived again; acknowledged as duplicates "
          "(one line per batch)."),
    Event("district.rejected", "security", "A message was refused (reason given); it is not stored as a result."),
    Event("district.evidence_mismatch", "security", "An evidence photo's SHA-256 differs from the signed one."),
    Event("district.waiting_evidence", "info", "Verified results wait for their evidence photos (one line per batch)."),
)
# Routine outcomes are logged one line per batch; refusals and mismatches one line per message.
PER_BATCH_EVENTS = frozenset({"district.accepted", "district.duplicate", "district.waiting_evidence"})

# What ResultPayload.submission_id allows; the last level of an evidence topic must be one.
SUBMISSION_ID = re.compile(r"[A-Za-z0-9-]{8,64}")

#: Longest refusal reason an ack carries (a schema error can quote a long value).
MAX_ACK_REASON = 1000

# Fields that count people who voted; none may exceed the TPS's registered voters.
TOTAL_FIELDS = ("pengguna_total", "suara_total")


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

    def __post_init__(self) -> None:
        self._rev_mtime: float | None = None
        self._signer = CompactSigner(self.key, self.chain)
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

    def check_many(self, items: list[tuple[str, bytes]]) -> list[Checked]:
        """(topic TPS, payload) of result messages, in order."""
        self.reload_revocations()
        now = dt.datetime.now(dt.UTC)
        return [self.check(topic_tps, payload, now) for topic_tps, payload in items]

    def check(self, topic_tps: str, payload: bytes, arrived: dt.datetime | None = None) -> Checked:
        try:
            return self._check(topic_tps, payload, arrived or dt.datetime.now(dt.UTC))
        except Exception as e:  # one message must never fail the batch, and so the ingest of every TPS
            # Refused without an ack: were it our fault, the kit publishes again and is checked afresh.
            return Checked("malformed", f"could not be checked ({type(e).__name__})", None, None, 0,
                           sha256_hex(payload), None, None, None)

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
            env_sha = sha256_hex(payload)
            ack = self.sign_ack(topic_tps, sid, kit, "rejected", env_sha, reason=f"{e.reason}: {detail}") \
                if sid else None
            return Checked(e.reason, detail, sid, kit, 0, env_sha, None, None, ack)
        env_sha = sha256_hex(verified.compact)
        ack = self.sign_ack(result.tps, result.submission_id, result.kit_id, "accepted", env_sha,
                            result.evidence_sha256)
        return Checked(None, "", result.submission_id, result.kit_id, result.seq, env_sha, result.evidence_sha256,
                       result_row(result, verified.compact, env_sha), ack)

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
        template = self.templates.get(result.template_id)
        if template is None or template.form_code != result.form_code:
            raise VerificationError("unknown_template", f"template {result.template_id!r} is not installed", raw)
        problems = recheck_arithmetic(result, template)
        if problems:
            raise VerificationError("checks_failed", "; ".join(problems), raw)
        values = result.values()
        over = [f"{n}={values[n]}" for n in TOTAL_FIELDS
                if values.get(n) is not None and values[n] > info.registered_voters]  # type: ignore[operator]
        if over:
            raise VerificationError("over_registered_voters", f"{', '.join(over)} above the "
                                    f"{info.registered_voters} registered voters of TPS {result.tps}", raw)


def _routable(value: object) -> str | None:
    """An id read from an unverified payload, kept only to route a rejection when it is harmless to store
    and sign: printable ASCII (no NUL, no lone surrogate, which no database or UTF-8 encoder takes)."""
    return value if isinstance(value, str) and len(value) <= 64 and value.isascii() and value.isprintable() else None


def ack_bytes(sid: str, kit: str | None, tps: str | None, status: str, envelope_sha: str, evidence_sha: str | None,
              reason: str | None, district: str, at: dt.datetime | None = None) -> bytes:
    """Exactly `payload_bytes(AckPayload(...))` with `received_at` in UTC to the second (tests compare
    them), without building, validating and dumping a model per ack; the values are the service's own."""
    if status not in ("accepted", "duplicate", "rejected"):
        raise ValueError(f"ack status {status!r}")
    when = (at or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    if reason is not None and len(reason) > MAX_ACK_REASON:  # the kit's AckPayload bounds it
        reason = reason[:MAX_ACK_REASON - 3] + "..."
    return canonical_json({"district": district, "envelope_sha256": envelope_sha, "evidence_sha256": evidence_sha,
                           "kit_id": kit, "reason": reason, "received_at": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "schema": ACK_SCHEMA, "status": status, "submission_id": sid, "tps": tps})


def result_row(result: ResultPayload, compact: str, env_sha: str) -> dict[str, Any]:
    return {"submission_id": result.submission_id, "kit_id": result.kit_id, "tps": result.tps,
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


@dataclass
class Ingest:
    engine: Engine
    #: The per-message checks and ack signer of this process.
    checker: Checker
    # Helper processes that verify in parallel: a picklable factory of their Checker, and how many.
    helpers: int = 0
    make_checker: Callable[[], Checker] | None = None

    def __post_init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._pool: ProcessPoolExecutor | None = None
        self._thread: ThreadPoolExecutor | None = None
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
        """Handle a batch in one transaction; returns the acks to publish after the commit.

        Every result is checked first (signature, certificate, content: no database needed; `checked`
        when the caller already started that with `check`), then what the batch needs from the database
        is read with three IN queries for the submission ids of the verified results and the photos,
        decisions are made in memory in arrival order (later messages see earlier ones of the same
        batch), and the writes go out as bulk inserts: a few statements per batch, not per message.
        """
        msgs = list(messages)
        if checked is None and self._pool is not None:
            checked = self.check(result_items(msgs))
        elif checked is None:
            out = self.checker.check_many(result_items(msgs))
            checked = lambda: out  # noqa: E731
        outcomes = iter(checked())
        acks: list[Ack] = []
        logs: list[tuple[str, dict]] = []
        plan: list[tuple[str, str, str, Checked | None]] = []  # kind, topic TPS, submission, outcome
        sids: set[str] = set()
        kits: set[str] = set()
        for topic, _payload in msgs:
            parts = topic.split("/")
            if len(parts) == 4 and parts[0] == "tps" and parts[2] == "evidence":
                if SUBMISSION_ID.fullmatch(parts[3]):
                    sids.add(parts[3])
                    plan.append(("evidence", parts[1], parts[3], None))
                else:  # not a submission id: would not fit the evidence table (PostgreSQL refuses the batch)
                    plan.append(("bad_evidence", parts[1], "", None))
            elif len(parts) == 3 and parts[0] == "tps" and parts[2] == "result":
                c = next(outcomes)
                if c.reason is None and c.sid:
                    sids.add(c.sid)
                    kits.add(c.kit)  # type: ignore[arg-type]
                plan.append(("result", parts[1], "", c))
            else:
                plan.append(("other", "", "", None))
        try:
            with self.engine.begin() as conn:
                # One batch at a time across service processes, reading what the others committed: so
                # duplicates, sequence order and photo pairing hold whichever process got a message.
                lock_batch(conn)
                b = _Batch.load(conn, sids, kits)
                for (topic, payload), (kind, topic_tps, sid, c) in zip(msgs, plan, strict=True):
                    if kind == "result":
                        self._result(conn, b, topic_tps, topic, payload, c, acks, logs)  # type: ignore[arg-type]
                    elif kind == "evidence":
                        self._evidence(conn, b, topic_tps, sid, payload, acks, logs)
                    elif kind == "bad_evidence":
                        self._reject(b, acks, logs, topic, topic_tps, payload, "malformed",
                                     "an evidence topic must end in a submission id", None, None)
                b.flush(conn)
        except Exception:
            self.counts["batch_failed"] += 1
            raise
        grouped: dict[str, list[dict]] = {}
        for event_id, fields in logs:
            self.counts[event_id] += 1
            if event_id in PER_BATCH_EVENTS:
                grouped.setdefault(event_id, []).append(fields)
            else:
                log_event(log, event_id, **fields)
        for event_id, items in grouped.items():  # one line per batch: a line per result cost ~30 µs each
            log_event(log, event_id, count=len(items), results=items)
        return acks

    def _ack(self, acks: list[Ack], tps: str, sid: str, kit: str | None, status: str, envelope_sha: str,
             evidence_sha: str | None = None, reason: str | None = None) -> None:
        acks.append(Ack(f"tps/{tps}/ack", self.checker.sign_ack(tps, sid, kit, status, envelope_sha, evidence_sha,
                                                                  reason)))

    def _reject(self, b: _Batch, acks: list[Ack], logs: list, topic: str, topic_tps: str, payload: bytes,
                reason: str, detail: str, sid: str | None, kit: str | None, signed: str | None = None) -> None:
        env_sha = sha256_hex(payload)
        b.new_rejections.append({"received_at": time.time(), "topic": topic[:200], "kit_id": kit,
                                 "submission_id": sid, "reason": reason, "detail": detail,
                                 "envelope_sha256": env_sha})
        logs.append(("district.rejected", {"tps": topic_tps, "kit": kit, "submission": sid, "reason": reason,
                                           "detail": detail}))
        self.counts["rejected:" + reason] += 1
        if signed is not None:
            acks.append(Ack(f"tps/{topic_tps}/ack", signed))
        elif sid:
            self._ack(acks, topic_tps, sid, kit, "rejected", env_sha, reason=f"{reason}: {detail}")

    @staticmethod
    def _max_seq_of(conn: Connection, b: _Batch, kit: str) -> int:
        if kit not in b.max_seq:  # a kit not read up front (a photo completing a waiting result)
            got = conn.execute(select(func.max(results.c.seq)).where(results.c.kit_id == kit)).scalar()
            b.max_seq[kit] = int(got or 0)
        return b.max_seq[kit] or 0

    def _result(self, conn: Connection, b: _Batch, topic_tps: str, topic: str, payload: bytes, c: Checked,
                acks: list[Ack], logs: list) -> None:
        if c.reason is not None:
            self._reject(b, acks, logs, topic, topic_tps, payload, c.reason, c.detail, c.sid, c.kit, c.ack)
            return
        assert c.sid is not None and c.kit is not None and c.row is not None
        sid, env_sha = c.sid, c.env_sha
        stored = b.stored.get(sid)
        if stored is not None:
            if stored[0] == env_sha:
                logs.append(("district.duplicate", {"tps": topic_tps, "kit": c.kit, "submission": sid}))
                self._ack(acks, topic_tps, sid, c.kit, "duplicate", env_sha, stored[1])
            else:
                self._reject(b, acks, logs, topic, topic_tps, payload, "submission_conflict",
                             "this submission id was already stored with other content", sid, c.kit)
            return
        waiting = b.pending.get(sid)
        if waiting is not None:
            if sha256_hex(waiting) != env_sha:
                self._reject(b, acks, logs, topic, topic_tps, payload, "submission_conflict",
                             "this submission id is already waiting with other content", sid, c.kit)
            return  # same result again, still waiting for its photo
        last = self._max_seq_of(conn, b, c.kit)
        if c.seq <= last:
            self._reject(b, acks, logs, topic, topic_tps, payload, "replay",
                         f"sequence {c.seq} is not above {last}, the last accepted from {c.kit}", sid, c.kit)
            return
        if (sid, c.evidence_sha) not in b.evidence:
            compact = c.row["envelope"]
            b.pending[sid] = compact
            b.new_pending.append({"submission_id": sid, "kit_id": c.kit, "seq": c.seq, "envelope": compact,
                                  "received_at": time.time()})
            logs.append(("district.waiting_evidence", {"tps": topic_tps, "kit": c.kit, "submission": sid}))
            return
        self._store(b, c.row, c.ack, acks, logs)

    def _store(self, b: _Batch, row: dict[str, Any], signed: str | None, acks: list[Ack], logs: list) -> None:
        b.new_results.append({**row, "received_at": time.time()})
        sid, kit, seq = row["submission_id"], row["kit_id"], row["seq"]
        b.stored[sid] = (row["envelope_sha256"], row["evidence_sha256"])
        b.max_seq[kit] = max(b.max_seq.get(kit) or 0, seq)
        logs.append(("district.accepted", {"tps": row["tps"], "kit": kit, "submission": sid, "seq": seq,
                                           "status": row["status"]}))
        if signed is not None:
            acks.append(Ack(f"tps/{row['tps']}/ack", signed))
        else:
            self._ack(acks, row["tps"], sid, kit, "accepted", row["envelope_sha256"], row["evidence_sha256"])

    def _evidence(self, conn: Connection, b: _Batch, topic_tps: str, sid: str, payload: bytes, acks: list[Ack],
                  logs: list) -> None:
        sha = sha256_hex(payload)
        if (sid, sha) not in b.evidence:
            b.evidence.add((sid, sha))
            b.new_evidence.append({"submission_id": sid, "sha256": sha, "tps": topic_tps, "jpeg": payload,
                                   "received_at": time.time()})
        waiting = b.pending.get(sid)
        if waiting is None:
            return
        raw = unverified_payload(waiting) or {}
        if raw.get("evidence_sha256") != sha:
            logs.append(("district.evidence_mismatch", {"tps": topic_tps, "submission": sid, "got": sha}))
            return
        del b.pending[sid]
        b.done_pending.add(sid)
        # Verified again: a kit revoked (or a certificate expired) while its result waited is refused now.
        tps = str(raw.get("tps"))
        self.checker.reload_revocations()
        c = self.checker.check(tps, waiting.encode())
        if c.reason is not None:
            self._reject(b, acks, logs, f"tps/{tps}/result", tps, waiting.encode(), c.reason, c.detail, c.sid, c.kit,
                         c.ack)
            return
        assert c.kit is not None and c.row is not None
        last = self._max_seq_of(conn, b, c.kit)
        if c.seq <= last:  # a later result of this kit was stored while this one waited
            self._reject(b, acks, logs, f"tps/{tps}/result", tps, waiting.encode(), "replay",
                         f"sequence {c.seq} is not above {last}, the last accepted from {c.kit}", sid, c.kit)
            return
        self._store(b, c.row, c.ack, acks, logs)


def result_items(messages: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """(topic TPS, payload) of the result messages among `messages`, in order, for `Ingest.check`."""
    out = []
    for topic, payload in messages:
        parts = topic.split("/")
        if len(parts) == 3 and parts[0] == "tps" and parts[2] == "result":
            out.append((parts[1], payload))
    return out


@dataclass
class _Batch:
    """What one batch knows: rows read up front for its submission ids, and the writes it will make."""

    stored: dict[str, tuple[str, str]]  # submission -> (envelope sha256, evidence sha256)
    pending: dict[str, str]  # submission -> envelope waiting for its photo
    evidence: set[tuple[str, str]]  # (submission, sha256) present
    max_seq: dict[str, int]  # kit -> highest sequence stored (kits of this batch's verified results)
    new_results: list[dict] = field(default_factory=list)
    new_evidence: list[dict] = field(default_factory=list)
    new_pending: list[dict] = field(default_factory=list)
    new_rejections: list[dict] = field(default_factory=list)
    done_pending: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, conn: Connection, sids: set[str], kits: set[str]) -> _Batch:
        """Three IN queries by submission id and one by kit, in the driver's own SQL (a batch's reads
        are the same statements every time; SQLAlchemy's expanding IN compiled them per batch)."""
        max_seq = {}
        if kits:
            max_seq = dict(conn.exec_driver_sql(
                f"SELECT kit_id, MAX(seq) FROM results WHERE kit_id IN ({placeholders(conn, len(kits))}) "
                "GROUP BY kit_id", tuple(kits)).all())
        if not sids:
            return cls({}, {}, set(), max_seq)
        ids, marks = tuple(sids), placeholders(conn, len(sids))
        stored = {r[0]: (r[1], r[2]) for r in conn.exec_driver_sql(
            f"SELECT submission_id, envelope_sha256, evidence_sha256 FROM results WHERE submission_id IN ({marks})",
            ids)}
        waiting = dict(conn.exec_driver_sql(
            f"SELECT submission_id, envelope FROM pending WHERE submission_id IN ({marks})", ids).all())
        photos = {(r[0], r[1]) for r in conn.exec_driver_sql(
            f"SELECT submission_id, sha256 FROM evidence WHERE submission_id IN ({marks})", ids)}
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
