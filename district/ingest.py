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
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, delete, func, insert, select

from tpskit.district.db import evidence, pending, rejections, results
from tpskit.envelope import (
    AckPayload,
    CompactSigner,
    ResultPayload,
    VerificationError,
    Verified,
    Verifier,
    parse_result,
    payload_bytes,
    recheck_arithmetic,
    sha256_hex,
    unverified_payload,
)
from tpskit.events import Event, log_event, register
from tpskit.forms import Template
from tpskit.provisioning.district import TpsInfo
from tpskit.provisioning.pki import ROLE_KIT

log = logging.getLogger("tpskit.district.ingest")

register(
    Event("district.accepted", "action", "A verified result and its evidence photo were stored and acknowledged."),
    Event("district.duplicate", "info", "A result already stored arrived again; acknowledged as duplicate."),
    Event("district.rejected", "security", "A message was refused (reason given); it is not stored as a result."),
    Event("district.evidence_mismatch", "security", "An evidence photo's SHA-256 differs from the signed one."),
    Event("district.waiting_evidence", "info", "A verified result waits for its evidence photo."),
)

# Fields that count people who voted; none may exceed the TPS's registered voters.
TOTAL_FIELDS = ("pengguna_total", "suara_total")


@dataclass(frozen=True)
class Ack:
    topic: str
    jws: str


