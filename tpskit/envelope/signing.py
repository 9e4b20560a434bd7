"""Signing: a compact JWS (RFC 7515) signed EdDSA/Ed25519 (RFC 8037), with the signer's certificate chain in
the `x5c` header. The kit signs its results with `sign_compact` (joserfc); the district signs thousands of
acks a second with `CompactSigner`, which makes the same bytes.

The algorithm name is `EdDSA` (RFC 8037), which every JOSE tool understands. joserfc flags it as
deprecated in favour of RFC 9864's fully specified `Ed25519`; the signature bytes are identical, and we
keep the name that off-the-shelf verifiers accept.
"""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import OKPKey

ALG = "EdDSA"
_ALGS = [ALG]
# joserfc caps the protected header at 512 bytes by default; ours carries a certificate in x5c.
_REGISTRY = jws.JWSRegistry(algorithms=_ALGS)
_REGISTRY.max_header_length = 16_384


def sign_compact(payload: bytes, key: Ed25519PrivateKey, chain: Iterable[x509.Certificate]) -> str:
    """A compact JWS over `payload`, with the signer's certificate chain in x5c (leaf first), made by joserfc."""
    x5c = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
    header = {"alg": ALG, "x5c": x5c}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        return jws.serialize_compact(header, payload, OKPKey.import_key(key), registry=_REGISTRY)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
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
        self._header_segment = b64url(header.encode("ascii"))
        self._key = key

    def sign(self, payload: bytes) -> str:
        signing_input = f"{self._header_segment}.{b64url(payload)}"
        return f"{signing_input}.{b64url(self._key.sign(signing_input.encode('ascii')))}"
