"""Certificates for the district's trust chain, made with `cryptography`.

Everything is Ed25519: the district CA, the broker's server certificate, the district service's
certificate and every kit's certificate. One kit key does both jobs (TLS client authentication and the
JWS over each result), so the kit holds exactly one secret. mosquitto 2.0 on OpenSSL 3 accepts Ed25519
for TLS 1.2 and 1.3 (the tests prove it with a real handshake).

What a certificate says (CN, role and TPS URIs) is read by `tpskit.trust.identity`. Issued client
certificates also carry a subject serialNumber: the certificate's own serial number in hex, so that the
subject is unique per certificate: the broker takes the whole subject as the MQTT user name and client id
(`use_subject_as_username`, `use_username_as_clientid`), so a replaced or revoked certificate of a kit is
a different, powerless user, and no certificate can take another one's session.
"""

from __future__ import annotations

import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tpskit.trust.identity import ROLE_URI_PREFIX, TPS_URI_PREFIX, TrustError


class ProvisioningError(TrustError):
    """Refused input, with a message a technician can act on."""


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


def create_ca(key: Ed25519PrivateKey, name: str, *, days: int = 3650,
              not_before: dt.datetime | None = None) -> x509.Certificate:
    """A self-signed district CA. `not_before` exists so tests can make an expired CA."""
    start = not_before or (utcnow() - dt.timedelta(minutes=5))
    subject = _name(f"{name} TPS Kit CA", "tpskit district")
    pub = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .sign(key, None)
    )


def check_ca_usable(ca_cert: x509.Certificate) -> None:
    now = utcnow()
    if now > ca_cert.not_valid_after_utc:
        raise ProvisioningError(
            f"the district CA expired on {ca_cert.not_valid_after_utc:%Y-%m-%d}; create a new district "
            "(provision district-init) and re-issue every kit")
    if now < ca_cert.not_valid_before_utc:
        raise ProvisioningError("the district CA is not valid yet: check this computer's clock")


def _issue(ca_key: Ed25519PrivateKey, ca_cert: x509.Certificate, subject: x509.Name,
           public_key: Ed25519PublicKey, san: list[x509.GeneralName], eku: list[x509.ObjectIdentifier],
           days: int, serial: int | None = None, minutes: int | None = None) -> x509.Certificate:
    check_ca_usable(ca_cert)
    start = utcnow() - dt.timedelta(minutes=5)
    span = dt.timedelta(minutes=minutes) if minutes is not None else dt.timedelta(days=days)
    end = min(start + span, ca_cert.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                       critical=False)
        .sign(ca_key, None)
    )


def issue_server_cert(ca_key: Ed25519PrivateKey, ca_cert: x509.Certificate, server_key: Ed25519PrivateKey,
                      host: str, *, days: int = 825) -> x509.Certificate:
    san: list[x509.GeneralName] = [x509.DNSName("localhost")]
    try:
        san.append(x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        san.insert(0, x509.DNSName(host))
    if host != "127.0.0.1":
        san.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    return _issue(ca_key, ca_cert, _name(host, "tpskit district"), server_key.public_key(), san,
                  [ExtendedKeyUsageOID.SERVER_AUTH], days)


def issue_role_cert(ca_key: Ed25519PrivateKey, ca_cert: x509.Certificate, public_key: Ed25519PublicKey,
                    common_name: str, role: str, tps: str | None = None, *, days: int = 730,
                    minutes: int | None = None, subject_serial: str | None = None) -> x509.Certificate:
    """A client certificate whose subject is unique: CN plus serialNumber (the certificate's serial in hex,
    or `subject_serial` for the broker's fixed admin identity)."""
    san: list[x509.GeneralName] = [x509.UniformResourceIdentifier(ROLE_URI_PREFIX + role)]
    if tps is not None:
        san.append(x509.UniformResourceIdentifier(TPS_URI_PREFIX + tps))
    serial = x509.random_serial_number()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                         x509.NameAttribute(NameOID.SERIAL_NUMBER, subject_serial or f"{serial:x}")])
    return _issue(ca_key, ca_cert, subject, public_key, san, [ExtendedKeyUsageOID.CLIENT_AUTH], days,
                  serial=serial, minutes=minutes)


def mqtt_username(cert: x509.Certificate) -> str:
    """The MQTT user name (and client id) mosquitto gives this certificate with `use_subject_as_username`:
    the subject as OpenSSL prints it in RFC 2253 form (last attribute first). Our client certificates
    hold a CN and a serialNumber, both plain ASCII that needs no escaping."""
    names = {NameOID.COMMON_NAME: "CN", NameOID.SERIAL_NUMBER: "serialNumber", NameOID.ORGANIZATION_NAME: "O"}
    parts = []
    for attr in reversed(list(cert.subject)):
        if attr.oid not in names:
            raise ProvisioningError(f"certificate subject attribute {attr.oid.dotted_string} is not one of ours")
        parts.append(f"{names[attr.oid]}={attr.value}")
    return ",".join(parts)


def make_crl(ca_key: Ed25519PrivateKey, ca_cert: x509.Certificate,
             revoked: list[tuple[int, dt.datetime]]) -> x509.CertificateRevocationList:
    """The CRL of (serial, when revoked) pairs; the broker checks it at each TLS handshake (read at start)."""
    now = utcnow()
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now - dt.timedelta(minutes=5))
               # OpenSSL refuses every client once next_update has passed, so it lasts as long as the CA.
               .next_update(ca_cert.not_valid_after_utc))
    for serial, when in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    return builder.sign(ca_key, None)
