"""Verification: the one check of a signed result or ack, for the kit (acks), the district service and
`tpskit verify`, so they cannot disagree about what a valid result is.

Anyone holding the district CA certificate can check a result: signature by the `x5c[0]` key, `x5c[0]`
issued by the CA, role and TPS in the certificate, strict JSON, the payload schema, and the one rule for
time. Everything signed is read with `strict_json`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from tpskit.envelope.payload import AckPayload, ResultPayload
from tpskit.envelope.signing import ALG, b64url, unb64url
from tpskit.trust.identity import Signer, signer_of


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


#: Distinct protected headers (one per certificate) whose checks are kept.
HEADER_CACHE_MAX = 100_000
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
    # Least recently used out first: a national worker meets hundreds of thousands of kits in a night, and
    # clearing the whole cache at the bound threw away the district services' certificates too.
    _header_cache: OrderedDict[str, _Leaf] = field(default_factory=OrderedDict, repr=False)

    def _header(self, segment: str, raw: dict[str, Any] | None) -> _Leaf:
        """The protected header's checks and the certificate chain, once per distinct header text."""
        hit = self._header_cache.get(segment)
        if hit is not None:
            self._header_cache.move_to_end(segment)
            return hit
        if len(segment) > _MAX_HEADER_SEGMENT:
            raise VerificationError("malformed", "the protected header is too long", raw)
        try:
            header = strict_json(unb64url(segment))
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
        self._header_cache[segment] = leaf
        if len(self._header_cache) > HEADER_CACHE_MAX:
            self._header_cache.popitem(last=False)
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
            raw = strict_json(unb64url(payload_segment))
            bad_json = None
        except ValueError as e:  # refused below; read leniently only to route the refusal to its kit
            raw, bad_json = _lenient_json(unb64url(payload_segment)), str(e)
        raw = raw if isinstance(raw, dict) else None
        leaf = self._header(header_segment, raw)
        if not _B64URL_SIG.fullmatch(sig_segment) or b64url(sig := unb64url(sig_segment)) != sig_segment:
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


def parse_ack(verified: Verified) -> AckPayload:
    try:
        return AckPayload.model_validate(verified.payload)
    except ValidationError as e:
        raise VerificationError("schema", f"not an acknowledgement: {e.errors()[0]['msg']}") from e
