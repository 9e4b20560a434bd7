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
from pathlib import Path
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from tpskit.forms import TPS_RE, Check, Template
from tpskit.trust.identity import Signer, signer_of

RESULT_SCHEMA = "tpskit-result/1"
ACK_SCHEMA = "tpskit-ack/1"
ALG = "EdDSA"
_ALGS = [ALG]
# joserfc caps the protected header at 512 bytes by default; ours carries a certificate in x5c.
_REGISTRY = jws.JWSRegistry(algorithms=_ALGS)
_REGISTRY.max_header_length = 16_384

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


# ------------------------------------------------------------------------------------------ strict JSON
def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"the key {key!r} appears twice")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# \u escapes of a lone surrogate half (no UTF-8 encoder or database takes one) or of a control character
# (NUL, which PostgreSQL refuses in text, and the rest): refused rather than stored. Our own payloads are
# written as UTF-8 (ensure_ascii=False) and never contain either.
_BAD_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|00[01][0-9a-fA-F])")


def strict_json(data: bytes | str) -> Any:
    """JSON as RFC 8259 means it, for everything signed (results, acks, headers), on both sides.

    Refused (ValueError): a key twice in one object (parsers differ on which one wins, so a result could
    be read as other votes by another parser), NaN and Infinity (not JSON), text that is not UTF-8,
    escaped lone surrogates and control characters, integers of more than 4,300 digits (Python's own
    limit) and nesting deep enough to exhaust the parser (RecursionError, turned into ValueError).
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError("the JSON text is not UTF-8") from e
    if _BAD_ESCAPE.search(data):
        raise ValueError("the JSON text escapes a lone surrogate or a control character")
    try:
        return json.loads(data, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except RecursionError as e:
        raise ValueError("the JSON text is nested too deep") from e


@dataclass(frozen=True)
class Verified:
    payload: dict[str, Any]
    signer: Signer
    compact: str


def _lenient_json(data: bytes) -> Any:
    """Any JSON Python reads, or None: only ever to route a refusal, never to decide anything."""
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        return None


def unverified_payload(compact: str) -> dict[str, Any] | None:
    """The payload without any check, only to route a rejection; never trust it."""
    try:
        part = compact.split(".")[1]
        obj = _lenient_json(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


# ------------------------------------------------------------------------------------------ revocation
@dataclass
class Revocations:
    """Revoked certificates, by serial and by kit id, each with the instant of its revocation.

    A revocation is not retroactive: a result that reached the district before it stays valid (and is
    shown as from a later-revoked kit); one that reached it at or after that instant is refused.
    """

    by_serial: dict[int, dt.datetime] = field(default_factory=dict)
    by_name: dict[str, dt.datetime] = field(default_factory=dict)

    def since(self, signer: Signer) -> dt.datetime | None:
        """When the signer's certificate was revoked (the earlier of serial and name), or None."""
        times = [t for t in (self.by_serial.get(signer.serial), self.by_name.get(signer.common_name)) if t]
        return min(times) if times else None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Revocations:
        """revoked.json as `tpskit provision revoke` writes it: {kit id or kit@serial: {serial, revoked_at, ...}}.
        An entry without a time (older files) counts as revoked since always."""
        out = cls()
        for name, entry in data.items():
            when = _revocation_time(entry.get("revoked_at"))
            serial = int(entry["serial"])
            out.by_serial[serial] = min(when, out.by_serial.get(serial, when))
            if "@" not in name:  # "kit@serial" entries (a replaced certificate) revoke that serial only
                out.by_name[name] = min(when, out.by_name.get(name, when))
        return out


_ALWAYS = dt.datetime.min.replace(tzinfo=dt.UTC)


def _revocation_time(text: object) -> dt.datetime:
    if not isinstance(text, str):
        return _ALWAYS
    when = dt.datetime.fromisoformat(text)
    return when if when.tzinfo is not None else when.replace(tzinfo=dt.UTC)


def load_revocations(path: Path) -> Revocations:
    """Read revoked.json. Raises ValueError naming the file when it is not one."""
    try:
        data = strict_json(Path(path).read_bytes() or b"{}")
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return Revocations.from_json(data)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path} is not a revocation list written by `tpskit provision revoke` ({e})") from e


_B64URL_SIG = re.compile(r"[A-Za-z0-9_-]{86}")  # an Ed25519 signature: 64 bytes, no padding
_MAX_HEADER_SEGMENT = 16_384


