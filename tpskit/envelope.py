"""The signed result envelope and the district's signed acknowledgement, shared by kit and district.

A result travels as a compact JWS (RFC 7515) signed EdDSA/Ed25519 (RFC 8037) by the kit's key, with
the kit's certificate in the `x5c` header (base64 DER, leaf first). Anyone holding the district CA
certificate can check it: signature by the `x5c[0]` key, `x5c[0]` issued by the CA, role and TPS in the
certificate. The kit, the district service and `tpskit verify` all call `Verifier.verify` below, so
they cannot disagree about what a valid result is.

The algorithm name is `EdDSA` (RFC 8037), which every JOSE tool understands. joserfc flags it as
deprecated in favour of RFC 9864's fully specified `Ed25519`; the signature bytes are identical, and we
keep the name that off-the-shelf verifiers accept.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tpskit.forms import TPS_RE, Check, Template

RESULT_SCHEMA = "tpskit-result/1"
ACK_SCHEMA = "tpskit-ack/1"
ALG = "EdDSA"
_ALGS = [ALG]
# joserfc caps the protected header at 512 bytes by default; ours carries a certificate in x5c.
_REGISTRY = jws.JWSRegistry(algorithms=_ALGS)
_REGISTRY.max_header_length = 16_384

TPS_URI_PREFIX = "urn:tps:"
ROLE_URI_PREFIX = "urn:tpskit:role:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


FieldStatus = Literal["ok", "review", "resolved_by_checks", "corrected"]


class FieldEntry(_Strict):
    value: int | None = Field(ge=0, description="The number adopted for this field; null when unreadable.")
    status: FieldStatus = Field(description="ok | review | resolved_by_checks | corrected (by the officer).")
    confidence: float = Field(ge=0.0, le=1.0, description="The reader's confidence in the OCR value.")
    ocr_value: int | None = Field(default=None, description="What the reader saw, kept when the officer corrected it.")


class CheckEntry(_Strict):
    id: str
    passed: bool


class Software(_Strict):
    tpskit: str = Field(description="tpskit version that signed the result.")
    model: str | None = Field(default=None, description="Digit model id/version used by the reader.")


class ResultPayload(_Strict):
    """What a kit signs. Field names are the contract of DESIGN.md 'Envelope'."""

    schema_: Literal["tpskit-result/1"] = Field(alias="schema", default=RESULT_SCHEMA)
    submission_id: str = Field(pattern=r"^[A-Za-z0-9-]{8,64}$")
    kit_id: str
    tps: str = Field(pattern=TPS_RE.pattern)
    template_id: str
    form_code: str
    status: Literal["ok", "review"]
    fields: dict[str, FieldEntry]
    checks: list[CheckEntry]
    evidence_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    captured_at: dt.datetime
    seq: int = Field(ge=1, description="Per-kit monotonic sequence number.")
    software: Software

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    def values(self) -> dict[str, int | None]:
        return {name: f.value for name, f in self.fields.items()}


class AckPayload(_Strict):
    """What the district signs back: the officer's receipt."""

    schema_: Literal["tpskit-ack/1"] = Field(alias="schema", default=ACK_SCHEMA)
    submission_id: str
    kit_id: str | None
    tps: str | None
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    envelope_sha256: str = Field(description="SHA-256 of the compact JWS as received (and, unless rejected, stored).")
    evidence_sha256: str | None = Field(default=None, description="SHA-256 of the evidence photo stored with it.")
    district: str
    received_at: dt.datetime

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def canonical_json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def payload_bytes(model: BaseModel) -> bytes:
    return canonical_json(model.model_dump(mode="json", by_alias=True))


