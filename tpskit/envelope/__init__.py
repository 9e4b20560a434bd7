"""The signed result envelope and the district's signed acknowledgement, shared by kit and district.

A result travels as a compact JWS (RFC 7515) signed EdDSA/Ed25519 (RFC 8037) by the kit's key, with the
kit's certificate in the `x5c` header; the district answers with an ack signed the same way. Three parts:

- `payload`: what is signed (`ResultPayload`, `AckPayload`, their bounds) and its canonical JSON;
- `signing`: `sign_compact` (the kit, joserfc) and `CompactSigner` (the district's acks, same bytes);
- `verify`: `Verifier` and the checks built on it (`verify_result`, `parse_ack`, the time rule,
  revocations, strict JSON), which the kit, the district service and `tpskit verify` all use;
- `recheck`: the arithmetic recheck of a verified result against its form.

Import from here (`from tpskit.envelope import Verifier`) or from the part.
"""

from tpskit.envelope.payload import (
    ACK_SCHEMA,
    MAX_EVIDENCE_BYTES,
    MAX_FIELD_VALUE,
    MAX_RESULT_BYTES,
    MAX_SEQ,
    RESULT_SCHEMA,
    AckPayload,
    CheckEntry,
    FieldEntry,
    FieldStatus,
    ResultPayload,
    Software,
    canonical_json,
    payload_bytes,
    sha256_hex,
)
from tpskit.envelope.recheck import TOTAL_FIELDS, check_result_content, recheck_arithmetic
from tpskit.envelope.signing import ALG, CompactSigner, sign_compact
from tpskit.envelope.verify import (
    MAX_CLOCK_AHEAD,
    Revocations,
    VerificationError,
    Verified,
    Verifier,
    check_result_time,
    load_revocations,
    parse_ack,
    parse_result,
    strict_json,
    unverified_payload,
    verify_result,
)

__all__ = [
    "ACK_SCHEMA",
    "ALG",
    "MAX_CLOCK_AHEAD",
    "MAX_EVIDENCE_BYTES",
    "MAX_FIELD_VALUE",
    "MAX_RESULT_BYTES",
    "MAX_SEQ",
    "RESULT_SCHEMA",
    "TOTAL_FIELDS",
    "AckPayload",
    "CheckEntry",
    "CompactSigner",
    "FieldEntry",
    "FieldStatus",
    "ResultPayload",
    "Revocations",
    "Software",
    "VerificationError",
    "Verified",
    "Verifier",
    "canonical_json",
    "check_result_content",
    "check_result_time",
    "load_revocations",
    "parse_ack",
    "parse_result",
    "payload_bytes",
    "recheck_arithmetic",
    "sha256_hex",
    "sign_compact",
    "strict_json",
    "unverified_payload",
    "verify_result",
]
