"""May this kit capture and sign? The checks shared by `kit check-config`, `kit run` and `kit selftest`.

A kit whose clock is implausible would sign results with a wrong capture time (and fail TLS); a key that
does not match the certificate signs results the district refuses; a certificate for another TPS or kit
id cannot deliver; an outbox written by a newer release is not this one's to read or upgrade. Each
problem names the configuration key to look at and the fix, in plain words.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tpskit.edge.config import KitConfig
from tpskit.edge.outbox import newer_outbox
from tpskit.trust.certs import load_cert
from tpskit.trust.identity import Identity, identity_of
from tpskit.trust.keys import KeyFileError, load_key

#: No genuine kit clock reads earlier than this release's build date (bump it with each release). The
#: certificate's notBefore is the other floor: a kit cannot have been provisioned in its own future.
BUILD_DATE = dt.datetime(2025, 11, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Problem:
    """One reason the kit must not capture: the config key involved, plain words, and whether the kit may
    recover by itself (a clock fixed by time sync later) or needs the technician."""

    key: str
    message: str
    transient: bool = False


def clock_problem(now: dt.datetime, not_before: dt.datetime | None, not_after: dt.datetime | None
                  ) -> Problem | None:
    """The clock is implausible when it reads before the build date or the certificate's notBefore."""
    floor = max(BUILD_DATE, not_before) if not_before is not None else BUILD_DATE
    if now < floor:
        return Problem("clock", f"the clock reads {now:%Y-%m-%d %H:%M} UTC, before {floor:%Y-%m-%d %H:%M} UTC "
                                "(this software's build date or the kit certificate's start): results would "
                                "carry a false time. Fix: connect the kit to a network with time sync (NTP) "
                                "or set the clock (`timedatectl set-time`), then wait or restart", transient=True)
    if not_after is not None and now > not_after:
        return Problem("identity.certificate", f"the kit certificate expired on {not_after:%Y-%m-%d} (or the "
                                               "clock is far ahead). Fix: check the clock; if it is right, ask "
                                               "the district for a new certificate (`tpskit provision sign-csr`)")
    return None


def startup_problems(cfg: KitConfig, now: dt.datetime | None = None) -> list[Problem]:
    """Everything that must hold before the kit may capture; empty when ready."""
    now = now or dt.datetime.now(dt.UTC)
    problems: list[Problem] = []
    ident = cfg.identity
    cert: x509.Certificate | None = None
    try:
        cert = load_cert(ident.certificate)
    except OSError as e:
        problems.append(Problem("identity.certificate", f"cannot read the kit certificate {ident.certificate}: "
                                f"{e.strerror}. Fix: copy kit.pem from the district (`tpskit provision "
                                "sign-csr`) to that path or correct identity.certificate"))
    except ValueError:
        problems.append(Problem("identity.certificate", f"{ident.certificate} is not a PEM certificate. Fix: copy "
                                "the kit.pem the district issued"))
    try:
        key = load_key(ident.key)
    except KeyFileError as e:
        problems.append(Problem("identity.key", f"{e}. Fix: the key made by `tpskit kit keygen` on this kit "
                                "must be at identity.key (it never leaves the kit)"))
        key = None
    if cert is not None:
        if key is not None:
            ours = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            theirs = cert.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            if ours != theirs:
                problems.append(Problem("identity.key", f"the key {ident.key} does not match the certificate "
                                        f"{ident.certificate} (issued for another key). Fix: install the "
                                        "certificate issued from THIS kit's request, or make a new request "
                                        "with `tpskit kit keygen` and have it signed"))
        try:
            who = identity_of(cert)
        except ValueError:
            who = Identity("", None, None)
        if who.tps is None:
            problems.append(Problem("kit.tps", "the kit certificate names no TPS. Fix: have the district issue "
                                    "the certificate from the kit's request (`tpskit provision sign-csr`)"))
        elif who.tps != cfg.kit.tps:
            problems.append(Problem("kit.tps", f"kit.tps is {cfg.kit.tps} but the certificate is for TPS "
                                    f"{who.tps}. Fix: set kit.tps = \"{who.tps}\" or install this TPS's "
                                    "certificate"))
        if who.common_name != cfg.kit.id:
            problems.append(Problem("kit.id", f"kit.id is {cfg.kit.id!r} but the certificate names "
                                    f"{who.common_name!r}. Fix: set kit.id = \"{who.common_name}\""))
        try:
            ca = load_cert(ident.ca)
            cert.verify_directly_issued_by(ca)
        except OSError as e:
            problems.append(Problem("identity.ca", f"cannot read the district CA {ident.ca}: {e.strerror}. "
                                    "Fix: copy ca.pem from the district"))
        except Exception as e:  # InvalidSignature, wrong issuer (ValueError), not PEM
            problems.append(Problem("identity.ca", f"the kit certificate was not issued by the CA in "
                                    f"{ident.ca} ({type(e).__name__}). Fix: copy this district's ca.pem"))
        clock = clock_problem(now, cert.not_valid_before_utc, cert.not_valid_after_utc)
    else:
        clock = clock_problem(now, None, None)
    if clock is not None:
        problems.append(clock)
    newer = newer_outbox(cfg.outbox_path)
    if newer is not None:
        problems.append(Problem("kit.data_dir", str(newer)))
    return problems
