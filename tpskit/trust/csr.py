"""A kit's key and its certificate request: made on the kit, carried to the district, signed there."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from tpskit.files import write_atomic
from tpskit.trust.identity import ROLE_KIT, ROLE_URI_PREFIX, TPS_URI_PREFIX, check_kit_id, check_tps
from tpskit.trust.keys import create_key


def make_csr(key: Ed25519PrivateKey, kit_id: str, tps: str) -> x509.CertificateSigningRequest:
    """A request naming the kit id (CN), the kit role and the TPS, signed by the kit's key."""
    check_kit_id(kit_id)
    check_tps(tps)
    san = x509.SubjectAlternativeName([
        x509.UniformResourceIdentifier(ROLE_URI_PREFIX + ROLE_KIT),
        x509.UniformResourceIdentifier(TPS_URI_PREFIX + tps),
    ])
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kit_id)]))
            .add_extension(san, critical=False).sign(key, None))


def keygen(kit_dir: Path, kit_id: str, tps: str, *, key_path: Path | None = None) -> tuple[Path, Path]:
    """On the kit: create the key (0600, never overwritten) and `kit.csr` naming the kit id and TPS.
    Returns (key path, request path)."""
    check_kit_id(kit_id)
    check_tps(tps)
    kit_dir = Path(kit_dir)
    key_path = Path(key_path) if key_path else kit_dir / "kit.key"
    key = create_key(key_path)
    csr_path = kit_dir / "kit.csr"
    write_atomic(csr_path, make_csr(key, kit_id, tps).public_bytes(Encoding.PEM))
    return key_path, csr_path