def sha256_hex(data: bytes | str) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def sign_compact(payload: bytes, key: Ed25519PrivateKey, chain: Iterable[x509.Certificate]) -> str:
    """A compact JWS over `payload`, with the signer's certificate chain in x5c (leaf first), made by joserfc."""
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
    header = {"alg": ALG, "x5c": x5c}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(header, payload, OKPKey.import_key(key), registry=_REGISTRY)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CompactSigner:
    """Signs many payloads with one key: the district's acknowledgements, thousands a second.

    Byte for byte what `sign_compact` (joserfc) makes, because the protected header is serialised the
    way joserfc does it (compact JSON, ASCII) and Ed25519 is deterministic; tests/test_envelope_fast_path.py
    compares the two. The header segment is built once instead of per ack, which halves the cost.
    """

    def __init__(self, key: Ed25519PrivateKey, chain: Iterable[x509.Certificate]):
        x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
        header = json.dumps({"alg": ALG, "x5c": x5c}, ensure_ascii=True, separators=(",", ":"))
        self._header_segment = _b64url(header.encode("ascii"))
        self._key = key

    def sign(self, payload: bytes) -> str:
        signing_input = f"{self._header_segment}.{_b64url(payload)}"
        return f"{signing_input}.{_b64url(self._key.sign(signing_input.encode('ascii')))}"


class VerificationError(Exception):
    """A refusal with a stable machine reason (`reason`) and a sentence for people."""

    def __init__(self, reason: str, detail: str, payload: Mapping[str, Any] | None = None):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.payload = payload  # the unverified payload when it could be parsed (to route a rejection ack)


@dataclass(frozen=True)
class Signer:
    """Who signed: the identity in the verified leaf certificate."""

    common_name: str
    role: str | None
    tps: str | None
    serial: int
    not_after: dt.datetime


@dataclass(frozen=True)
class Verified:
    payload: dict[str, Any]
    signer: Signer
    compact: str


def signer_of(cert: x509.Certificate) -> Signer:
    cns = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    try:
        uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        uris = []
    roles = [u[len(ROLE_URI_PREFIX):] for u in uris if u.startswith(ROLE_URI_PREFIX)]
    tpss = [u[len(TPS_URI_PREFIX):] for u in uris if u.startswith(TPS_URI_PREFIX)]
    return Signer(common_name=str(cns[0].value) if cns else "", role=roles[0] if len(roles) == 1 else None,
                  tps=tpss[0] if len(tpss) == 1 else None, serial=cert.serial_number,
                  not_after=cert.not_valid_after_utc)


