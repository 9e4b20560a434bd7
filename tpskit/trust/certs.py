"""Certificate files: read, written, fingerprinted; and where a district service process finds its own."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization


def load_cert(path: Path) -> x509.Certificate:
    """The first PEM certificate in `path`. OSError when unreadable, ValueError when not PEM."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def load_certs(path: Path) -> list[x509.Certificate]:
    """Every PEM certificate in `path` (a chain, leaf first)."""
    return x509.load_pem_x509_certificates(Path(path).read_bytes())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex()


def share_identity(certificate: Path, key: Path, share: int, shares: int) -> tuple[Path, Path]:
    """The certificate and key of district service process `share` (0-based) out of `shares`: the configured
    ones for a single process, `<name>-<i>of<n>` next to them otherwise (the broker gives every certificate
    one session, so each process needs its own; `tpskit provision service-shares` issues them)."""
    if shares == 1:
        return certificate, key
    tag = f"-{share + 1}of{shares}"
    return (certificate.with_name(certificate.stem + tag + certificate.suffix),
            key.with_name(key.stem + tag + key.suffix))
