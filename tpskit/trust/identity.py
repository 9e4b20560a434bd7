"""What a certificate (or a certificate request) says about its holder, read in one place.

- subject CN: the kit id (a signed result's `kit_id`) or the district service's name;
- SAN URI `urn:tpskit:role:<role>`: what the key may sign (`kit` results, `district` acknowledgements);
- SAN URI `urn:tps:<13 digits>`: the TPS a kit serves.

A certificate naming no role or two roles has role None, and likewise for the TPS: it can sign nothing.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.oid import NameOID

from tpskit.forms import valid_tps

TPS_URI_PREFIX = "urn:tps:"
ROLE_URI_PREFIX = "urn:tpskit:role:"
ROLE_KIT = "kit"
ROLE_DISTRICT = "district"
#: A kit id: it becomes the certificate's CN and part of the broker's user name.
KIT_ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,62}$")


class TrustError(ValueError):
    """Refused input about an identity, a key or the TPS list, with a message a technician can act on."""


@dataclass(frozen=True)
class Identity:
    """What a certificate or request says about its holder."""

    common_name: str
    role: str | None
    tps: str | None


@dataclass(frozen=True)
class Signer(Identity):
    """A certificate's identity with what makes it one certificate: its serial and validity."""

    serial: int
    not_before: dt.datetime
    not_after: dt.datetime

    def valid_at(self, when: dt.datetime) -> bool:
        return self.not_before <= when <= self.not_after


def identity_of(cert: x509.Certificate | x509.CertificateSigningRequest) -> Identity:
    """The identity a certificate or request states. Raises ValueError when its name or extensions do not
    parse (a stranger's certificate may be anything)."""
    try:
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        try:
            uris = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            uris = []
        roles = [u[len(ROLE_URI_PREFIX):] for u in uris if u.startswith(ROLE_URI_PREFIX)]
        tpss = [u[len(TPS_URI_PREFIX):] for u in uris if u.startswith(TPS_URI_PREFIX)]
        return Identity(common_name=str(cns[0].value) if cns else "", role=roles[0] if len(roles) == 1 else None,
                        tps=tpss[0] if len(tpss) == 1 else None)
    except ValueError:
        raise
    except Exception as e:  # cryptography raises DuplicateExtension and others that are not ValueError
        raise ValueError(f"the certificate does not parse ({type(e).__name__})") from e


def signer_of(cert: x509.Certificate) -> Signer:
    """`identity_of` plus serial and validity. Raises ValueError when the certificate does not parse."""
    who = identity_of(cert)
    return Signer(who.common_name, who.role, who.tps, serial=cert.serial_number,
                  not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc)


def check_kit_id(kit_id: str) -> None:
    if not KIT_ID_RE.fullmatch(kit_id):  # not match: its '$' lets a trailing newline through into the ACL
        raise TrustError(
            f"kit id {kit_id!r} is not usable: 3-63 characters, lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit (it becomes the MQTT user name)")


def check_tps(tps: str) -> None:
    if not valid_tps(tps):
        raise TrustError(
            f"TPS code {tps!r} is malformed: it must be 13 digits, the 10-digit village (kelurahan) code "
            "followed by the 3-digit TPS number, e.g. 3201012001001")