def unverified_payload(compact: str) -> dict[str, Any] | None:
    """The payload without any check, only to route a rejection; never trust it."""
    try:
        part = compact.split(".")[1]
        obj = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
        return obj if isinstance(obj, dict) else None
    except (IndexError, ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        return None


_B64URL_SIG = re.compile(r"[A-Za-z0-9_-]{86}")  # an Ed25519 signature: 64 bytes, no padding
_MAX_HEADER_SEGMENT = 16_384


@dataclass(frozen=True)
class _Leaf:
    cert: x509.Certificate
    signer: Signer
    key: Ed25519PublicKey
    not_before: dt.datetime
    not_after: dt.datetime


@dataclass
class Verifier:
    """Verifies compact JWS (RFC 7515, EdDSA per RFC 8037) against the district CA certificate(s), with
    a revocation set. The kit (acks), the district service and `tpskit verify` all use this one code.

    It reads the compact form itself and checks the signature with `cryptography` (the Ed25519 that
    joserfc calls too): a kit sends the same protected header (algorithm and certificate) with every
    result, so the header's checks and the chain check (issuer, CA signature, not a CA, Ed25519 key)
    are done once per distinct header and cached by its exact text. What is checked on every call:
    the Ed25519 signature over the exact header and payload text, validity at `at`, revocation (a
    revocation takes effect on the next message) and role. joserfc, the library that makes the kits'
    envelopes, is the reference it is tested against (tests/test_envelope_fast_path.py): same
    verdict on good, tampered and malformed tokens.
    """

    ca_certs: list[x509.Certificate]
    revoked_serials: set[int] = field(default_factory=set)
    revoked_names: set[str] = field(default_factory=set)
    _header_cache: dict[str, _Leaf] = field(default_factory=dict, repr=False)

    def _header(self, segment: str, raw: dict[str, Any] | None) -> _Leaf:
        """The protected header's checks and the certificate chain, once per distinct header text."""
        hit = self._header_cache.get(segment)
        if hit is not None:
            return hit
        if len(segment) > _MAX_HEADER_SEGMENT:
            raise VerificationError("malformed", "the protected header is too long", raw)
        try:
            header = json.loads(_unb64url(segment))
        except (ValueError, RecursionError) as e:  # RecursionError: JSON nested thousands deep
            raise VerificationError("malformed", "not a compact JWS", raw) from e
        if not isinstance(header, dict):
            raise VerificationError("malformed", "not a compact JWS", raw)
        if header.get("alg") != ALG:
            raise VerificationError("malformed", f"algorithm {header.get('alg')!r} is not {ALG}", raw)
        if "crit" in header or "b64" in header:  # no extension is understood, so none may be required
            raise VerificationError("malformed", "the header asks for JWS extensions (crit/b64)", raw)
        x5c = header.get("x5c")
        if not isinstance(x5c, list) or not x5c or not all(isinstance(c, str) for c in x5c):
            raise VerificationError("malformed", "no x5c certificate chain in the header", raw)
        try:
            leaf = self._leaf(x5c[0])
        except VerificationError as e:
            e.payload = raw
            raise
        if len(self._header_cache) > 100_000:
            self._header_cache.clear()
        self._header_cache[segment] = leaf
        return leaf

    def _leaf(self, x5c0: str) -> _Leaf:
        try:
            der = base64.b64decode(x5c0, validate=True)
        except ValueError as e:
            raise VerificationError("malformed", "x5c[0] is not base64") from e
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError as e:
            raise VerificationError("malformed", "x5c[0] is not a DER certificate") from e
        for ca in self.ca_certs:
            try:  # ValueError too when the issuer name of a stranger's certificate does not parse
                if cert.issuer != ca.subject:
                    continue
                cert.verify_directly_issued_by(ca)
            except (ValueError, TypeError, InvalidSignature):
                continue
            break
        else:
            try:  # an untrusted certificate's name and extensions may not even parse
                who = f"certificate of {signer_of(cert).common_name!r}"
            except ValueError:
                who = "the certificate"
            raise VerificationError("untrusted_certificate", f"{who} was not issued by the district CA")
        try:
            if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                raise VerificationError("untrusted_certificate", "a CA certificate cannot sign results")
        except x509.ExtensionNotFound:
            pass
        pub = cert.public_key()
        if not isinstance(pub, Ed25519PublicKey):
            raise VerificationError("untrusted_certificate", "the signing certificate is not Ed25519")
        return _Leaf(cert, signer_of(cert), pub, cert.not_valid_before_utc, cert.not_valid_after_utc)

    def verify(self, compact: str | bytes, *, role: str, at: dt.datetime | None = None) -> Verified:
        """Signature, chain to the CA, validity at `at` (now by default), revocation and role."""
        if isinstance(compact, bytes):
            try:
                compact = compact.decode("ascii")
            except UnicodeDecodeError as e:
                raise VerificationError("malformed", "not a compact JWS") from e
        compact = compact.strip()
        if not compact.isascii():
            raise VerificationError("malformed", "not a compact JWS", None)
        parts = compact.split(".")
        if len(parts) != 3 or not parts[0] or not parts[1]:
            raise VerificationError("malformed", "not a compact JWS", None)
        header_segment, payload_segment, sig_segment = parts
        try:
            raw = json.loads(_unb64url(payload_segment))
        except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
            raw = None
        raw = raw if isinstance(raw, dict) else None
        leaf = self._header(header_segment, raw)
        if not _B64URL_SIG.fullmatch(sig_segment) or _b64url(sig := _unb64url(sig_segment)) != sig_segment:
            raise VerificationError("bad_signature", "the signature is not a base64url Ed25519 signature", raw)
        try:
            leaf.key.verify(sig, f"{header_segment}.{payload_segment}".encode("ascii"))
        except InvalidSignature as e:
            raise VerificationError("bad_signature", "the signature does not match the content", raw) from e
        signer = leaf.signer
        when = at or dt.datetime.now(dt.UTC)
        if not (leaf.not_before <= when <= leaf.not_after):
            raise VerificationError(
                "certificate_expired", f"certificate of {signer.common_name!r} is not valid at {when:%Y-%m-%d %H:%M}Z",
                raw)
        if signer.serial in self.revoked_serials or signer.common_name in self.revoked_names:
            raise VerificationError("revoked", f"kit {signer.common_name!r} has been revoked", raw)
        if signer.role != role:
            raise VerificationError("wrong_role", f"certificate of {signer.common_name!r} is not a {role} certificate",
                                    raw)
        if raw is None:
            raise VerificationError("malformed", "the payload is not a JSON object")
        return Verified(payload=raw, signer=signer, compact=compact)


def parse_result(verified: Verified) -> ResultPayload:
    """Schema check plus the identity binding: payload kit id and TPS must be the certificate's."""
    try:
        result = ResultPayload.model_validate(verified.payload)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise VerificationError("schema", f"{where}: {first['msg']}", verified.payload) from e
    if result.kit_id != verified.signer.common_name:
        raise VerificationError("kit_mismatch", f"payload kit {result.kit_id!r} is not the signer "
                                f"{verified.signer.common_name!r}", verified.payload)
    if result.tps != verified.signer.tps:
        raise VerificationError("tps_mismatch", f"payload TPS {result.tps} is not the certificate's TPS "
                                f"{verified.signer.tps}", verified.payload)
    return result


@dataclass(frozen=True)
class _TemplateRules:
    names: frozenset[str]
    limits: tuple[tuple[str, int], ...]  # field -> largest value its boxes and its maximum allow
    checks: tuple[tuple[Check, tuple[str, ...]], ...]  # check and the fields it reads


_RULES: dict[int, tuple[Template, _TemplateRules]] = {}


def _rules(template: Template) -> _TemplateRules:
    """What recheck needs from a template, worked out once per template (the district re-checks every result)."""
    hit = _RULES.get(id(template))
    if hit is not None and hit[0] is template:
        return hit[1]
    rules = _TemplateRules(
        names=frozenset(template.field_map),
        limits=tuple((f.name, f.upper_bound()) for f in template.fields),
        checks=tuple((c, c.fields) for c in template.checks))
    _RULES[id(template)] = (template, rules)  # holding the template keeps its id from being reused
    return rules


def recheck_arithmetic(result: ResultPayload, template: Template) -> list[str]:
    """Re-run the template's checks and max values. Returns problems; empty when the result stands.

    An `ok` result must have every field and every check good. A `review` result may carry failing
    checks, but the checks it reports must be the ones that really fail.
    """
    problems: list[str] = []
    rules = _rules(template)
    if result.fields.keys() != rules.names:
        names, got = rules.names, set(result.fields)
        missing, extra = sorted(names - got), sorted(got - names)
        return [f"fields do not match template {template.id}: missing {missing}, unknown {extra}"]
    values = result.values()
    ok = result.status == "ok"
    for name, limit in rules.limits:
        v = values[name]
        if v is None:
            if ok:
                problems.append(f"{name} has no value in an ok result")
            continue
        if v > limit:
            problems.append(f"{name}={v} is above its maximum {limit}")
    claimed = {c.id: c.passed for c in result.checks}
    for check, reads in rules.checks:
        if any(values[n] is None for n in reads):
            continue
        holds = check.holds(values)  # type: ignore[arg-type]
        if ok and not holds:
            problems.append(f"check {check.id} fails in an ok result")
        elif check.id in claimed and claimed[check.id] != holds:
            problems.append(f"check {check.id} reported {'passed' if claimed[check.id] else 'failed'} but it "
                            f"{'holds' if holds else 'fails'}")
    return problems


def sign_ack(ack: AckPayload, key: Ed25519PrivateKey, chain: Iterable[x509.Certificate]) -> str:
    return sign_compact(payload_bytes(ack), key, chain)


def parse_ack(verified: Verified) -> AckPayload:
    try:
        return AckPayload.model_validate(verified.payload)
    except ValidationError as e:
        raise VerificationError("schema", f"not an acknowledgement: {e.errors()[0]['msg']}") from e