@dataclass
class Ingest:
    engine: Engine
    verifier: Verifier
    tps: dict[str, TpsInfo]
    templates: dict[str, Template]  # by template id
    district_id: str
    key: Ed25519PrivateKey
    chain: list[x509.Certificate]
    revocations_path: Path | None = None

    def __post_init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._rev_mtime: float | None = None
        self._max_seq: dict[str, int] = {}
        self._signer = CompactSigner(self.key, self.chain)
        self.reload_revocations()

    # ------------------------------------------------------------------ revocation
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
        data = json.loads(p.read_text() or "{}")
        self.verifier.revoked_names = set(data)
        self.verifier.revoked_serials = {int(v["serial"]) for v in data.values()}
        self._rev_mtime = mtime

    # ------------------------------------------------------------------ batch
    def process(self, messages: Iterable[tuple[str, bytes]]) -> list[Ack]:
        """Handle a batch in one transaction; returns the acks to publish after the commit.

        Every result is verified first (signature, certificate, content: no database needed), then what
        the batch needs from the database is read with three IN queries for the submission ids of the
        verified results and the photos, decisions are made in memory in arrival order (later messages
        see earlier ones of the same batch), and the writes go out as bulk inserts: a few statements per
        batch instead of several per message.
        """
        self.reload_revocations()
        msgs = list(messages)
        acks: list[Ack] = []
        logs: list[tuple[str, dict]] = []
        saved_seq = dict(self._max_seq)
        sids: set[str] = set()
        checked: list[tuple[str, ...] | tuple[str, str, object]] = []
        for topic, payload in msgs:
            parts = topic.split("/")
            if len(parts) == 4 and parts[0] == "tps" and parts[2] == "evidence":
                sids.add(parts[3])
                checked.append(("evidence", parts[1], parts[3]))
            elif len(parts) == 3 and parts[0] == "tps" and parts[2] == "result":
                outcome = self._verify(parts[1], payload)
                if not isinstance(outcome, VerificationError):
                    sids.add(outcome[1].submission_id)
                checked.append(("result", parts[1], outcome))
            else:
                checked.append(("other",))
        try:
            with self.engine.begin() as conn:
                b = _Batch.load(conn, sids)
                for (topic, payload), c in zip(msgs, checked, strict=True):
                    if c[0] == "result":
                        self._result(conn, b, c[1], topic, payload, c[2], acks, logs)  # type: ignore[arg-type]
                    elif c[0] == "evidence":
                        self._evidence(b, c[1], c[2], payload, acks, logs)  # type: ignore[arg-type]
                b.flush(conn)
        except Exception:
            self._max_seq = saved_seq  # the transaction rolled back; so does our cache
            raise
        for event_id, fields in logs:
            self.counts[event_id] += 1
            log_event(log, event_id, **fields)
        return acks

    def _verify(self, topic_tps: str, payload: bytes) -> tuple[Verified, ResultPayload] | VerificationError:
        """Everything that needs no database: signature, certificate, identity, schema and content."""
        try:
            verified = self.verifier.verify(payload, role=ROLE_KIT)
            result = parse_result(verified)
            self._check_content(result, topic_tps, verified.payload)
        except VerificationError as e:
            return e
        return verified, result

    def _ack(self, acks: list[Ack], tps: str, sid: str, kit: str | None, status: str, envelope_sha: str,
             evidence_sha: str | None = None, reason: str | None = None) -> None:
        ack = AckPayload(submission_id=sid, kit_id=kit, tps=tps, status=status, reason=reason,  # type: ignore[arg-type]
                         envelope_sha256=envelope_sha, evidence_sha256=evidence_sha, district=self.district_id,
                         received_at=dt.datetime.now(dt.UTC).replace(microsecond=0))
        acks.append(Ack(f"tps/{tps}/ack", self._signer.sign(payload_bytes(ack))))

    def _reject(self, b: _Batch, acks: list[Ack], logs: list, topic: str, topic_tps: str, payload: bytes,
                reason: str, detail: str, raw: dict | None) -> None:
        sid = raw.get("submission_id") if isinstance(raw, dict) else None
        kit = raw.get("kit_id") if isinstance(raw, dict) else None
        sid = sid if isinstance(sid, str) and len(sid) <= 64 else None
        kit = kit if isinstance(kit, str) and len(kit) <= 64 else None
        env_sha = sha256_hex(payload)
        b.new_rejections.append({"received_at": time.time(), "topic": topic[:200], "kit_id": kit,
                                 "submission_id": sid, "reason": reason, "detail": detail,
                                 "envelope_sha256": env_sha})
        logs.append(("district.rejected", {"tps": topic_tps, "kit": kit, "submission": sid, "reason": reason,
                                           "detail": detail}))
        self.counts["rejected:" + reason] += 1
        if sid:
            self._ack(acks, topic_tps, sid, kit, "rejected", env_sha, reason=f"{reason}: {detail}")

    def _max_seq_of(self, conn: Connection, kit: str) -> int:
        if kit not in self._max_seq:
            got = conn.execute(select(func.max(results.c.seq)).where(results.c.kit_id == kit)).scalar()
            self._max_seq[kit] = int(got or 0)
        return self._max_seq[kit]

    def _result(self, conn: Connection, b: _Batch, topic_tps: str, topic: str, payload: bytes,
                outcome: tuple[Verified, ResultPayload] | VerificationError, acks: list[Ack], logs: list) -> None:
        if isinstance(outcome, VerificationError):
            e = outcome
            raw = e.payload if e.payload is not None else unverified_payload(payload.decode("ascii", "replace"))
            self._reject(b, acks, logs, topic, topic_tps, payload, e.reason, e.detail, raw)
            return
        verified, result = outcome
        compact = verified.compact
        env_sha = sha256_hex(compact)
        sid = result.submission_id
        stored = b.stored.get(sid)
        if stored is not None:
            if stored[0] == env_sha:
                logs.append(("district.duplicate", {"tps": result.tps, "kit": result.kit_id, "submission": sid}))
                self._ack(acks, topic_tps, sid, result.kit_id, "duplicate", env_sha, stored[1])
            else:
                self._reject(b, acks, logs, topic, topic_tps, payload, "submission_conflict",
                             "this submission id was already stored with other content", verified.payload)
            return
        waiting = b.pending.get(sid)
        if waiting is not None:
            if sha256_hex(waiting) != env_sha:
                self._reject(b, acks, logs, topic, topic_tps, payload, "submission_conflict",
                             "this submission id is already waiting with other content", verified.payload)
            return  # same result again, still waiting for its photo
        last = self._max_seq_of(conn, result.kit_id)
        if result.seq <= last:
            self._reject(b, acks, logs, topic, topic_tps, payload, "replay",
                         f"sequence {result.seq} is not above {last}, the last accepted from {result.kit_id}",
                         verified.payload)
            return
        if (sid, result.evidence_sha256) not in b.evidence:
            b.pending[sid] = compact
            b.new_pending.append({"submission_id": sid, "kit_id": result.kit_id, "seq": result.seq,
                                  "envelope": compact, "received_at": time.time()})
            logs.append(("district.waiting_evidence", {"tps": result.tps, "kit": result.kit_id, "submission": sid}))
            return
        self._store(b, result, compact, env_sha, acks, logs)

    def _store(self, b: _Batch, result: ResultPayload, compact: str, env_sha: str, acks: list[Ack],
               logs: list) -> None:
        b.new_results.append({
            "submission_id": result.submission_id, "kit_id": result.kit_id, "tps": result.tps,
            "template_id": result.template_id, "form_code": result.form_code, "status": result.status,
            "seq": result.seq, "captured_at": result.captured_at.isoformat(), "received_at": time.time(),
            "envelope": compact, "envelope_sha256": env_sha, "evidence_sha256": result.evidence_sha256,
            "values_json": json.dumps(result.values(), separators=(",", ":"))})
        b.stored[result.submission_id] = (env_sha, result.evidence_sha256)
        self._max_seq[result.kit_id] = max(self._max_seq.get(result.kit_id, 0), result.seq)
        logs.append(("district.accepted", {"tps": result.tps, "kit": result.kit_id,
                                           "submission": result.submission_id, "seq": result.seq,
                                           "status": result.status}))
        self._ack(acks, result.tps, result.submission_id, result.kit_id, "accepted", env_sha,
                  result.evidence_sha256)

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

    def _evidence(self, b: _Batch, topic_tps: str, sid: str, payload: bytes, acks: list[Ack],
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
        result = ResultPayload.model_validate(raw)
        del b.pending[sid]
        b.done_pending.add(sid)
        self._store(b, result, waiting, sha256_hex(waiting), acks, logs)


@dataclass
class _Batch:
    """What one batch knows: rows read up front for its submission ids, and the writes it will make."""

    stored: dict[str, tuple[str, str]]  # submission -> (envelope sha256, evidence sha256)
    pending: dict[str, str]  # submission -> envelope waiting for its photo
    evidence: set[tuple[str, str]]  # (submission, sha256) present
    new_results: list[dict] = field(default_factory=list)
    new_evidence: list[dict] = field(default_factory=list)
    new_pending: list[dict] = field(default_factory=list)
    new_rejections: list[dict] = field(default_factory=list)
    done_pending: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, conn: Connection, sids: set[str]) -> _Batch:
        if not sids:
            return cls({}, {}, set())
        ids = list(sids)
        stored = {r[0]: (r[1], r[2]) for r in conn.execute(
            select(results.c.submission_id, results.c.envelope_sha256, results.c.evidence_sha256)
            .where(results.c.submission_id.in_(ids)))}
        waiting = {r[0]: r[1] for r in conn.execute(
            select(pending.c.submission_id, pending.c.envelope).where(pending.c.submission_id.in_(ids)))}
        photos = {(r[0], r[1]) for r in conn.execute(
            select(evidence.c.submission_id, evidence.c.sha256).where(evidence.c.submission_id.in_(ids)))}
        return cls(stored, waiting, photos)

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