@dataclass(frozen=True)
class _Leaf:
    cert: x509.Certificate
    signer: Signer
    key: Ed25519PublicKey


@dataclass
class Verifier:
    """Verifies compact JWS (RFC 7515, EdDSA per RFC 8037) against the district CA certificate(s), with
    a revocation list. The kit (acks), the district service and `tpskit verify` all use this one code.

    It reads the compact form itself and checks the signature with `cryptography` (the Ed25519 that
    joserfc calls too): a kit sends the same protected header (algorithm and certificate) with every
    result, so the header's checks and the chain check (issuer, CA signature, not a CA, Ed25519 key)
    are done once per distinct header and cached by its exact text. What is checked on every call:
    the Ed25519 signature over the exact header and payload text, validity at `at`, revocation (a
    revocation takes effect on the next message) and role. joserfc, the library that makes the kits'
    envelopes, is the reference it is tested against (tests/test_envelope_fast_path.py): same
    verdict on good, tampered and malformed tokens.

    It never raises anything but VerificationError, whatever the bytes (tests/fuzz drives it with
    mutated tokens).
    """

    ca_certs: list[x509.Certificate]
    revocations: Revocations = field(default_factory=Revocations)
    _header_cache: dict[str, _Leaf] = field(default_factory=dict, repr=False)

    def _header(self, segment: str, raw: dict[str, Any] | None) -> _Leaf:
        """The protected header's checks and the certificate chain, once per distinct header text."""
        hit = self._header_cache.get(segment)
        if hit is not None:
            return hit
        if len(segment) > _MAX_HEADER_SEGMENT:
            raise VerificationError("malformed", "the protected header is too long", raw)
        try:
            header = strict_json(_unb64url(segment))
        except ValueError as e:
            raise VerificationError("malformed", "not a compact JWS", raw) from e
        if not isinstance(header, dict):
            raise VerificationError("malformed", "not a compact JWS", raw)
        if header.get("alg") != ALG:
            raise VerificationError("malformed", f"algorithm {str(header.get('alg'))[:20]!r} is not {ALG}", raw)
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
        except Exception as e:  # ValueError, and InvalidVersion (not a ValueError) for a bad version field
            raise VerificationError("malformed", "x5c[0] is not a DER X.509 v3 certificate") from e
        for ca in self.ca_certs:
            try:  # a stranger's certificate may not parse at all: any error means "not issued by this CA"
                if cert.issuer != ca.subject:
                    continue
                cert.verify_directly_issued_by(ca)
            except Exception:
                continue
            break
        else:
            try:  # an untrusted certificate's name and extensions may not even parse
                who = f"certificate of {signer_of(cert).common_name[:64]!r}"
            except ValueError:
                who = "the certificate"
            raise VerificationError("untrusted_certificate", f"{who} was not issued by the district CA")
        # Issued by our CA, so well formed; still, a CA can be tricked or buggy: no parse error may escape.
        try:
            signer = signer_of(cert)
            try:
                if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
                    raise VerificationError("untrusted_certificate", "a CA certificate cannot sign results")
            except x509.ExtensionNotFound:
                pass
            pub = cert.public_key()
        except VerificationError:
            raise
        except Exception as e:
            raise VerificationError("untrusted_certificate", f"the certificate does not parse ({type(e).__name__})"
                                    ) from e
        if not isinstance(pub, Ed25519PublicKey):
            raise VerificationError("untrusted_certificate", "the signing certificate is not Ed25519")
        return _Leaf(cert, signer, pub)

    def verify(self, compact: str | bytes, *, role: str, at: dt.datetime | None = None,
               arrived: dt.datetime | None = None, check_validity: bool = True) -> Verified:
        """Signature, chain to the CA, validity at `at` (now by default; skipped with
        check_validity=False, for results, whose rule is `check_result_time`), revocation as of
        `arrived` (now by default) and role. Raises VerificationError and nothing else."""
        try:
            return self._verify(compact, role, at, arrived, check_validity)
        except VerificationError:
            raise
        except Exception as e:  # a defect some token triggers must refuse that token, not stop the caller
            raise VerificationError("malformed", f"could not be checked ({type(e).__name__})") from e

    def _verify(self, compact: str | bytes, role: str, at: dt.datetime | None, arrived: dt.datetime | None,
                check_validity: bool) -> Verified:
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
            raw = strict_json(_unb64url(payload_segment))
            bad_json = None
        except ValueError as e:  # refused below; read leniently only to route the refusal to its kit
            raw, bad_json = _lenient_json(_unb64url(payload_segment)), str(e)
        raw = raw if isinstance(raw, dict) else None
        leaf = self._header(header_segment, raw)
        if not _B64URL_SIG.fullmatch(sig_segment) or _b64url(sig := _unb64url(sig_segment)) != sig_segment:
            raise VerificationError("bad_signature", "the signature is not a base64url Ed25519 signature", raw)
        try:
            leaf.key.verify(sig, f"{header_segment}.{payload_segment}".encode("ascii"))
        except InvalidSignature as e:
            raise VerificationError("bad_signature", "the signature does not match the content", raw) from e
        signer = leaf.signer
        if check_validity:
            when = at or dt.datetime.now(dt.UTC)
            if not signer.valid_at(when):
                raise VerificationError(
                    "certificate_expired",
                    f"certificate of {signer.common_name!r} is not valid at {when:%Y-%m-%d %H:%M}Z", raw)
        revoked = self.revocations.since(signer)
        if revoked is not None and (arrived or dt.datetime.now(dt.UTC)) >= revoked:
            raise VerificationError("revoked", f"kit {signer.common_name!r} has been revoked"
                                    + (f" (since {revoked:%Y-%m-%d %H:%M}Z)" if revoked != _ALWAYS else ""), raw)
        if signer.role != role:
            raise VerificationError("wrong_role", f"certificate of {signer.common_name!r} is not a {role} certificate",
                                    raw)
        if bad_json is not None:
            raise VerificationError("malformed", f"the payload is not strict JSON: {bad_json}", raw)
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


