"""Helpers that build what an attacker or a broken kit sends: certificates edited at the DER level,
tokens signed over any bytes, JSON a well-behaved encoder never writes."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_over(payload: bytes, key: Ed25519PrivateKey, chain_der: list[bytes]) -> str:
    """A compact JWS over exactly `payload` (any bytes), with x5c as given, signed with `key`."""
    header = b64url(json.dumps({"alg": "EdDSA", "x5c": [base64.b64encode(c).decode() for c in chain_der]},
                               separators=(",", ":")).encode())
    body = b64url(payload)
    sig = key.sign(f"{header}.{body}".encode())
    return f"{header}.{body}.{b64url(sig)}"


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


# ------------------------------------------------------------------------------------------ DER surgery
def _read_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of value, end of value) of the TLV at `pos`."""
    tag = data[pos]
    n = data[pos + 1]
    if n < 0x80:
        return tag, pos + 2, pos + 2 + n
    k = n & 0x7F
    length = int.from_bytes(data[pos + 2:pos + 2 + k], "big")
    return tag, pos + 2 + k, pos + 2 + k + length


def _children(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        _, _, end = _read_tlv(data, pos)
        out.append(data[pos:end])
        pos = end
    return out


def _tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + value


def _value(tlv: bytes) -> bytes:
    _, start, end = _read_tlv(tlv, 0)
    return tlv[start:end]


def resign(cert: x509.Certificate, key: Ed25519PrivateKey, edit: Any) -> bytes:
    """The certificate's DER with its TBS children passed through `edit(list) -> list`, signed again with
    `key` (Ed25519: the signature is over the TBS bytes)."""
    tbs, alg, _sig = _children(_value(der(cert)))
    new_tbs = _tlv(0x30, b"".join(edit(_children(_value(tbs)))))
    sig = key.sign(new_tbs)
    return _tlv(0x30, new_tbs + alg + _tlv(0x03, b"\x00" + sig))


def with_duplicate_extension(cert: x509.Certificate, key: Ed25519PrivateKey) -> bytes:
    """The certificate with its first extension twice (RFC 5280 forbids it), signed by `key`."""

    def edit(children: list[bytes]) -> list[bytes]:
        exts_wrapper = children[-1]
        assert exts_wrapper[0] == 0xA3, "the certificate has no extensions"
        exts = _children(_value(_value(exts_wrapper)))
        return [*children[:-1], _tlv(0xA3, _tlv(0x30, b"".join([exts[0], *exts])))]

    return resign(cert, key, edit)


def with_version(cert: x509.Certificate, key: Ed25519PrivateKey, version: int) -> bytes:
    """The certificate with its version field set to `version` (v3 is 2; anything above is invalid)."""

    def edit(children: list[bytes]) -> list[bytes]:
        assert children[0][0] == 0xA0, "no explicit version"
        return [_tlv(0xA0, _tlv(0x02, bytes([version]))), *children[1:]]

    return resign(cert, key, edit)
