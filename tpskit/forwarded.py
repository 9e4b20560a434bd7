"""What a district forwards to the national tier for every result it accepted, and where it goes.

One message per accepted result, strict JSON:
- `envelope`: the kit's compact JWS exactly as the district received and stored it (untouched);
- `evidence_sha256`: the photo's hash, as the signed result announced it (the photo stays in the district);
- `acceptance`: the district's own signed `accepted` ack for that result (the one the kit received), signed
  by the district service's key: it binds the district, the envelope's hash and the arrival second;
- `received_at`: the district's arrival time to the microsecond (the tally rule's order). It is not signed
  by itself: the national tier holds it to the signed acceptance (never before its second).

It travels on the subject `tpskit.results.<district>` of one replicated JetStream stream, with the
`Nats-Msg-Id` `<district>/<submission id>`: a message published again (a lost publish ack, a district
restarted before it marked the row sent) is dropped by JetStream's duplicate window, and national storage is
idempotent on the submission id beyond it.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tpskit.envelope import canonical_json, strict_json

FORWARD_SCHEMA = "tpskit-forward/1"
#: The one stream of accepted results; replicated on three NATS nodes.
STREAM = "TPSKIT_RESULTS"
SUBJECT_PREFIX = "tpskit.results"
#: JetStream drops a message whose Nats-Msg-Id it saw within this window (seconds).
DUPLICATE_WINDOW_S = 3600.0


class Forwarded(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: Literal["tpskit-forward/1"] = Field(alias="schema", default=FORWARD_SCHEMA)
    district: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,62}$")
    envelope: str = Field(max_length=64 * 1024)
    evidence_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    acceptance: str = Field(max_length=64 * 1024)
    received_at: float = Field(gt=0, allow_inf_nan=False)


class ForwardError(ValueError):
    """Not a forwarded-result message."""


def subject_for(district: str) -> str:
    return f"{SUBJECT_PREFIX}.{district}"


def message_id(district: str, submission_id: str) -> str:
    return f"{district}/{submission_id}"


def forward_bytes(district: str, envelope: str, evidence_sha256: str, acceptance: str, received_at: float) -> bytes:
    return canonical_json({"schema": FORWARD_SCHEMA, "district": district, "envelope": envelope,
                           "evidence_sha256": evidence_sha256, "acceptance": acceptance, "received_at": received_at})


def parse_forwarded(data: bytes) -> Forwarded:
    try:
        return Forwarded.model_validate(strict_json(data))
    except (ValueError, ValidationError) as e:
        raise ForwardError(f"not a {FORWARD_SCHEMA} message: {str(e)[:300]}") from e