# ------------------------------------------------------------------------------------------ one notion of time
#: How far a result's capture time may lie after its arrival at the district: a kit clock a little
#: ahead is tolerated, a capture "tomorrow" is a wrong clock and refused (`clock_ahead`).
MAX_CLOCK_AHEAD = dt.timedelta(hours=1)


def check_result_time(signer: Signer, captured_at: dt.datetime, arrived: dt.datetime | None) -> None:
    """The one rule for time, the same in the kit (before it signs), the district and `tpskit verify`.

    The certificate must be valid at the capture time the result states (it is signed); where the arrival
    at the district is known (the district itself; an export that carries it), the certificate must also
    be valid at arrival, and the capture time may not lie more than MAX_CLOCK_AHEAD after the arrival.
    Revocation is judged at arrival (`Verifier.verify(arrived=...)`), because a capture time is the
    signer's word and a stolen key can back-date it.
    """
    if not signer.valid_at(captured_at):
        raise VerificationError(
            "certificate_expired",
            f"certificate of {signer.common_name!r} (valid {signer.not_before:%Y-%m-%d %H:%M}Z to "
            f"{signer.not_after:%Y-%m-%d %H:%M}Z) was not valid at the capture time "
            f"{captured_at.astimezone(dt.UTC):%Y-%m-%d %H:%M}Z; check the kit's clock")
    if arrived is None:
        return
    if not signer.valid_at(arrived):
        raise VerificationError("certificate_expired", f"certificate of {signer.common_name!r} expired on "
                                f"{signer.not_after:%Y-%m-%d %H:%M}Z, before the result arrived")
    if captured_at > arrived + MAX_CLOCK_AHEAD:
        raise VerificationError(
            "clock_ahead", f"the capture time {captured_at.astimezone(dt.UTC):%Y-%m-%d %H:%M}Z is after the "
            f"arrival {arrived:%Y-%m-%d %H:%M}Z: the kit's clock is ahead; set it right and capture again")


def verify_result(verifier: Verifier, compact: str | bytes, *, arrived: dt.datetime | None = None
                  ) -> tuple[Verified, ResultPayload]:
    """A kit's signed result, checked as the district and `tpskit verify` both check it: signature, chain,
    revocation as of arrival, role, schema, kit and TPS binding, and the time rule."""
    verified = verifier.verify(compact, role="kit", arrived=arrived, check_validity=False)
    result = parse_result(verified)
    try:
        check_result_time(verified.signer, result.captured_at, arrived)
    except VerificationError as e:
        e.payload = verified.payload
        raise
    return verified, result


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
