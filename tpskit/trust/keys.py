"""The one module that touches private keys (the kit's, the district service's, the CA's).

A key is created in place with mode 0600 (O_EXCL: an existing key is never overwritten, silently or
otherwise) and loaded; what it signs is signed where it is used (tpskit.envelope). Nothing here returns
or logs key bytes, and nothing writes a key anywhere but the path it was created at.
"""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class KeyFileError(Exception):
    """A key that cannot be created or used; the message says why and what to do."""


def create_key(path: Path) -> Ed25519PrivateKey:
    """Create a new Ed25519 key at `path` (0600). Refuses when anything already exists there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists; refusing to overwrite a key. If it really must be replaced, move it "
            "away yourself (the certificate issued for it stops working) and run the command again") from None
    try:
        os.fchmod(fd, 0o600)  # the umask may not drop group/other bits on every system
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def load_key(path: Path) -> Ed25519PrivateKey:
    """Load an Ed25519 key; refuses a key readable by group or others."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        data = path.read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read the key {path}: {e.strerror}") from e
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(f"{path} is readable by other users (mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except ValueError as e:
        raise KeyFileError(f"{path} is not a PEM private key") from e
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFileError(f"{path} is not an Ed25519 key")
    return key


def client_tls_context(ca: str | Path, certificate: str | Path, key: str | Path) -> ssl.SSLContext:
    """Mutual-TLS client context for the district broker: the broker must present a certificate from
    `ca`; we present `certificate` with its `key`. TLS 1.2 at least. (Kit and district service alike.)"""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(certificate), str(key))
    return ctx
