"""The national tally: the district's tally code (tpskit.tally) over national storage, with two levels above the
regency: the province (two digits of the TPS code) and the nation."""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import Engine, select

from tpskit.national.db import national_results
from tpskit.tally import DISTRICT_LEVELS, Level, Stored, Tally, current_results, province_of, received_iso, tally_of
from tpskit.trust.tps import TpsInfo

NATIONAL_LEVELS: tuple[Level, ...] = (
    *DISTRICT_LEVELS,
    Level("province", lambda t: (province_of(t.tps), province_of(t.tps))),
    Level("nation", lambda t: ("ID", "Indonesia")),
)


def stored_results(engine: Engine) -> list[Stored]:
    t = national_results
    with engine.connect() as conn:
        rows = conn.execute(select(t.c.submission_id, t.c.kit_id, t.c.tps, t.c.template_id, t.c.status, t.c.seq,
                                   t.c.received_at, t.c.values_json)).all()
    out = [Stored(r.submission_id, r.kit_id, r.tps, r.template_id, r.status, int(r.seq), received_iso(r.received_at),
                  json.loads(r.values_json)) for r in rows]
    out.sort(key=lambda r: r.order)
    return out


def compute(engine: Engine, tps: Mapping[str, TpsInfo]) -> list[Tally]:
    return tally_of(current_results(stored_results(engine)), tps, NATIONAL_LEVELS)
