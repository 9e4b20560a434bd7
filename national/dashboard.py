"""The national tally as a read-only web page, over national storage (`tpskit national dashboard`).

The district dashboard shows one regency; this page shows the same tally code one level higher
(tpskit.national.tally: TPS, village, kecamatan, regency, province, nation) for every district the
national configuration trusts. `/` is the table of one level (the nation first, then the areas of the
level chosen), `/tally.json` the same as JSON, `/health` when it was last read.

Nothing here writes. The tally is recomputed from the database at most every `poll_s` seconds, whoever
asks: a page reload during the peak reads national storage once per interval, not once per visitor.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tpskit.national.config import NationalConfig
from tpskit.national.tally import NATIONAL_LEVELS, compute
from tpskit.tally import Tally
from tpskit.trust.tps import TpsInfo, read_tps_csv
from tpskit.web.server import CORE_STATIC_URL, PageServer, core_static

PAGES = Path(__file__).resolve().parent / "pages"
#: The levels a visitor can choose, widest first.
LEVELS = tuple(lv.name for lv in reversed(NATIONAL_LEVELS))


def trusted_tps(cfg: NationalConfig) -> dict[str, TpsInfo]:
    """Every TPS of every district the configuration trusts."""
    return {code: info for d in cfg.districts for code, info in read_tps_csv(d.tps_list).items()}


class NationalTally:
    """The last tally computed, recomputed when older than `poll_s` (one reader at a time)."""

    def __init__(self, engine: Engine, tps: dict[str, TpsInfo], poll_s: float = 5.0):
        self.engine, self.tps, self.poll_s = engine, tps, poll_s
        self._lock = threading.Lock()
        self._tallies: list[Tally] = []
        self._read_at = 0.0  # time.time() of the last read; 0: never

    def get(self) -> tuple[list[Tally], float]:
        with self._lock:
            if time.time() - self._read_at >= self.poll_s:
                self._tallies = compute(self.engine, self.tps)
                self._read_at = time.time()
            return self._tallies, self._read_at


def table(tallies: list[Tally], template: str | None, level: str) -> dict[str, Any]:
    """One template's rows: the nation, then every area of `level`. Votes are None (never 0) for an area
    with no TPS counted."""
    t = next((x for x in tallies if x.template_id == template), tallies[0] if tallies else None)
    if t is None:
        return {"template": None, "fields": [], "rows": []}
    rows = []
    for a in t.areas:
        if a.level != "nation" and a.level != level:
            continue
        counted = a.reported - a.in_review
        rows.append({"level": a.level, "code": a.code, "name": a.name, "tps_total": a.tps_total,
                     "counted": counted, "in_review": a.in_review, "not_reported": a.tps_total - a.reported,
                     "votes": {f: (a.totals[f] if counted else None) for f in t.fields}})
    return {"template": t.template_id, "fields": t.fields, "rows": rows}


def build_app(data: NationalTally) -> Starlette:
    env = Environment(loader=FileSystemLoader(PAGES), autoescape=select_autoescape(["html"]))

    def choice(request: Request) -> tuple[str | None, str]:
        level = request.query_params.get("level") or "province"
        return request.query_params.get("template") or None, level if level in LEVELS else "province"

    def home(request: Request) -> Response:  # sync: Starlette runs it on a thread (the read blocks)
        tallies, read_at = data.get()
        template, level = choice(request)
        html = env.get_template("tally.html").render(
            t=table(tallies, template, level), templates=[x.template_id for x in tallies], level=level,
            levels=LEVELS, as_of=_iso(read_at), core_static=CORE_STATIC_URL)
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def as_json(request: Request) -> Response:
        tallies, read_at = data.get()
        template, level = choice(request)
        return JSONResponse({"as_of": _iso(read_at), "level": level, **table(tallies, template, level)},
                            headers={"Cache-Control": "no-store"})

    def health(request: Request) -> Response:
        return JSONResponse({"as_of": _iso(data.get()[1]), "tps": len(data.tps)})

    return Starlette(routes=[Route("/", home), Route("/tally.json", as_json), Route("/health", health),
                             core_static()])


def _iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def national_dashboard(engine: Engine, cfg: NationalConfig, host: str, port: int, poll_s: float = 5.0) -> PageServer:
    """The page server (not started) of the national tally over `engine`."""
    return PageServer(build_app(NationalTally(engine, trusted_tps(cfg), poll_s)), host, port)
