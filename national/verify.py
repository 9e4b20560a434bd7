"""The national tier's checks of one forwarded message: trust no district.

A message is stored only when all of these hold, else it is refused with the reason in brackets: it is a
forwarded-result message [malformed] from a configured district [unknown_district]; the kit's JWS passes
every check the district made of it (signature, certificate chain to that district's CA, kit role and TPS
binding, schema, time rule, revocation as of the district's arrival time: the reason the district would
give, e.g. [bad_signature, untrusted_certificate]); the TPS is in that district's list [tps_not_of_district];
the template's checks re-run and the registered voters hold [checks_failed, over_registered_voters]; the
acceptance is signed by that district's service certificate, issued by the same CA, valid when it signed
[acceptance: bad_signature, untrusted_certificate, wrong_role, certificate_expired...] and says `accepted`
for exactly this envelope, submission, kit, TPS and photo, by this district [forged_acceptance]; the
arrival time forwarded with it is not before the signed one [forged_acceptance].
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from tpskit.envelope import (
    ResultPayload,
    VerificationError,
    Verifier,
    check_result_content,
    load_revocations,
    parse_ack,
    sha256_hex,
    verify_result,
)
from tpskit.forms import Template, load_templates
from tpskit.forwarded import ForwardError, parse_forwarded
from tpskit.national.config import DistrictTrust
from tpskit.tally import province_of
from tpskit.trust.certs import load_certs
from tpskit.trust.tps import TpsInfo, read_tps_csv


@dataclass
class _District:
    id: str
    verifier: Verifier
    tps: dict[str, TpsInfo]
    service: re.Pattern[str]  # the CN of its service certificates: district-<id>, or district-<id>-NofM


@dataclass(frozen=True)
class Refusal:
    reason: str
    detail: str
    district: str | None
    submission_id: str | None


class NationalChecker:
    def __init__(self, districts: list[DistrictTrust], templates: dict[str, Template] | None = None):
        self.districts: dict[str, _District] = {}
        for d in districts:
            verifier = Verifier(load_certs(d.ca))
            if d.revocations is not None and d.revocations.exists():
                verifier.revocations = load_revocations(d.revocations)
            self.districts[d.id] = _District(d.id, verifier, read_tps_csv(d.tps_list),
                                             re.compile(rf"district-{re.escape(d.id)}(-[0-9]+of[0-9]+)?"))
        self.templates = templates if templates is not None else {t.id: t for t in load_templates().values()}

    @property
    def tps(self) -> dict[str, TpsInfo]:
        """Every TPS of every configured district."""
        return {code: info for d in self.districts.values() for code, info in d.tps.items()}

    def check(self, data: bytes) -> dict[str, Any] | Refusal:
        """The national_results row of a forwarded message (stored_at set at the commit), or why it is refused."""
        try:
            msg = parse_forwarded(data)
        except ForwardError as e:
            return Refusal("malformed", str(e), None, None)
        district = self.districts.get(msg.district)
        if district is None:
            return Refusal("unknown_district", f"district {msg.district!r} is not configured", msg.district, None)
        try:
            return self._check(district, msg.envelope, msg.evidence_sha256, msg.acceptance, msg.received_at)
        except VerificationError as e:
            sid = e.payload.get("submission_id") if isinstance(e.payload, dict) else None
            return Refusal(e.reason, e.detail[:1000], district.id, sid if isinstance(sid, str) else None)

    def _check(self, d: _District, envelope: str, evidence_sha: str, acceptance: str,
               received_at: float) -> dict[str, Any]:
        # The acceptance first: its signed arrival time is when the kit's certificate and revocation are judged.
        signed = d.verifier.verify(acceptance, role="district", check_validity=False)
        try:
            ack = parse_ack(signed)
        except VerificationError as e:
            raise VerificationError("forged_acceptance", f"acceptance: {e.detail}") from e
        if not signed.signer.valid_at(ack.received_at):
            raise VerificationError("certificate_expired", "the acceptance's certificate was not valid when it signed")
        if not d.service.fullmatch(signed.signer.common_name):
            raise VerificationError("forged_acceptance", f"the acceptance is signed by {signed.signer.common_name!r},"
                                    f" not the service of district {d.id}")
        arrived = ack.received_at.astimezone(dt.UTC)
        verified, result = verify_result(d.verifier, envelope, arrived=arrived)
        env_sha = sha256_hex(verified.compact)
        raw = verified.payload
        wrong = [name for name, got, want in (
            ("status", ack.status, "accepted"), ("district", ack.district, d.id),
            ("envelope_sha256", ack.envelope_sha256, env_sha), ("submission_id", ack.submission_id,
                                                                result.submission_id),
            ("kit_id", ack.kit_id, result.kit_id), ("tps", ack.tps, result.tps)) if got != want]
        if ack.evidence_sha256 not in (None, result.evidence_sha256):
            wrong.append("evidence_sha256")
        if evidence_sha != result.evidence_sha256:
            wrong.append("forwarded evidence_sha256")
        if received_at < arrived.timestamp() - 1:  # the signed time is to the second, the forwarded one finer
            wrong.append("received_at")
        if wrong:
            raise VerificationError("forged_acceptance", f"the acceptance does not match the result: "
                                    f"{', '.join(wrong)}", raw)
        info = d.tps.get(result.tps)
        if info is None:
            raise VerificationError("tps_not_of_district", f"TPS {result.tps} is not in district {d.id}'s list", raw)
        check_result_content(result, self.templates.get(result.template_id), info.registered_voters, raw)
        return national_row(d.id, result, verified.compact, env_sha, acceptance, received_at)


def national_row(district: str, result: ResultPayload, envelope: str, envelope_sha256: str, acceptance: str,
                 received_at: float) -> dict[str, Any]:
    """The national_results row of a result (stored_at is set at the commit)."""
    return {"province": province_of(result.tps), "submission_id": result.submission_id, "district": district,
            "kit_id": result.kit_id, "tps": result.tps, "template_id": result.template_id,
            "status": result.status, "seq": result.seq, "captured_at": result.captured_at.timestamp(),
            "received_at": received_at, "stored_at": 0.0, "envelope": envelope,
            "envelope_sha256": envelope_sha256, "evidence_sha256": result.evidence_sha256, "acceptance": acceptance,
            "values_json": json.dumps(result.values(), separators=(",", ":"))}
