"""`tpskit verify FILE --ca CA.pem`: re-verify an export of signed results, line by line.

The same `Verifier` the district uses: signature, certificate chain to the CA, kit role, certificate
validity at the capture time the result states, kit and TPS binding, and the template's checks.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click

from tpskit.envelope import VerificationError, Verifier, parse_result, recheck_arithmetic, unverified_payload
from tpskit.forms import load_templates
from tpskit.provisioning.pki import ROLE_KIT, load_certs


def verify_lines(lines: list[str], ca: Path, revoked: Path | None = None) -> list[tuple[int, bool, str]]:
    verifier = Verifier(load_certs(ca))
    if revoked is not None:
        data = json.loads(revoked.read_text() or "{}")
        verifier.revoked_names = set(data)
        verifier.revoked_serials = {int(v["serial"]) for v in data.values()}
    templates = {t.id: t for t in load_templates().values()}
    seen: set[str] = set()
    out = []
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        raw = unverified_payload(line) or {}
        try:
            at = dt.datetime.fromisoformat(str(raw.get("captured_at")))
        except ValueError:
            at = None
        if at is not None and at.tzinfo is None:  # compared with the certificate's UTC validity
            at = at.replace(tzinfo=dt.UTC)
        try:
            result = parse_result(verifier.verify(line, role=ROLE_KIT, at=at))
            template = templates.get(result.template_id)
            if template is None:
                raise VerificationError("unknown_template", f"template {result.template_id} is not known here")
            problems = recheck_arithmetic(result, template)
            if problems:
                raise VerificationError("checks_failed", "; ".join(problems))
            if result.submission_id in seen:
                raise VerificationError("duplicate", f"submission {result.submission_id} appears twice")
            seen.add(result.submission_id)
        except VerificationError as e:
            out.append((n, False, f"{e.reason}: {e.detail}"))
            continue
        out.append((n, True, f"kit {result.kit_id} TPS {result.tps} {result.template_id} seq {result.seq} "
                             f"status {result.status} submission {result.submission_id}"))
    return out


@click.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--ca", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="The district CA certificate (PEM).")
@click.option("--revoked", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Optional revoked.json published by the district.")
def verify(file: Path, ca: Path, revoked: Path | None) -> None:
    """Re-verify every signed result in FILE against the district CA; exit 1 if any line fails."""
    report = verify_lines(file.read_text(encoding="ascii", errors="replace").splitlines(), ca, revoked)
    bad = 0
    for n, ok, text in report:
        click.echo(f"line {n}: {'OK  ' if ok else 'FAIL'} {text}")
        bad += not ok
    click.echo(f"{len(report) - bad} verified, {bad} failed")
    if bad:
        raise SystemExit(1)
