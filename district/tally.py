"""Tally and exports from the district database, and the observer's recount from an export.

The rule, one for the district and the observer: for each (TPS, form template) the result received last
counts (a later submission from the TPS is a correction); received last means the latest `received_at`
(the district's clock, to the microsecond as the export writes it), then the higher sequence number, then
the greater submission id. Results with status `ok` go into the totals; `review` results count as
reported and as in review, and stay out of the totals until a corrected `ok` result arrives.

The signed export (`district export --signed`) is JSON lines: a first line describing the export (the
district, its TPS list with registered voters and area names, the rule), then one line per accepted
result in arrival order: the kit's compact JWS exactly as received, when the district received it, and
whether it is the TPS's `current` result or `superseded` (by which submission). `recount` rebuilds the
tally from such a file alone, and checks every `current`/`superseded` mark against the rule.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from tpskit.district.db import results
from tpskit.tally import (  # noqa: F401  (the rule and totals live in the core; re-exported)
    Area,
    Stored,
    Tally,
    current_results,
    received_iso,
    render_text,
    successors,
    tally_of,
)
from tpskit.trust.tps import TpsInfo

EXPORT_FORMAT = "tpskit/signed-results"
EXPORT_VERSION = 1
RULE = ("for each TPS and form template the result received last counts (latest received_at, then the higher "
        "seq, then the greater submission_id); status ok results are summed, review results are counted as "
        "reported and in review")

def stored_results(engine: Engine, *, envelopes: bool = False) -> list[Stored]:
    """Every accepted result in the rule's order (arrival)."""
    cols = [results.c.submission_id, results.c.kit_id, results.c.tps, results.c.template_id, results.c.status,
            results.c.seq, results.c.received_at, results.c.values_json]
    if envelopes:
        cols.append(results.c.envelope)
    with engine.connect() as conn:
        rows = conn.execute(select(*cols)).all()
    out = [Stored(r.submission_id, r.kit_id, r.tps, r.template_id, r.status, int(r.seq), received_iso(r.received_at),
                  json.loads(r.values_json), r.envelope if envelopes else "") for r in rows]
    out.sort(key=lambda r: r.order)
    return out


def latest_results(engine: Engine) -> dict[tuple[str, str], dict[str, Any]]:
    return {k: {"status": r.status, "values": r.values} for k, r in current_results(stored_results(engine)).items()}


def compute(engine: Engine, tps: dict[str, TpsInfo]) -> list[Tally]:
    return tally_of(current_results(stored_results(engine)), tps)


def write_csv(tallies: list[Tally], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["template", "level", "code", "name", "tps_total", "reported", "in_review", "field", "votes"])
        for t in tallies:
            for a in t.areas:
                for fname in t.fields:
                    w.writerow([t.template_id, a.level, a.code, a.name, a.tps_total, a.reported, a.in_review,
                                fname, a.totals[fname]])


def write_json(tallies: list[Tally], path: Path) -> None:
    Path(path).write_text(json.dumps([t.to_json() for t in tallies], indent=2, ensure_ascii=False))


def export_signed(engine: Engine, path: Path, *, district: str, tps: Mapping[str, TpsInfo]) -> int:
    """The observer's export (see the module's docstring); returns the number of results written."""
    items = stored_results(engine, envelopes=True)
    nxt = successors(items)
    header = {"export": EXPORT_FORMAT, "version": EXPORT_VERSION, "district": district,
              "exported_at": received_iso(dt.datetime.now(dt.UTC).timestamp()), "results": len(items),
              "rule": RULE,
              "tps": [{"tps": t.tps, "registered_voters": t.registered_voters, "village": t.village,
                       "kecamatan": t.kecamatan, "regency": t.regency} for t in tps.values()]}
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    with open(tmp, "w", encoding="ascii") as f:
        f.write(json.dumps(header, ensure_ascii=True, separators=(",", ":")) + "\n")
        for r in items:
            f.write(json.dumps(export_line(r, nxt[r.submission_id]), separators=(",", ":")) + "\n")
    tmp.replace(path)
    return len(items)


def export_line(r: Stored, superseded_by: str | None) -> dict[str, Any]:
    return {"tps": r.tps, "template": r.template_id, "submission_id": r.submission_id,
            "received_at": r.received_at, "state": "superseded" if superseded_by else "current",
            "superseded_by": superseded_by, "envelope": r.envelope}


# ------------------------------------------------------------------------------------------ observer side
class ExportError(ValueError):
    """The file is not a signed-results export (its first line does not describe one)."""


@dataclass(frozen=True)
class ExportHeader:
    district: str
    exported_at: str
    results: int
    tps: dict[str, TpsInfo]


def read_header(line: str) -> ExportHeader:
    """The export's first line. Raises ExportError naming what is wrong."""
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise ExportError(f"the first line is not JSON ({e})") from None
    except RecursionError:  # `tpskit verify` raised it on a first line nested thousands deep
        raise ExportError("the first line is JSON nested too deep") from None
    if not isinstance(obj, dict) or obj.get("export") != EXPORT_FORMAT:
        raise ExportError(f"the first line does not describe a {EXPORT_FORMAT} export "
                          "(made by `tpskit district export --signed`)")
    if obj.get("version") != EXPORT_VERSION:
        raise ExportError(f"export version {obj.get('version')!r}; this tpskit reads version {EXPORT_VERSION}")
    try:
        tps = {}
        for t in obj["tps"]:
            info = TpsInfo(str(t["tps"]), int(t["registered_voters"]), str(t["village"]), str(t["kecamatan"]),
                           str(t["regency"]))
            tps[info.tps] = info
        return ExportHeader(str(obj["district"]), str(obj["exported_at"]), int(obj["results"]), tps)
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"the first line lacks or misstates {e}") from None


@dataclass(frozen=True)
class Recount:
    tallies: list[Tally]
    # Marks that disagree with the rule, e.g. "line 4: marked current, but submission X superseded it".
    problems: list[str]


def recount(header: ExportHeader, lines: Iterable[tuple[int, Mapping[str, Any], Stored]]) -> Recount:
    """The tally from verified export lines alone: (line number, the line's JSON, the result as its signed
    payload says, with the line's received_at). Every mark is checked against the rule."""
    lines = list(lines)
    nxt = successors(r for _, _, r in lines)
    problems = []
    for n, obj, r in lines:
        want = nxt[r.submission_id]
        state, by = obj.get("state"), obj.get("superseded_by")
        if want is None and (state, by) != ("current", None):
            problems.append(f"line {n}: marked {state} (by {by}), but it is the current result of TPS {r.tps}")
        elif want is not None and (state, by) != ("superseded", want):
            problems.append(f"line {n}: marked {state}" + (f" by {by}" if by else "")
                            + f", but submission {want} superseded it")
        if r.tps not in header.tps:
            problems.append(f"line {n}: TPS {r.tps} is not in the export's TPS list")
    current = {(r.tps, r.template_id): r for _, _, r in lines if nxt[r.submission_id] is None}
    return Recount(tally_of(current, header.tps), problems)
