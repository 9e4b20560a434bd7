"""Sign a confirmed reading and queue it: the step between the officer's confirmation and the network.

`sign_and_queue` turns a confirmed `Reading` (edge/reading.py) and the evidence JPEG into a signed
envelope, and stores both in the outbox in one transaction. Nothing here touches the network; delivery
picks the row up from the outbox.

A field the officer corrected has status `corrected` and its `ocr_value` (what the reader offered); the
envelope keeps both.
"""

from __future__ import annotations

import datetime as dt
import uuid
from importlib.metadata import PackageNotFoundError, version

from cryptography import x509
from pydantic import ValidationError

from tpskit.edge.config import KitConfig
from tpskit.edge.outbox import Outbox, OutboxRow, Signed
from tpskit.edge.reading import Reading
from tpskit.envelope import (
    MAX_EVIDENCE_BYTES,
    CheckEntry,
    FieldEntry,
    ResultPayload,
    Software,
    payload_bytes,
    sha256_hex,
    sign_compact,
)
from tpskit.forms import load_templates
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key


class SubmitError(ValueError):
    """A reading that must not be signed; the message is for the officer or technician."""


def utcnow() -> dt.datetime:
    """The kit's clock (tests put a simulated clock here)."""
    return dt.datetime.now(dt.UTC)


def tpskit_version() -> str:
    try:
        return version("tpskit")
    except PackageNotFoundError:
        return "0+unknown"


def build_payload(reading: Reading, *, kit_id: str, tps: str, seq: int, submission_id: str,
                  evidence_sha256: str, evidence_bytes: int, captured_at: dt.datetime | None = None,
                  model_version: str | None = None) -> ResultPayload:
    """The signed payload for one confirmed reading. Refuses what the district would refuse anyway."""
    if reading.tps != tps:
        raise SubmitError(f"this sheet is for TPS {reading.tps}, but this kit serves TPS {tps}")
    templates = {t.id: t for t in load_templates().values()}
    if reading.template not in templates:
        raise SubmitError(f"unknown form template {reading.template!r}")
    template = templates[reading.template]
    missing = [f.name for f in template.fields if f.name not in reading.fields]
    if missing:
        raise SubmitError(f"the reading lacks fields {missing} of template {template.id}")
    when = captured_at or utcnow()
    try:
        fields: dict[str, FieldEntry] = {}
        for spec in template.fields:
            f = reading.fields[spec.name]
            fields[spec.name] = FieldEntry(value=f.value, status=f.status, confidence=f.confidence,
                                           ocr_value=f.ocr_value if f.status == "corrected" else None)
        checks = [CheckEntry(id=c.id, passed=c.passed) for c in reading.checks]
        return ResultPayload(
            submission_id=submission_id, kit_id=kit_id, tps=tps, template_id=template.id,
            form_code=template.form_code, status=reading.status, fields=fields, checks=checks,
            officer_slip=reading.officer_slip and reading.status == "review" and any(not c.passed for c in checks),
            evidence_sha256=evidence_sha256, evidence_bytes=evidence_bytes,
            captured_at=when.astimezone(dt.UTC).replace(microsecond=0), seq=seq,
            software=Software(tpskit=tpskit_version(), model=model_version or reading.model))
    except ValidationError as e:  # what the district would refuse as `schema`: say which value, here
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SubmitError(f"this reading cannot be signed: {where}: {first['msg']}") from e


def clock_refusal(chain: list[x509.Certificate], captured_at: dt.datetime, now: dt.datetime) -> str | None:
    """Why this kit must not sign now, by the one rule for time (tpskit.envelope.check_result_time):
    the kit certificate must be valid at the capture time and at the signing time, and the clock must
    be plausible (edge.readiness). None when it may sign."""
    from tpskit.edge.readiness import clock_problem

    leaf = chain[0]
    for when in (captured_at, now):
        problem = clock_problem(when, leaf.not_valid_before_utc, leaf.not_valid_after_utc)
        if problem is not None:
            return problem.message
    return None


def sign_and_queue(cfg: KitConfig, reading: Reading, evidence_jpeg: bytes, *,
                   outbox: Outbox | None = None, captured_at: dt.datetime | None = None,
                   model_version: str | None = None) -> OutboxRow:
    """Sign the reading with the kit key and store envelope + photo in the outbox (before any I/O)."""
    if not evidence_jpeg:
        raise SubmitError("the evidence photo is empty; the district must be able to show the sheet")
    if len(evidence_jpeg) > MAX_EVIDENCE_BYTES:
        raise SubmitError(f"the evidence photo is {len(evidence_jpeg) / 2**20:.1f} MB, above the "
                          f"{MAX_EVIDENCE_BYTES // 2**20} MB the district accepts; capture it again")
    # Refuse a bad reading before opening a transaction (the same checks run again inside it).
    build_payload(reading, kit_id=cfg.kit.id, tps=cfg.kit.tps, seq=1, submission_id="00000000-check",
                  evidence_sha256="0" * 64, evidence_bytes=len(evidence_jpeg), captured_at=captured_at,
                  model_version=model_version)
    key = load_key(cfg.identity.key)
    chain = load_certs(cfg.identity.certificate)
    now = utcnow()
    captured_at = captured_at or now
    refusal = clock_refusal(chain, captured_at, now)
    if refusal is not None:
        raise SubmitError(f"this kit must not sign now: {refusal}")
    evidence_sha = sha256_hex(evidence_jpeg)

    def sign(seq: int) -> Signed:
        sid = str(uuid.uuid4())
        payload = build_payload(reading, kit_id=cfg.kit.id, tps=cfg.kit.tps, seq=seq, submission_id=sid,
                                evidence_sha256=evidence_sha, evidence_bytes=len(evidence_jpeg),
                                captured_at=captured_at,
                                model_version=model_version)
        compact = sign_compact(payload_bytes(payload), key, chain)
        return Signed(sid, cfg.kit.tps, compact, sha256_hex(compact), evidence_jpeg, evidence_sha)

    own = outbox is None
    box = outbox or Outbox(cfg.outbox_path)
    try:
        return box.add(sign)
    finally:
        if own:
            box.close()
