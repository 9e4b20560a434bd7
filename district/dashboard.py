"""The district's operations dashboard: read-only pages over the district database, live as results arrive.

Served by `tpskit district serve` ([dashboard], loopback by default) or on its own by `tpskit district
dashboard`. Pages: `/` per-TPS status with counts per kecamatan and village, `/tally`, `/refusals`,
`/tps/CODE` (the TPS's submissions, superseded ones marked), `/result/ID` (the evidence photo, the numbers
drawn on the rectified sheet reread by the kit's reader, signature and certificate, officer corrections).
Every table downloads as CSV and JSON under `/download/`. `/events` is the server-sent event stream that
tells open pages to refresh (tpskit/web/static/live.js).

Nothing here writes to the database. A thread polls it every `[dashboard] poll_s` (a count and a max:
cheap) and reads a new `Snapshot` only when something changed; every page is drawn from the last one.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from math import ceil
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from tpskit.district.config import DistrictConfig
from tpskit.district.db import evidence, open_db, results
from tpskit.district.reread import Rereader
from tpskit.district.status import (
    STATUS_SHORT,
    STATUS_WORDS,
    STATUSES,
    Snapshot,
    SnapshotReader,
    change_token,
    filter_rows,
    reason_words,
    to_csv,
    tps_history,
)
from tpskit.envelope import VerificationError, Verifier, load_revocations
from tpskit.events import Event, log_event, register
from tpskit.forms import Template, load_templates
from tpskit.trust.certs import load_certs
from tpskit.trust.tps import TpsInfo, read_tps_csv
from tpskit.web.server import CORE_STATIC_URL, PageServer, core_static
from tpskit.web.sse import Version, sse_response

log = logging.getLogger("tpskit.district.dashboard")

register(
    Event("district.dashboard", "info", "The dashboard is served at this address (read-only)."),
    Event("district.dashboard_failed", "error", "The dashboard could not be served (e.g. its port is taken); the "
          "service keeps ingesting without it."),
)

PAGES = Path(__file__).resolve().parent / "pages"
PAGE_SIZE = 100
LEVELS = ("regency", "kecamatan", "village", "tps")


class DashboardData:
    """The last snapshot, refreshed by a polling thread; `version` bumps when it changes."""

    def __init__(self, cfg: DistrictConfig, engine: Engine | None = None):
        self.cfg = cfg
        self.engine = engine or open_db(cfg.database.url)
        self.tps: dict[str, TpsInfo] = read_tps_csv(cfg.district.tps_list)
        self.templates: dict[str, Template] = {t.id: t for t in load_templates(cfg.district.templates_dir).values()}
        self.version = Version()
        self.rereader = Rereader(cfg.reread_cache, cfg.dashboard.reread_timeout_s, on_done=self.version.bump)
        self.reader = SnapshotReader(self.engine, self.tps, cfg.district.revocations)
        self._snap = self.reader.read()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_refresh_s = 0.0

    @property
    def snap(self) -> Snapshot:
        return self._snap

    def refresh(self) -> bool:
        """Read a new snapshot when the database changed; True when it did."""
        token = change_token(self.engine, self.cfg.district.revocations)
        if token == self._snap.token:
            return False
        t0 = time.perf_counter()
        self._snap = self.reader.read()
        self.last_refresh_s = time.perf_counter() - t0
        self.version.bump()
        return True

    def start(self) -> DashboardData:
        self._thread = threading.Thread(target=self._poll, name="dashboard-poll", daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.cfg.dashboard.poll_s):
            try:
                self.refresh()
            except Exception as e:  # a database hiccup: the pages show the last snapshot, and the next poll retries
                log.debug("dashboard poll failed: %r", e)

    def stop(self) -> None:
        self._stop.set()
        self.version.closing = True
        if self._thread is not None:
            self._thread.join(5)
        self.rereader.close()
        self.engine.dispose()


# ------------------------------------------------------------------------------------------------ helpers
def _fmt_time(iso: str | None) -> str:
    """`2026-12-01T18:23:30.601000Z` -> `2026-12-01 18:23:30 UTC`."""
    return f"{iso[:10]} {iso[11:19]} UTC" if iso else ""


def _arg(request: Request, name: str) -> str | None:
    v = request.query_params.get(name, "").strip()
    return v or None


def _page_of(items: list[Any], request: Request) -> tuple[list[Any], dict[str, Any]]:
    try:
        page = max(1, int(request.query_params.get("page", "1")))
    except ValueError:
        page = 1
    pages = max(1, ceil(len(items) / PAGE_SIZE))
    page = min(page, pages)
    start = (page - 1) * PAGE_SIZE
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "partial")}

    def link(p: int) -> str:
        return "?" + urlencode({**params, "page": p})

    return items[start:start + PAGE_SIZE], {"page": page, "pages": pages, "first": start + 1 if items else 0,
                                            "last": min(start + PAGE_SIZE, len(items)), "total": len(items),
                                            "prev": link(page - 1) if page > 1 else None,
                                            "next": link(page + 1) if page < pages else None}


def _query(request: Request, **extra: str) -> str:
    params = {k: v for k, v in request.query_params.items() if k not in ("page", "partial") and v}
    params.update(extra)
    return ("?" + urlencode(params)) if params else ""


def tally_rows(snap: Snapshot, template: str | None, level: str | None, kecamatan: str | None) -> dict[str, Any]:
    """The tally table of one template: per area, the candidates' totals of the TPS counted, and how many TPS
    are in review or not reported (never shown as zero votes)."""
    template = template or snap.default_template
    tally = next((t for t in snap.tallies() if t.template_id == template), None)
    if tally is None:
        return {"template": template, "fields": [], "rows": []}
    per_tps = snap.current.get(template or "", {})
    rows = []
    for a in tally.areas:
        if level and a.level != level:
            continue
        if kecamatan and not (a.code.startswith(kecamatan) or kecamatan.startswith(a.code)):
            continue
        counted = a.reported - a.in_review
        row: dict[str, Any] = {"level": a.level, "code": a.code, "name": a.name, "tps_total": a.tps_total,
                               "counted": counted, "in_review": a.in_review,
                               "not_reported": a.tps_total - a.reported}
        if a.level == "tps":
            cur = per_tps.get(a.code)
            row["state"] = "not_reported" if cur is None else ("review" if a.in_review else "counted")
            row["name"] = f"{snap.tps[a.code].village}" if a.code in snap.tps else a.name
        else:
            row["state"] = "counted" if counted else ("review" if a.in_review else "not_reported")
        # None (not 0) when no TPS of the area is counted: "no results", "in review".
        row["votes"] = {f: (a.totals[f] if counted else None) for f in tally.fields}
        rows.append(row)
    return {"template": template, "fields": tally.fields, "rows": rows}


def _flat_tally(t: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for r in t["rows"]:
        out.append({"template": t["template"], "level": r["level"], "code": r["code"], "name": r["name"],
                    "tps_total": r["tps_total"], "tps_counted": r["counted"], "tps_in_review": r["in_review"],
                    "tps_not_reported": r["not_reported"], "state": r["state"], **r["votes"]})
    return out


def certificate_status(cfg: DistrictConfig, compact: str, received_at: str) -> dict[str, Any]:
    """The result's signature and kit certificate checked again now, against the district CA, with the
    revocation list as of its arrival (a later revocation is shown, and does not undo an earlier arrival)."""
    arrived = dt.datetime.fromisoformat(received_at.replace("Z", "+00:00"))
    verifier = Verifier(load_certs(cfg.identity.ca))
    revoked_since = None
    try:
        if cfg.district.revocations.exists():
            verifier.revocations = load_revocations(cfg.district.revocations)
    except ValueError:
        pass
    out: dict[str, Any] = {"valid": False, "problem": None}
    try:
        v = verifier.verify(compact, role="kit", arrived=arrived, check_validity=False)
    except VerificationError as e:
        out["problem"] = f"{e.reason}: {e.detail}"
        return out
    s = v.signer
    revoked_since = verifier.revocations.since(s)
    out.update(valid=True, kit=s.common_name, serial=str(s.serial), not_before=s.not_before.isoformat(),
               not_after=s.not_after.isoformat(), tps=s.tps,
               valid_at_arrival=s.valid_at(arrived),
               revoked_since=revoked_since.isoformat() if revoked_since else None)
    return out


def overlay(template: Template | None, reading: dict[str, Any] | None, signed: dict[str, Any],
            sheet_size: tuple[int, int] | None) -> dict[str, Any] | None:
    """Where to draw each signed value on the rectified sheet the reader drew (template millimetres scaled
    to the image), and whether the reread agrees with it."""
    if template is None or reading is None or sheet_size is None or reading.get("status") == "rejected":
        return None
    w, h = sheet_size
    ppm = h / template.page.height_mm  # the reader's drawing adds a margin to the right, not below
    reread = reading.get("fields", {})
    marks = []
    for f in template.fields:
        entry = signed.get("fields", {}).get(f.name)
        if entry is None or not f.boxes:
            continue
        x0 = min(b.x_mm for b in f.boxes) * ppm
        y0 = min(b.y_mm for b in f.boxes) * ppm
        x1 = max(b.x_mm + b.w_mm for b in f.boxes) * ppm
        y1 = max(b.y_mm + b.h_mm for b in f.boxes) * ppm
        again = (reread.get(f.name) or {}).get("value")
        value = entry.get("value")
        kind = "corrected" if entry.get("status") == "corrected" else ("agree" if again == value else "differ")
        marks.append({"name": f.name, "label": f.label, "x": round(x0, 1), "y": round(y0, 1),
                      "w": round(x1 - x0, 1), "h": round(y1 - y0, 1), "tx": round(x1 + 4, 1),
                      "ty": round(y1 - 2, 1), "value": "?" if value is None else value, "reread": again,
                      "kind": kind})
    return {"width": w, "height": h, "marks": marks}


def _png_size(path: Path) -> tuple[int, int] | None:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


# ------------------------------------------------------------------------------------------------ the app
def build_app(data: DashboardData) -> Starlette:
    cfg = data.cfg
    env = Environment(loader=FileSystemLoader(PAGES), autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.globals.update(STATUS_WORDS=STATUS_WORDS, STATUS_SHORT=STATUS_SHORT, STATUSES=STATUSES,
                       district=cfg.district.id, core_static=CORE_STATIC_URL, fmt_time=_fmt_time,
                       reason_words=reason_words)

    def page(request: Request, name: str, title: str, **ctx: Any) -> HTMLResponse:
        partial = request.query_params.get("partial") == "1"
        snap = data.snap
        body = env.get_template(name).render(request=request, title=title, partial=partial, snap=snap,
                                             version=data.version.n, as_of=_fmt_time(snap.read_at),
                                             path=request.url.path, query=_query(request), **ctx)
        return HTMLResponse(body, headers={"Cache-Control": "no-store"})

    def status_rows(request: Request) -> tuple[list[Any], str | None]:
        template = _arg(request, "template")
        status = _arg(request, "status")
        rows = filter_rows(data.snap.rows(template), status=status if status in STATUSES else None,
                           kecamatan=_arg(request, "kecamatan"), village=_arg(request, "village"),
                           q=_arg(request, "q"))
        return rows, template

    def areas_of(request: Request, *, villages: bool = True) -> list[Any]:
        """`villages=False`: the villages only under a chosen kecamatan (the page stays short for 2,000 TPS)."""
        kec = _arg(request, "kecamatan")
        vil = _arg(request, "village")
        out = []
        for a in data.snap.areas(_arg(request, "template")):
            if kec and a.code[:6] != kec:
                continue
            if a.level == "village" and not villages and not kec:
                continue
            if vil and a.level == "village" and a.code != vil:
                continue
            out.append(a)
        return out

    async def home(request: Request) -> Response:
        rows, template = status_rows(request)
        shown, pager = _page_of(rows, request)
        snap = data.snap
        kecamatans = sorted({(c[:6], i.kecamatan) for c, i in snap.tps.items()})
        kec = _arg(request, "kecamatan")
        villages = sorted({(c[:10], i.village) for c, i in snap.tps.items() if not kec or c[:6] == kec})
        counts = {s: 0 for s in STATUSES}
        for r in rows:
            counts[r.status] += 1
        return page(request, "status.html", "Status", rows=shown, pager=pager, counts=counts,
                    areas=areas_of(request, villages=False),
                    kecamatans=kecamatans, villages=villages, template=template or snap.default_template,
                    f={k: _arg(request, k) or "" for k in ("status", "kecamatan", "village", "q")})

    async def tally_page(request: Request) -> Response:
        level = _arg(request, "level") or "kecamatan"
        t = tally_rows(data.snap, _arg(request, "template"), level if level in LEVELS else None,
                       _arg(request, "kecamatan"))
        shown, pager = _page_of(t["rows"], request)
        kecamatans = sorted({(c[:6], i.kecamatan) for c, i in data.snap.tps.items()})
        labels = {}
        tmpl = data.templates.get(t["template"] or "")
        if tmpl is not None:
            labels = {f.name: f.label for f in tmpl.fields}
        return page(request, "tally.html", "Tally", t=t, rows=shown, pager=pager, level=level, labels=labels,
                    kecamatans=kecamatans, f={"kecamatan": _arg(request, "kecamatan") or "",
                                               "template": t["template"] or ""})

    def refusal_rows(request: Request) -> list[Any]:
        tps, reason, kit = _arg(request, "tps"), _arg(request, "reason"), _arg(request, "kit")
        return [r for r in data.snap.refusals if (not tps or r.tps == tps) and (not reason or r.reason == reason)
                and (not kit or r.kit_id == kit)]

    async def refusals_page(request: Request) -> Response:
        rows = refusal_rows(request)
        shown, pager = _page_of(rows, request)
        reasons = sorted({r.reason for r in data.snap.refusals})
        return page(request, "refusals.html", "Refusals", rows=shown, pager=pager, reasons=reasons,
                    f={k: _arg(request, k) or "" for k in ("tps", "reason", "kit")})

    async def tps_page(request: Request) -> Response:
        code = request.path_params["code"]
        info = data.snap.tps.get(code)
        if info is None:
            return PlainTextResponse(f"TPS {code} is not in this district's list", status_code=404)
        history = tps_history(data.engine, code)
        row = next((r for r in data.snap.rows() if r.info.tps == code), None)
        refused = [r for r in data.snap.refusals if r.tps == code]
        return page(request, "tps.html", f"TPS {code}", info=info, history=history, row=row, refused=refused)

    def find_result(sid: str) -> tuple[Any, list[Any]] | None:
        with data.engine.connect() as conn:
            tps = conn.execute(select(results.c.tps).where(results.c.submission_id == sid)).scalar_one_or_none()
        if tps is None:
            return None
        history = tps_history(data.engine, tps)
        item = next(h for h in history if h.stored.submission_id == sid)
        return item, history

    def photo_bytes(sid: str) -> bytes | None:
        with data.engine.connect() as conn:
            return conn.execute(select(evidence.c.jpeg).where(evidence.c.submission_id == sid)).scalar_one_or_none()

    async def result_page(request: Request) -> Response:
        sid = request.path_params["sid"]
        found = find_result(sid)
        if found is None:
            return PlainTextResponse(f"no accepted result {sid}", status_code=404)
        item, history = found
        template = data.templates.get(item.stored.template_id)
        reread = None
        ov = None
        if item.has_photo:
            reread = data.rereader.get(item.evidence_sha256, lambda: photo_bytes(sid))
            if reread.state == "done" and reread.sheet is not None:
                ov = overlay(template, reread.reading, item.payload, _png_size(reread.sheet))
        labels = {f.name: f.label for f in template.fields} if template else {}
        cert = certificate_status(cfg, item.stored.envelope, item.stored.received_at)
        return page(request, "result.html", f"Result {sid[:8]} of TPS {item.stored.tps}", item=item,
                    history=history, info=data.snap.tps.get(item.stored.tps), reread=reread, overlay=ov,
                    labels=labels, cert=cert, payload=item.payload)

    async def photo(request: Request) -> Response:
        jpeg = photo_bytes(request.path_params["sid"])
        if jpeg is None:
            return PlainTextResponse("no photo stored for this submission", status_code=404)
        # Served as an image only (nosniff): whatever the kit sent, the browser will not run it.
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    async def sheet(request: Request) -> Response:
        found = find_result(request.path_params["sid"])
        if found is None or not found[0].has_photo:
            return PlainTextResponse("no photo", status_code=404)
        got = data.rereader.cached(found[0].evidence_sha256)
        if got is None or got.sheet is None:
            return PlainTextResponse("not reread yet", status_code=404)
        return FileResponse(got.sheet, media_type="image/png")

    def table(request: Request, name: str) -> list[dict[str, Any]] | None:
        if name == "status":
            return [r.to_json() for r in status_rows(request)[0]]
        if name == "areas":
            return [a.to_json() for a in areas_of(request)]
        if name == "tally":
            level = _arg(request, "level")
            return _flat_tally(tally_rows(data.snap, _arg(request, "template"), level if level in LEVELS else None,
                                          _arg(request, "kecamatan")))
        if name == "refusals":
            return [r.to_json() for r in refusal_rows(request)]
        if name == "history":
            code = _arg(request, "tps") or ""
            return [{"tps": h.stored.tps, "template": h.stored.template_id, "submission_id": h.stored.submission_id,
                     "kit": h.stored.kit_id, "seq": h.stored.seq, "status": h.stored.status,
                     "received_at": h.stored.received_at, "state": "superseded" if h.superseded_by else "current",
                     "superseded_by": h.superseded_by, **h.stored.values} for h in tps_history(data.engine, code)]
        return None

    async def download(request: Request) -> Response:
        name, fmt = request.path_params["name"], request.path_params["fmt"]
        rows = table(request, name)
        if rows is None or fmt not in ("csv", "json"):
            return PlainTextResponse("unknown table", status_code=404)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        headers = {"Content-Disposition": f'attachment; filename="{cfg.district.id}-{name}-{stamp}.{fmt}"',
                   "Cache-Control": "no-store"}
        if fmt == "json":
            return Response(json.dumps(rows, ensure_ascii=False, indent=1), media_type="application/json",
                            headers=headers)
        return Response(to_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)

    async def events(request: Request) -> Response:
        return sse_response(request, data.version,
                            lambda: {"version": data.version.n, "counts": data.snap.counts(),
                                     "refusals": len(data.snap.refusals)})

    async def health(request: Request) -> Response:
        return JSONResponse({"version": data.version.n, "as_of": data.snap.read_at, "counts": data.snap.counts()})

    return Starlette(routes=[
        Route("/", home), Route("/tally", tally_page), Route("/refusals", refusals_page),
        Route("/tps/{code:str}", tps_page), Route("/result/{sid:str}", result_page),
        Route("/result/{sid:str}/photo.jpg", photo), Route("/result/{sid:str}/sheet.png", sheet),
        Route("/download/{name:str}.{fmt:str}", download), Route("/events", events), Route("/health", health),
        core_static(), Mount("/static/district", app=StaticFiles(directory=PAGES / "static"), name="district-static"),
    ])


class Dashboard:
    """The dashboard of one district: its data (polled) and its page server."""

    def __init__(self, cfg: DistrictConfig, *, host: str | None = None, port: int | None = None):
        self.data = DashboardData(cfg)
        self.server = PageServer(build_app(self.data), host or cfg.dashboard.bind,
                                 cfg.dashboard.port if port is None else port)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> Dashboard:
        self.data.start()
        try:
            self.server.start()
        except BaseException:
            self.data.stop()
            raise
        log_event(log, "district.dashboard", url=self.url, district=self.data.cfg.district.id)
        return self

    def stop(self) -> None:
        self.data.version.closing = True
        self.server.stop()
        self.data.stop()

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_dashboard(cfg: DistrictConfig, on_error: Callable[[str], None] | None = None) -> Dashboard | None:
    """For the service: the dashboard when [dashboard] enabled, None when disabled or when it cannot be
    served (logged; ingest matters more than the page)."""
    if not cfg.dashboard.enabled:
        return None
    try:
        return Dashboard(cfg).start()
    except Exception as e:
        log_event(log, "district.dashboard_failed", bind=cfg.dashboard.bind, port=cfg.dashboard.port, error=repr(e))
        if on_error is not None:
            on_error(repr(e))
        return None
