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
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Connection, Engine, delete, func, insert, select

from tpskit.district.db import evidence, pending, rejections, results
from tpskit.envelope import (
    AckPayload,
    ResultPayload,
    VerificationError,
    Verifier,
    parse_result,
    recheck_arithmetic,
    sha256_hex,
    sign_ack,
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
        """Handle a batch in one transaction; returns the acks to publish after the commit."""
        self.reload_revocations()
        acks: list[Ack] = []
        logs: list[tuple[str, dict]] = []
        saved_seq = dict(self._max_seq)
        try:
            with self.engine.begin() as conn:
                for topic, payload in messages:
                    parts = topic.split("/")
                    if len(parts) == 3 and parts[0] == "tps" and parts[2] == "result":
                        self._result(conn, parts[1], topic, payload, acks, logs)
                    elif len(parts) == 4 and parts[0] == "tps" and parts[2] == "evidence":
                        self._evidence(conn, parts[1], parts[3], payload, acks, logs)
        except Exception:
            self._max_seq = saved_seq  # the transaction rolled back; so does our cache
            raise
        for event_id, fields in logs:
            self.counts[event_id] += 1
            log_event(log, event_id, **fields)
        return acks

    def _ack(self, acks: list[Ack], tps: str, sid: str, kit: str | None, status: str, envelope_sha: str,
             evidence_sha: str | None = None, reason: str | None = None) -> None:
        ack = AckPayload(submission_id=sid, kit_id=kit, tps=tps, status=status, reason=reason,  # type: ignore[arg-type]
                         envelope_sha256=envelope_sha, evidence_sha256=evidence_sha, district=self.district_id,
                         received_at=dt.datetime.now(dt.UTC).replace(microsecond=0))
        acks.append(Ack(f"tps/{tps}/ack", sign_ack(ack, self.key, self.chain)))

    def _reject(self, conn: Connection, acks: list[Ack], logs: list, topic: str, topic_tps: str, payload: bytes,
                reason: str, detail: str, raw: dict | None) -> None:
        sid = raw.get("submission_id") if isinstance(raw, dict) else None
        kit = raw.get("kit_id") if isinstance(raw, dict) else None
        sid = sid if isinstance(sid, str) and len(sid) <= 64 else None
        kit = kit if isinstance(kit, str) and len(kit) <= 64 else None
        env_sha = sha256_hex(payload)
        conn.execute(insert(rejections).values(received_at=time.time(), topic=topic[:200], kit_id=kit,
                                               submission_id=sid, reason=reason, detail=detail,
                                               envelope_sha256=env_sha))
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

    def _result(self, conn: Connection, topic_tps: str, topic: str, payload: bytes, acks: list[Ack],
                logs: list) -> None:
        try:
            verified = self.verifier.verify(payload, role=ROLE_KIT)
            result = parse_result(verified)
            self._check_content(result, topic_tps)
        except VerificationError as e:
            raw = e.payload if e.payload is not None else unverified_payload(payload.decode("ascii", "replace"))
            self._reject(conn, acks, logs, topic, topic_tps, payload, e.reason, e.detail, raw)
            return
        compact = verified.compact
        env_sha = sha256_hex(compact)
        sid = result.submission_id
        stored = conn.execute(select(results.c.envelope_sha256, results.c.evidence_sha256)
                              .where(results.c.submission_id == sid)).first()
        if stored is not None:
            if stored.envelope_sha256 == env_sha:
                logs.append(("district.duplicate", {"tps": result.tps, "kit": result.kit_id, "submission": sid}))
                self._ack(acks, topic_tps, sid, result.kit_id, "duplicate", env_sha, stored.evidence_sha256)
            else:
                self._reject(conn, acks, logs, topic, topic_tps, payload, "submission_conflict",
                             "this submission id was already stored with other content", verified.payload)
            return
        waiting = conn.execute(select(pending.c.envelope).where(pending.c.submission_id == sid)).first()
        if waiting is not None:
            if sha256_hex(waiting.envelope) != env_sha:
                self._reject(conn, acks, logs, topic, topic_tps, payload, "submission_conflict",
                             "this submission id is already waiting with other content", verified.payload)
            return  # same result again, still waiting for its photo
        last = self._max_seq_of(conn, result.kit_id)
        if result.seq <= last:
            self._reject(conn, acks, logs, topic, topic_tps, payload, "replay",
                         f"sequence {result.seq} is not above {last}, the last accepted from {result.kit_id}",
                         verified.payload)
            return
        photo = conn.execute(select(evidence.c.sha256).where(evidence.c.submission_id == sid,
                                                             evidence.c.sha256 == result.evidence_sha256)).first()
        if photo is None:
            conn.execute(insert(pending).values(submission_id=sid, kit_id=result.kit_id, seq=result.seq,
                                                envelope=compact, received_at=time.time()))
            logs.append(("district.waiting_evidence", {"tps": result.tps, "kit": result.kit_id, "submission": sid}))
            return
        self._store(conn, result, compact, env_sha, acks, logs)

    def _store(self, conn: Connection, result: ResultPayload, compact: str, env_sha: str, acks: list[Ack],
               logs: list) -> None:
        conn.execute(insert(results).values(
            submission_id=result.submission_id, kit_id=result.kit_id, tps=result.tps,
            template_id=result.template_id, form_code=result.form_code, status=result.status, seq=result.seq,
            captured_at=result.captured_at.isoformat(), received_at=time.time(), envelope=compact,
            envelope_sha256=env_sha, evidence_sha256=result.evidence_sha256,
            values_json=json.dumps(result.values(), separators=(",", ":"))))
        self._max_seq[result.kit_id] = max(self._max_seq.get(result.kit_id, 0), result.seq)
        logs.append(("district.accepted", {"tps": result.tps, "kit": result.kit_id,
                                           "submission": result.submission_id, "seq": result.seq,
                                           "status": result.status}))
        self._ack(acks, result.tps, result.submission_id, result.kit_id, "accepted", env_sha,
                  result.evidence_sha256)

    def _check_content(self, result: ResultPayload, topic_tps: str) -> None:
        raw = result.model_dump(mode="json", by_alias=True)
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

    def _evidence(self, conn: Connection, topic_tps: str, sid: str, payload: bytes, acks: list[Ack],
                  logs: list) -> None:
        sha = sha256_hex(payload)
        have = conn.execute(select(evidence.c.sha256).where(evidence.c.submission_id == sid,
                                                            evidence.c.sha256 == sha)).first()
        if have is None:
            conn.execute(insert(evidence).values(submission_id=sid, sha256=sha, tps=topic_tps, jpeg=payload,
                                                 received_at=time.time()))
        waiting = conn.execute(select(pending.c.envelope).where(pending.c.submission_id == sid)).first()
        if waiting is None:
            return
        raw = unverified_payload(waiting.envelope) or {}
        if raw.get("evidence_sha256") != sha:
            logs.append(("district.evidence_mismatch", {"tps": topic_tps, "submission": sid, "got": sha}))
            return
        result = ResultPayload.model_validate(raw)
        conn.execute(delete(pending).where(pending.c.submission_id == sid))
        self._store(conn, result, waiting.envelope, sha256_hex(waiting.envelope), acks, logs)
