"""`tpskit verify FILE --ca CA.pem [--tally]`: re-verify an export of signed results, line by line, and
recount the tally from it.

The same checks the district makes (`tpskit.envelope.verify_result`): signature, certificate chain to
the CA, kit role, kit and TPS binding, the one rule for time (the certificate valid at the capture time
the result states and, when the line says when the district received it, at arrival too), revocation as
of arrival, and the template's checks.

FILE is the district's export (`district export --signed`: a first line describing it, then one JSON line
per result with the compact JWS under "envelope" and the district's arrival time under "received_at",
ISO 8601 with a time zone), or plain compact JWS lines. A result of a kit revoked after it arrived stays
valid and is marked as from a later-revoked kit; one that arrived after the revocation (or whose arrival
the line does not say) is refused. Every line gets a verdict: nothing in a line can stop the run. The exit
status is 0 only when every line verifies and the file holds at least one result (and, with --tally,
every current or superseded mark agrees with the rule); 1 otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from tpskit.commands import wants_json
from tpskit.envelope import (
    ResultPayload,
    Revocations,
    VerificationError,
    Verifier,
    load_revocations,
    recheck_arithmetic,
    strict_json,
    verify_result,
)
from tpskit.forms import load_templates
from tpskit.trust.certs import load_certs


@dataclass
class LineReport:
    n: int
    ok: bool
    text: str
    line: dict[str, Any] | None = None  # the export line's JSON (None: a bare compact JWS)
    result: ResultPayload | None = None  # when verified


@dataclass
class ExportReport:
    lines: list[LineReport]
    header: Any = None  # tally.ExportHeader, when the file is a district export
    header_error: str | None = None
    extra: list[str] = field(default_factory=list)

    @property
    def results(self) -> int:
        return len(self.lines)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.lines)


def _split(line: str) -> tuple[str, dict[str, Any] | None, dt.datetime | None]:
    """(compact JWS, the export line's JSON or None, arrival time or None) of one result line. Raises
    VerificationError."""
    if not line.startswith("{"):
        return line, None, None
    try:
        obj = strict_json(line)
        if not isinstance(obj, dict):
            raise TypeError("not a JSON object")
        envelope, received = obj["envelope"], obj.get("received_at")
        if not isinstance(envelope, str):
            raise TypeError("envelope is not a string")
        if received is None:
            return envelope, obj, None
        arrived = dt.datetime.fromisoformat(received)
        if arrived.tzinfo is None:
            raise ValueError("received_at has no time zone")
        return envelope, obj, arrived
    except (ValueError, KeyError, TypeError) as e:
        raise VerificationError("malformed", f"not an export line ({type(e).__name__}: {str(e)[:80]})") from e


def verify_export(lines: list[str], ca: Path, revoked: Path | None = None) -> ExportReport:
    from tpskit.district.tally import ExportError, read_header

    """Every result line verified. Raises ValueError/OSError only for the CA or the revocation file (the
    caller's arguments), never for a line."""
    verifier = Verifier(load_certs(ca), revocations=load_revocations(revoked) if revoked else Revocations())
    templates = {t.id: t for t in load_templates().values()}
    report = ExportReport([])
    first = next((i for i, s in enumerate(lines) if s.strip()), None)
    if first is not None and lines[first].lstrip().startswith('{"export"'):
        try:
            report.header = read_header(lines[first])
        except ExportError as e:
            report.header_error = str(e)
        lines = [""] * (first + 1) + lines[first + 1:]
    seen: set[str] = set()
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        rep = LineReport(n, False, "")
        try:
            compact, rep.line, arrived = _split(line)
            result, revoked_on = _verify(compact, arrived, verifier, templates, seen)
            if rep.line is not None:
                # what the line states beside the envelope (the district's export states all three)
                signed = {"tps": result.tps, "template": result.template_id, "submission_id": result.submission_id}
                said = {k: rep.line[k] for k in signed if k in rep.line}
                if said != {k: signed[k] for k in said}:
                    raise VerificationError("line_mismatch", f"the line says {said}, the signed result {signed}")
            rep.ok, rep.result = True, result
            rep.text = (f"kit {result.kit_id} TPS {result.tps} {result.template_id} seq {result.seq} "
                        f"status {result.status} submission {result.submission_id}")
            if revoked_on is not None:  # verify_result refused it unless it arrived before the revocation
                rep.text += f" (from a kit revoked later, on {revoked_on:%Y-%m-%d %H:%M}Z)"
            if rep.line is not None and rep.line.get("state"):
                rep.text += f" [{rep.line['state']}" + (f" by {rep.line['superseded_by']}]"
                                                        if rep.line.get("superseded_by") else "]")
        except VerificationError as e:
            rep.ok, rep.result, rep.text = False, None, f"{e.reason}: {e.detail}"
        except Exception as e:  # a defect some line triggers: that line fails, the others are still verified
            rep.ok, rep.result, rep.text = False, None, f"malformed: could not be checked ({type(e).__name__})"
        report.lines.append(rep)
    return report


def _verify(compact: str, arrived: dt.datetime | None, verifier: Verifier, templates: dict, seen: set[str]
            ) -> tuple[ResultPayload, dt.datetime | None]:
    """The verified result, and when its kit was revoked (after it arrived) or None."""
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
    return result, verifier.revocations.since(verified.signer)


def verify_lines(lines: list[str], ca: Path, revoked: Path | None = None) -> list[tuple[int, bool, str]]:
    """(line number, ok, text) for every result line."""
    return [(r.n, r.ok, r.text) for r in verify_export(lines, ca, revoked).lines]


def recount_export(report: ExportReport) -> Any:
    """The observer's tally (tally.Recount) from the verified lines of a district export."""
    from tpskit.district.tally import Stored, recount

    verified = []
    for r in report.lines:
        if r.ok and r.line is not None and r.result is not None:
            res = r.result
            verified.append((r.n, r.line, Stored(res.submission_id, res.kit_id, res.tps, res.template_id, res.status,
                                                 res.seq, str(r.line.get("received_at")), res.values())))
    return recount(report.header, verified)


def per_tps(report: ExportReport) -> list[dict[str, Any]]:
    """One row per (TPS, template): lines verified and failed, and the current submission and its status."""
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"verified": 0, "failed": 0, "superseded": 0, "current": None, "status": None})
    for r in report.lines:
        if r.result is None:  # not verified: only the line's own (unsigned) words say which TPS
            rows[(str((r.line or {}).get("tps") or "?"), str((r.line or {}).get("template") or "?"))]["failed"] += 1
            continue
        row = rows[(r.result.tps, r.result.template_id)]
        row["verified"] += 1
        if r.line is not None and r.line.get("state") == "superseded":
            row["superseded"] += 1
        else:
            row["current"], row["status"] = r.result.submission_id, r.result.status
    return [{"tps": k[0], "template": k[1], **v} for k, v in sorted(rows.items())]


