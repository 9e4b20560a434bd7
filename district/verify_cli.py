"""`tpskit verify FILE --ca CA.pem`: re-verify an export of signed results, line by line.

The same checks the district makes (`tpskit.envelope.verify_result`): signature, certificate chain to
the CA, kit role, kit and TPS binding, the one rule for time (the certificate valid at the capture time
the result states and, when the line says when the district received it, at arrival too), revocation as
of arrival, and the template's checks.

A line is a compact JWS, or a JSON object with the compact JWS under "envelope" and the district's
arrival time under "received_at" (ISO 8601 with a time zone). A result of a kit revoked after it arrived
stays valid and is marked as from a later-revoked kit; one that arrived after the revocation (or whose
arrival the line does not say) is refused. Every line gets a verdict: nothing in a line can stop the run.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from tpskit.envelope import (
    Revocations,
    VerificationError,
    Verifier,
    load_revocations,
    recheck_arithmetic,
    strict_json,
    verify_result,
)
from tpskit.forms import load_templates
from tpskit.provisioning.pki import load_certs


def _split_line(line: str) -> tuple[str, dt.datetime | None]:
    """(compact JWS, arrival time or None) of one export line. Raises VerificationError."""
    if not line.startswith("{"):
        return line, None
    try:
        obj = strict_json(line)
        envelope, received = obj["envelope"], obj.get("received_at")
        if not isinstance(envelope, str):
            raise TypeError("envelope is not a string")
        if received is None:
            return envelope, None
        arrived = dt.datetime.fromisoformat(received)
        if arrived.tzinfo is None:
            raise ValueError("received_at has no time zone")
        return envelope, arrived
    except (ValueError, KeyError, TypeError) as e:
        raise VerificationError("malformed", f"not an export line ({type(e).__name__}: {str(e)[:80]})") from e


def verify_lines(lines: list[str], ca: Path, revoked: Path | None = None) -> list[tuple[int, bool, str]]:
    """(line number, ok, text) for each non-empty line. Raises ValueError/OSError only for the CA or the
    revocation file (the caller's arguments), never for a line."""
    verifier = Verifier(load_certs(ca), revocations=load_revocations(revoked) if revoked else Revocations())
    templates = {t.id: t for t in load_templates().values()}
    seen: set[str] = set()
    out = []
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            out.append((n, True, _verify_line(line, verifier, templates, seen)))
        except VerificationError as e:
            out.append((n, False, f"{e.reason}: {e.detail}"))
        except Exception as e:  # a defect some line triggers: that line fails, the others are still verified
            out.append((n, False, f"malformed: could not be checked ({type(e).__name__})"))
    return out


def _verify_line(line: str, verifier: Verifier, templates: dict, seen: set[str]) -> str:
    compact, arrived = _split_line(line)
    verified, result = verify_result(verifier, compact, arrived=arrived)
    template = templates.get(result.template_id)
    if template is None:
        raise VerificationError("unknown_template", f"template {result.template_id} is not known here")
    problems = recheck_arithmetic(result, template)
    if problems:
        raise VerificationError("checks_failed", "; ".join(problems))
    if result.submission_id in seen:
        raise VerificationError("duplicate", f"submission {result.submission_id} appears twice")
    seen.add(result.submission_id)
    text = (f"kit {result.kit_id} TPS {result.tps} {result.template_id} seq {result.seq} "
            f"status {result.status} submission {result.submission_id}")
    revoked = verifier.revocations.since(verified.signer)
    if revoked is not None:  # verify_result refused it unless it arrived before the revocation
        text += f" (from a kit revoked later, on {revoked:%Y-%m-%d %H:%M}Z)"
    return text


@click.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--ca", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="The district CA certificate (PEM).")
@click.option("--revoked", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Optional revoked.json published by the district.")
def verify(file: Path, ca: Path, revoked: Path | None) -> None:
    """Re-verify every signed result in FILE against the district CA; exit 1 if any line fails."""
    try:
        report = verify_lines(file.read_text(encoding="ascii", errors="replace").splitlines(), ca, revoked)
    except ValueError as e:  # the CA or revocation file is not what it should be
        raise click.UsageError(str(e)) from e
    bad = 0
    for n, ok, text in report:
        click.echo(f"line {n}: {'OK  ' if ok else 'FAIL'} {text}")
        bad += not ok
    click.echo(f"{len(report) - bad} verified, {bad} failed")
    if bad:
        raise SystemExit(1)
