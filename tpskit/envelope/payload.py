"""What a kit signs and what the district signs back: the result and ack payload schemas, their bounds,
and their canonical JSON (sorted keys, no spaces, UTF-8), shared by the kit, the district and `tpskit verify`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from tpskit.forms import TPS_RE

RESULT_SCHEMA = "tpskit-result/1"
ACK_SCHEMA = "tpskit-ack/1"

# Bounds of what a signed payload may carry. Everything that reaches the district's database is bounded
# here, in the schema, so that a value no column can hold (a sequence number of 2^63, a string longer
# than its column) is refused as `schema` before any write.
#: Largest sequence number: 2^53 - 1, the largest integer every JSON parser reads exactly (and far
#: inside the database's 64-bit column).
MAX_SEQ = 2**53 - 1
#: Largest value of one field: the widest field on a form has 6 boxes.
MAX_FIELD_VALUE = 999_999
#: Largest evidence photo a result may announce (and the district accepts): 4x a 12 MP JPEG of a sheet.
MAX_EVIDENCE_BYTES = 16 * 1024 * 1024
#: Largest signed result message: a result with its certificate is about 3.5 KB.
MAX_RESULT_BYTES = 64 * 1024
_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:+-]{0,63}$"  # ids and names: printable ASCII, no spaces, 64 at most
_TEXT = r"^[ -~]{0,128}$"  # short free text (versions): printable ASCII


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FieldStatus = Literal["ok", "review", "resolved_by_checks", "corrected"]


class FieldEntry(_Strict):
    value: int | None = Field(ge=0, le=MAX_FIELD_VALUE, description="The number adopted for this field; null when "
                                                                  "unreadable.")
    status: FieldStatus = Field(description="ok | review | resolved_by_checks | corrected (by the officer).")
    confidence: float = Field(ge=0.0, le=1.0, allow_inf_nan=False,
                              description="The reader's confidence in the OCR value.")
    ocr_value: int | None = Field(default=None, ge=0, le=MAX_FIELD_VALUE,
                                  description="What the reader saw, kept when the officer corrected it.")


class CheckEntry(_Strict):
    id: str = Field(pattern=_NAME)
    passed: bool


class Software(_Strict):
    tpskit: str = Field(pattern=_TEXT, description="tpskit version that signed the result.")
    model: str | None = Field(default=None, pattern=_TEXT, description="Digit model id/version used by the reader.")


class ResultPayload(_Strict):
    """What a kit signs. Field names are the contract of DESIGN.md 'Envelope'; every value is bounded."""

    schema_: Literal["tpskit-result/1"] = Field(alias="schema", default=RESULT_SCHEMA)
    submission_id: str = Field(pattern=r"^[A-Za-z0-9-]{8,64}$")
    kit_id: str = Field(pattern=_NAME)
    tps: str = Field(pattern=TPS_RE.pattern)
    template_id: str = Field(pattern=_NAME)
    form_code: str = Field(pattern=r"^[A-Za-z0-9._-]{1,16}$")
    status: Literal["ok", "review"]
    fields: dict[Annotated[str, Field(pattern=_NAME)], FieldEntry] = Field(max_length=200)
    checks: list[CheckEntry] = Field(max_length=200)
    officer_slip: bool = Field(default=False,
                               description="The officer confirmed that the sheet's own arithmetic is written this "
                                           "way (a failing check is the officers' slip on paper, not a misreading); "
                                           "only with status review and a failing check.")
    evidence_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    evidence_bytes: int = Field(ge=1, le=MAX_EVIDENCE_BYTES,
                                description="Size of the evidence photo: the district accepts exactly this photo "
                                            "for the submission, and refuses a larger announcement at once.")
    captured_at: AwareDatetime = Field(description="When the photo was taken, by the kit's clock (with its time "
                                                   "zone): the kit's certificate must be valid then.")
    seq: int = Field(ge=1, le=MAX_SEQ, description="Per-kit monotonic sequence number.")
    software: Software

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def values(self) -> dict[str, int | None]:
        return {name: f.value for name, f in self.fields.items()}


class AckPayload(_Strict):
    """What the district signs back: the officer's receipt."""

    schema_: Literal["tpskit-ack/1"] = Field(alias="schema", default=ACK_SCHEMA)
    submission_id: str = Field(max_length=64)
    kit_id: str | None = Field(max_length=64)
    tps: str | None = Field(max_length=13)
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = Field(default=None, max_length=4096)
    envelope_sha256: str = Field(pattern=r"^[0-9a-f]{64}$",
                                 description="SHA-256 of the compact JWS as received (and, unless rejected, stored).")
    evidence_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$",
                                        description="SHA-256 of the evidence photo stored with it.")
    district: str = Field(max_length=64)
    received_at: AwareDatetime

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def payload_bytes(model: BaseModel) -> bytes:
    return canonical_json(model.model_dump(mode="json", by_alias=True))


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()