@click.command()
@click.argument("file", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--ca", type=click.Path(path_type=Path, exists=True, dir_okay=False), required=True,
              help="The district CA certificate (PEM).")
@click.option("--revoked", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="Optional revoked.json published by the district.")
@click.option("--tally", "show_tally", is_flag=True,
              help="Also recount the tally from the export's verified current results (needs the district's "
                   "export, whose first line lists the TPS).")
@click.option("--tally-json", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="With --tally: write the recount as JSON, in the form of `district tally --json`.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines (the default when stdout is not a terminal).")
@click.option("--table", "as_table", is_flag=True, help="Text for a person (the default at a terminal).")
def verify(file: Path, ca: Path, revoked: Path | None, show_tally: bool, tally_json: Path | None, as_json: bool,
           as_table: bool) -> None:
    """Re-verify every signed result in FILE against the district CA; with --tally, recount the district
    tally from it. Exits 1 if any line fails, if FILE holds no result, or if a current/superseded mark
    disagrees with the rule."""
    from tpskit.district import tally as t

    as_json = wants_json(as_json, as_table)
    if tally_json is not None:
        show_tally = True
    try:
        report = verify_export(file.read_text(encoding="ascii", errors="replace").splitlines(), ca, revoked)
    except ValueError as e:  # the CA or revocation file is not what it should be
        raise click.UsageError(str(e)) from e
    problems = []
    if report.header_error:
        problems.append(f"header: {report.header_error}")
    if report.results == 0:
        problems.append("the file holds no signed result")
    counted = None
    if show_tally:
        if report.header is None:
            problems.append("--tally needs the district's export (`district export --signed`), whose first line "
                            "lists the TPS; this file has none")
        else:
            counted = recount_export(report)
            problems += counted.problems
            if report.header.results != report.results:
                problems.append(f"the export's first line says {report.header.results} results, the file holds "
                                f"{report.results}")
    summary = {"verified": report.results - report.failed, "failed": report.failed, "problems": problems}
    if as_json:
        for r in report.lines:
            click.echo(json.dumps({"line": r.n, "ok": r.ok, "detail": r.text}))
        for row in per_tps(report):
            click.echo(json.dumps({"per_tps": row}))
        if counted is not None:
            click.echo(json.dumps({"tally": [x.to_json() for x in counted.tallies]}, ensure_ascii=False))
        click.echo(json.dumps({"summary": summary}))
    else:
        for r in report.lines:
            click.echo(f"line {r.n}: {'OK  ' if r.ok else 'FAIL'} {r.text}")
        rows = per_tps(report)
        if rows:
            click.echo("\nper TPS:")
            head = ["tps", "template", "verified", "failed", "superseded", "current", "status"]
            table = [[str(row[h]) if row[h] is not None else "-" for h in head] for row in rows]
            widths = [max(len(x) for x in col) for col in zip(head, *table, strict=False)]
            for cells in [head, *table]:
                click.echo("  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)).rstrip())
        if counted is not None:
            click.echo("\nrecount from the export (current results only):\n" + t.render_text(counted.tallies),
                       nl=False)
        for p in problems:
            click.echo(f"PROBLEM: {p}")
        click.echo(f"{summary['verified']} verified, {summary['failed']} failed")
    if counted is not None and tally_json is not None:
        t.write_json(counted.tallies, tally_json)
    if report.failed or problems:
        raise SystemExit(1)
