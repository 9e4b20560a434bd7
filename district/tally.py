"""Tally and exports from the district database.

For each (TPS, template) the latest accepted result counts (a later submission from the TPS is a
correction). Results with status `ok` go into the totals; `review` results count as reported and as
in review, and stay out of the totals until a corrected `ok` result arrives.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from tpskit.district.db import results
from tpskit.provisioning.district import TpsInfo

VOTE_FIELDS_EXTRA = ("suara_sah", "suara_tidak_sah", "suara_total")


def _vote_fields(names: list[str]) -> list[str]:
    return [n for n in names if n.startswith("paslon_")] + [n for n in VOTE_FIELDS_EXTRA if n in names]


@dataclass
class Area:
    level: str
    code: str
    name: str
    tps_total: int = 0
    reported: int = 0
    in_review: int = 0
    totals: dict[str, int] = field(default_factory=dict)


@dataclass
class Tally:
    template_id: str
    fields: list[str]
    areas: list[Area]

    def to_json(self) -> dict[str, Any]:
        return {"template": self.template_id, "fields": self.fields,
                "areas": [a.__dict__ for a in self.areas]}


def latest_results(engine: Engine) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    with engine.connect() as conn:
        rows = conn.execute(select(results.c.tps, results.c.template_id, results.c.status, results.c.values_json,
                                   results.c.received_at).order_by(results.c.received_at)).all()
    for r in rows:
        out[(r.tps, r.template_id)] = {"status": r.status, "values": json.loads(r.values_json)}
    return out


def compute(engine: Engine, tps: dict[str, TpsInfo]) -> list[Tally]:
    latest = latest_results(engine)
    by_template: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (code, template), res in latest.items():
        by_template[template][code] = res
    tallies = []
    for template, per_tps in sorted(by_template.items()):
        names = list(next(iter(per_tps.values()))["values"])
        fields = _vote_fields(names)
        areas: dict[tuple[str, str], Area] = {}

        def area(level: str, code: str, name: str, areas=areas, fields=fields) -> Area:  # type: ignore[no-untyped-def]
            key = (level, code)
            if key not in areas:
                areas[key] = Area(level, code, name, totals=dict.fromkeys(fields, 0))
            return areas[key]

        for info in tps.values():
            units = [area("tps", info.tps, info.tps), area("village", info.tps[:10], info.village),
                     area("kecamatan", info.tps[:6], info.kecamatan), area("regency", info.tps[:4], info.regency)]
            res = per_tps.get(info.tps)
            for u in units:
                u.tps_total += 1
                if res is None:
                    continue
                u.reported += 1
                if res["status"] == "review":
                    u.in_review += 1
                    continue
                for f in fields:
                    u.totals[f] += int(res["values"].get(f) or 0)
        order = {"regency": 0, "kecamatan": 1, "village": 2, "tps": 3}
        tallies.append(Tally(template, fields, sorted(areas.values(), key=lambda a: (order[a.level], a.code))))
    return tallies


def render_text(tallies: list[Tally]) -> str:
    if not tallies:
        return "no accepted results yet\n"
    out = io.StringIO()
    for t in tallies:
        out.write(f"template {t.template_id}\n")
        head = ["level", "code", "name", "reported", "review", *t.fields]
        rows = [[a.level, a.code, a.name, f"{a.reported}/{a.tps_total}", str(a.in_review)]
                + [str(a.totals[f]) for f in t.fields] for a in t.areas]
        widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=False)]
        for r in [head, *rows]:
            out.write("  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)).rstrip() + "\n")
        out.write("\n")
    return out.getvalue()


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


def export_signed(engine: Engine, path: Path) -> int:
    """Every accepted envelope exactly as received, one compact JWS per line, in arrival order."""
    n = 0
    with engine.connect() as conn, open(path, "w", encoding="ascii") as f:
        for (env,) in conn.execute(select(results.c.envelope).order_by(results.c.received_at,
                                                                       results.c.submission_id)):
            f.write(env + "\n")
            n += 1
    return n
