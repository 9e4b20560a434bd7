"""The tally rule and the totals, pure (no database): one code for the district, the observer's recount and the
national tier, which sums the same way one level higher (province and nation above the regency).

The rule: for each (TPS, form template) the result received last counts (a later submission from the TPS is a
correction); received last means the latest `received_at` (the district's clock, to the microsecond), then the
higher sequence number, then the greater submission id. Results with status `ok` go into the totals; `review`
results count as reported and as in review, and stay out of the totals until a corrected `ok` result arrives.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tpskit.trust.tps import TpsInfo

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


def received_iso(at: float) -> str:
    """The district's arrival time as the export writes it: ISO 8601 UTC to the microsecond."""
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Stored:
    """One accepted result, as the tally and the export see it."""

    submission_id: str
    kit_id: str
    tps: str
    template_id: str
    status: str
    seq: int
    received_at: str  # received_iso(...)
    values: dict[str, int | None]
    envelope: str = ""

    @property
    def order(self) -> tuple[str, int, str]:
        return (self.received_at, self.seq, self.submission_id)


def successors(items: Iterable[Stored]) -> dict[str, str | None]:
    """The rule: submission id -> the submission that superseded it (the next one received for the same
    TPS and template), or None for the current one."""
    by_key: dict[tuple[str, str], list[Stored]] = defaultdict(list)
    for r in items:
        by_key[(r.tps, r.template_id)].append(r)
    out: dict[str, str | None] = {}
    for group in by_key.values():
        group.sort(key=lambda r: r.order)
        for a, b in itertools.pairwise(group):
            out[a.submission_id] = b.submission_id
        out[group[-1].submission_id] = None
    return out


@dataclass(frozen=True)
class Level:
    """One level of areas: its name and, for a TPS, (area code, area name)."""

    name: str
    of: Callable[[TpsInfo], tuple[str, str]]


#: The district's levels, narrowest first: TPS, village (10 digits), kecamatan (6), regency (4).
DISTRICT_LEVELS: tuple[Level, ...] = (
    Level("tps", lambda t: (t.tps, t.tps)),
    Level("village", lambda t: (t.tps[:10], t.village)),
    Level("kecamatan", lambda t: (t.tps[:6], t.kecamatan)),
    Level("regency", lambda t: (t.tps[:4], t.regency)),
)


def province_of(tps: str) -> str:
    """The province of a TPS: the first two digits of its code (Kemendagri area codes)."""
    return tps[:2]


def current_results(items: Iterable[Stored]) -> dict[tuple[str, str], Stored]:
    """(TPS, template) -> the result that counts."""
    items = list(items)
    nxt = successors(items)
    return {(r.tps, r.template_id): r for r in items if nxt[r.submission_id] is None}


def tally_of(current: Mapping[tuple[str, str], Stored], tps: Mapping[str, TpsInfo],
             levels: tuple[Level, ...] | None = None) -> list[Tally]:
    """Totals per area of the current results, one Tally per template: per TPS, village, kecamatan and
    regency (`DISTRICT_LEVELS`), or the levels given (the national tier adds province and nation)."""
    levels = levels or DISTRICT_LEVELS
    by_template: dict[str, dict[str, Stored]] = defaultdict(dict)
    for (code, template), res in current.items():
        by_template[template][code] = res
    tallies = []
    for template, per_tps in sorted(by_template.items()):
        first = min(per_tps.values(), key=lambda r: r.order)  # every result of a template has its fields
        fields = _vote_fields(list(first.values))
        areas: dict[tuple[str, str], Area] = {}

        def area(level: str, code: str, name: str, areas=areas, fields=fields) -> Area:  # type: ignore[no-untyped-def]
            key = (level, code)
            if key not in areas:
                areas[key] = Area(level, code, name, totals=dict.fromkeys(fields, 0))
            return areas[key]

        for info in tps.values():
            units = [area(lv.name, *lv.of(info)) for lv in levels]
            res = per_tps.get(info.tps)
            for u in units:
                u.tps_total += 1
                if res is None:
                    continue
                u.reported += 1
                if res.status == "review":
                    u.in_review += 1
                    continue
                for f in fields:
                    u.totals[f] += int(res.values.get(f) or 0)
        order = {lv.name: i for i, lv in enumerate(reversed(levels))}  # the widest area first
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


