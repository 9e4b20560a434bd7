"""Find the kit's sheet in a photo, or say in the officer's terms why it cannot be found.

The four corner markers are searched (`geometry.detect_markers`). A marker the search misses is looked
for where the others put it, by its own bit pattern: a marker in a shadow, slightly blurred or seen at a
strong tilt is confirmed there. What is still missing is then either outside the frame (the sheet runs
out of it on a side we can name) or in view and not visible: something covers it. A sheet with one
marker outside the frame is still read when every region that matters (digit boxes, bubbles, QR) is in
the frame with room to spare; the homography then rests on the other three and the box grid.

With no marker at all, the frame is judged as a whole: too dark, no sheet, out of focus, or a page that
is not the kit's form (text and lines, but no kit markers: another form, a photocopy, a book).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from tpskit.forms import Template

from . import quality
from .decode import release_freed_memory
from .geometry import (
    VERIFY_MATCH,
    PageGeometry,
    detect_markers,
    marker_page_corners,
    page_geometry,
    subpix_corners,
    verify_marker,
)
from .trace import Measure, Refused, Trace

#: Regions that matter must lie at least this far (mm) inside the frame for a sheet with a marker
#: outside it to be read.
FRAME_MARGIN_MM = 2.0
#: Longest side of the image the thorough marker search runs on.
THOROUGH_MAX_PX = 2100
#: The marker search's last tries, on copies this many times smaller than the working image (see below).
COARSE_DOWNSCALES = (6, 12)
SIDES_ORDER = ("left", "right", "top", "bottom")
#: A missed marker is searched for again within this much (mm, each side) of where the found ones put it: a
#: curl or a fold moves a corner up to about 10 mm from that prediction.
NEAR_SLACK_MM = 16.0


@dataclass(frozen=True)
class Located:
    #: The first template of the marker layout found (the QR names the one to read).
    template: Template
    geom: PageGeometry
    #: Marker id -> corners (working-image px), found or confirmed.
    markers: dict[int, np.ndarray]
    #: Ids of markers outside the frame (the sheet is read without them).
    outside: tuple[int, ...] = ()


def _layouts(templates: Mapping[str, Template]) -> list[Template]:
    layouts: dict[tuple, Template] = {}
    for t in templates.values():
        layouts.setdefault((t.markers.model_dump_json(), t.page.width_mm, t.page.height_mm), t)
    return list(layouts.values())


def _inside(pts: np.ndarray, shape: tuple[int, int], margin_px: float = 0.0) -> bool:
    h, w = shape
    return bool((pts[:, 0] >= margin_px - 0.5).all() and (pts[:, 0] <= w - 0.5 - margin_px).all()
                and (pts[:, 1] >= margin_px - 0.5).all() and (pts[:, 1] <= h - 0.5 - margin_px).all())


def _overshoot(pts: np.ndarray, shape: tuple[int, int]) -> dict[str, float]:
    """How far (px) the points reach beyond each side of the frame."""
    h, w = shape
    return {"left": float(max(0.0, -pts[:, 0].min())), "right": float(max(0.0, pts[:, 0].max() - (w - 1))),
            "top": float(max(0.0, -pts[:, 1].min())), "bottom": float(max(0.0, pts[:, 1].max() - (h - 1)))}


def _regions_mm(templates: Mapping[str, Template], layout: Template) -> np.ndarray:
    """Corners (mm) of every region that matters, over the templates sharing this marker layout."""
    pts = []
    for t in templates.values():
        if t.markers != layout.markers or t.page != layout.page:
            continue
        for f in t.fields:
            for b in f.boxes:
                pts += [(b.x_mm, b.y_mm), (b.x_mm + b.w_mm, b.y_mm), (b.x_mm, b.y_mm + b.h_mm),
                        (b.x_mm + b.w_mm, b.y_mm + b.h_mm)]
            if f.bubbles is not None:
                r = f.bubbles.d_mm / 2
                for row in f.bubbles.rows:
                    for cx, cy in row:
                        pts += [(cx - r, cy - r), (cx + r, cy + r)]
        q = t.qr
        pts += [(q.x_mm, q.y_mm), (q.x_mm + q.size_mm, q.y_mm), (q.x_mm, q.y_mm + q.size_mm),
                (q.x_mm + q.size_mm, q.y_mm + q.size_mm)]
    return np.array(pts, np.float64)


def _confirm(gray: np.ndarray, geom: PageGeometry, t: Template, marker_id: int) -> tuple[np.ndarray, float]:
    """Predicted corners of a marker and the fraction of its cells that match there."""
    pred = geom.to_image(marker_page_corners(t.markers, marker_id)).astype(np.float32)
    if not _inside(pred, gray.shape):
        return pred, 0.0
    return pred, verify_marker(gray, geom, t.markers, marker_id)


def _from_some(t: Template, ours: Mapping[int, np.ndarray]) -> PageGeometry | None:
    """The homography two or three found markers give, to look for the others (None with fewer, or all four)."""
    if len(ours) < 2 or len(ours) == 4:
        return None
    return page_geometry(t.markers, dict(ours), t.page.width_mm, t.page.height_mm, min_markers=2)


def _confirm_missing(gray: np.ndarray, t: Template, ours: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Markers the search missed, confirmed by their bit pattern where two or more found ones put them."""
    out: dict[int, np.ndarray] = {}
    geom = _from_some(t, ours)
    if geom is None:
        return out
    for m in t.markers.items:
        if m.id in ours:
            continue
        pred, match = _confirm(gray, geom, t, m.id)
        if match >= VERIFY_MATCH:
            out[m.id] = _refine_corners(gray, pred, geom.px_per_mm)
    return out


def _search_near(gray: np.ndarray, t: Template, ours: Mapping[int, np.ndarray], skip: Mapping[int, np.ndarray]
                 ) -> dict[int, np.ndarray]:
    """Markers the whole-frame search missed, found by the same search in a window around where two or more
    found ones put them (NEAR_SLACK_MM each side): a small window has one marker, one light level and none of
    the page's other squares, so a marker the frame's threshold windows lost (a dim or uneven lamp, a curled
    corner the prediction misses by millimetres, the frame's edge a pixel away) decodes there."""
    out: dict[int, np.ndarray] = {}
    geom = _from_some(t, ours)
    if geom is None:
        return out
    h, w = gray.shape
    slack = NEAR_SLACK_MM * geom.px_per_mm
    for m in t.markers.items:
        if m.id in ours or m.id in skip:
            continue
        pred = geom.to_image(marker_page_corners(t.markers, m.id))
        x0, y0 = (max(0, int(v)) for v in np.floor(pred.min(axis=0) - slack))
        x1, y1 = (int(v) for v in np.ceil(pred.max(axis=0) + slack) + 1)
        x1, y1 = min(w, x1), min(h, y1)
        if x1 - x0 < 16 or y1 - y0 < 16:
            continue  # wholly outside the frame
        area = cv2.contourArea(pred.astype(np.float32))
        for search in ("normal", "thorough"):
            hit = detect_markers(gray[y0:y1, x0:x1], t.markers.dictionary, downscale=1, search=search).get(m.id)
            # Its own id, and about the size the others give it: the marker, not a copy printed elsewhere.
            if hit is not None and 0.4 * area <= cv2.contourArea(hit) <= 2.5 * area:
                out[m.id] = _refine_corners(gray, hit + np.array([x0, y0], np.float32), geom.px_per_mm)
                break
    return out


def _refine_corners(gray: np.ndarray, pts: np.ndarray, px_per_mm: float) -> np.ndarray:
    refined = subpix_corners(gray, pts.reshape(4, 2), max(2, round(0.8 * px_per_mm)))
    # A corner that wandered more than a millimetre found something else: keep the prediction.
    far = np.linalg.norm(refined - pts, axis=1) > px_per_mm
    refined[far] = pts[far]
    return refined


def markers_sharpness(gray: np.ndarray, t: Template, found: Mapping[int, np.ndarray]) -> float:
    """Median edge sharpness over the markers found, each rectified from its own four corners."""
    ppm = quality.GATE_PX_PER_MM
    s = t.markers.size_mm
    n = round((s + 2) * ppm)
    dst = np.array([[ppm, ppm], [n - ppm, ppm], [n - ppm, n - ppm], [ppm, n - ppm]], np.float32)
    values = []
    for corners in found.values():
        M = cv2.getPerspectiveTransform(corners.astype(np.float32), dst)
        patch = cv2.warpPerspective(gray, M, (n, n), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        values.append(quality.edge_sharpness(patch))
    return float(np.median(values)) if values else 0.0


def _found_or_confirmed(gray: np.ndarray, t: Template, ours: dict[int, np.ndarray]
                        ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """The markers found, with those found again near their predicted place; and those confirmed there by
    their bits only."""
    confirmed = _confirm_missing(gray, t, ours)
    if len(ours) + len(confirmed) < 4:
        near = _search_near(gray, t, ours, confirmed)
        if near:
            ours = {**ours, **near}
            confirmed = _confirm_missing(gray, t, ours)
    return ours, confirmed


def locate_sheet(gray: np.ndarray, scale: int, templates: Mapping[str, Template], trace: Trace) -> Located:
    """Markers and homography of the sheet in view; raises `Refused` saying why there is none."""
    trace.shape = gray.shape
    best: tuple[Template, dict[int, np.ndarray], dict[int, np.ndarray]] | None = None
    for t in _layouts(templates):
        ids = {m.id for m in t.markers.items}
        ours = {i: c for i, c in detect_markers(gray, t.markers.dictionary, search="quick").items() if i in ids}
        if len(ours) < 4:
            ours = {**ours, **{i: c for i, c in detect_markers(gray, t.markers.dictionary).items() if i in ids}}
        ours, confirmed = _found_or_confirmed(gray, t, ours)
        if len(ours) + len(confirmed) < 4:
            # Small markers (a sheet far away) can vanish on the downscaled copy: look once more, thoroughly,
            # at up to THOROUGH_MAX_PX (a 12 MP search costs a second and a hundred megabytes).
            k = max(1, -(-max(gray.shape) // THOROUGH_MAX_PX))
            # Its buffers are the read's largest: the allocator's pages kept from earlier reads go back first.
            release_freed_memory()
            more = detect_markers(gray, t.markers.dictionary, downscale=k, search="thorough")
            ours, confirmed = _found_or_confirmed(gray, t, {**{i: c for i, c in more.items() if i in ids}, **ours})
        if best is None or len(ours) + len(confirmed) > len(best[1]) + len(best[2]):
            best = (t, ours, confirmed)
        if len(ours) + len(confirmed) == 4:
            break
    assert best is not None
    t, ours, confirmed = best
    trace.corner_names = {m.id: m.corner for m in t.markers.items}
    trace.markers_found = dict(ours)
    trace.markers_confirmed = dict(confirmed)
    ours = {**ours, **confirmed}
    W, H = t.page.width_mm, t.page.height_mm
    if not ours:
        # In a very dark frame noise, not blur, hides the markers' cells: ask for light first. Only when a
        # page is in view or nothing can be told apart: an empty dark desk is `no_sheet` (_no_marker).
        small = quality.small_copy(gray)
        if quality.frame_too_dark(small) and (quality.page_in_view(small) or quality.frame_very_dark(small)):
            raise Refused("too_dark", trace.measure(Measure("frame p95", float(np.percentile(small, 95)),
                                                            quality.DARK_FRAME_P95, "below")))
        # A sheet out of focus loses its markers' cells, but on a copy a few times smaller the blur is under
        # a pixel and they decode again: then it is the kit's form, too soft to read.
        ids = {m.id for m in t.markers.items}
        coarse: dict[int, np.ndarray] = {}
        for k in COARSE_DOWNSCALES:
            coarse = {i: c for i, c in detect_markers(gray, t.markers.dictionary, downscale=k).items() if i in ids}
            if coarse:
                break
        if coarse:
            trace.markers_found = coarse
            sharp = trace.measure(Measure("marker sharpness", markers_sharpness(gray, t, coarse),
                                          quality.MIN_SHARPNESS, "below"))
            raise Refused("out_of_focus", sharp)
        raise _no_marker(gray, trace)

    geom = page_geometry(t.markers, ours, W, H, min_markers=1)
    if geom is not None and len(ours) < 4:
        for m in t.markers.items:
            if m.id not in ours:
                pred = geom.to_image(marker_page_corners(t.markers, m.id)).astype(np.float32)
                match = verify_marker(gray, geom, t.markers, m.id) if _inside(pred, gray.shape) else 0.0
                trace.markers_missing[m.id] = (pred, match)
    if geom is not None:
        trace.homography, trace.page_mm = geom.H, (W, H)
    if len(ours) == 4 and geom is not None:
        return Located(template=t, geom=geom, markers=ours)

    small = quality.small_copy(gray)
    if quality.frame_too_dark(small):
        raise Refused("too_dark", trace.measure(Measure("frame p95", float(np.percentile(small, 95)),
                                                        quality.DARK_FRAME_P95, "below")))
    if geom is not None and len(ours) >= 2:  # a tiny sheet's markers also look soft: its size first
        small_sheet = trace.measure(Measure("px/mm", geom.px_per_mm * scale, quality.MIN_FULLRES_PX_PER_MM,
                                            "below"))
        if small_sheet.failed:
            raise Refused("sheet_too_small", small_sheet)
    sharp = trace.measure(Measure("marker sharpness", markers_sharpness(gray, t, ours), quality.MIN_SHARPNESS,
                                  "below"))
    if sharp.failed:
        raise Refused("out_of_focus", sharp)
    # What is missing: outside the frame, or in view and covered.
    outside: dict[int, dict[str, float]] = {}
    covered: list[int] = []
    if geom is not None:
        margin = 0.5 * geom.px_per_mm
        for m in t.markers.items:
            if m.id in ours:
                continue
            pred = geom.to_image(marker_page_corners(t.markers, m.id))
            if _inside(pred, gray.shape, margin):
                covered.append(m.id)
            else:
                outside[m.id] = _overshoot(pred, gray.shape)
    else:
        covered = [m.id for m in t.markers.items if m.id not in ours]
    if covered and (len(ours) >= 2 or not outside):
        names = [trace.corner_names[i] for i in covered]
        raise Refused("marker_missing", corner=names[0], corners=", ".join(names))
    assert geom is not None
    regions = geom.to_image(_regions_mm(templates, t))
    if len(ours) >= 3 and _inside(regions, gray.shape, FRAME_MARGIN_MM * geom.px_per_mm):
        return Located(template=t, geom=geom, markers=ours, outside=tuple(outside))
    reach = _overshoot(np.vstack([regions] + [geom.to_image(marker_page_corners(t.markers, i)) for i in outside]),
                       gray.shape)
    side = max(SIDES_ORDER, key=lambda s: reach[s])
    raise Refused("sheet_out_of_frame", side=side)


#: Paper kept around the page (mm) when a full-size decode is cut to the sheet: every region the reader
#: samples lies on the page, a curled edge bulges a few millimetres past where the markers put it.
PAGE_MARGIN_MM = 10.0


def page_extent(located: Located, k: int) -> tuple[int, int]:
    """(x1, y1): the full-size photo's pixels right of x1 and below y1 are off the page of `located` (found
    on an image `k` times smaller) and PAGE_MARGIN_MM around it. Not clipped to the photo."""
    t, m = located.template, PAGE_MARGIN_MM
    W, H = t.page.width_mm, t.page.height_mm
    c = located.geom.to_image(np.array([[-m, -m], [W + m, -m], [W + m, H + m], [-m, H + m]], np.float64)) * k
    x1, y1 = np.ceil(c.max(axis=0)).astype(int) + 2 * k
    return int(x1), int(y1)


def at_full_size(located: Located, trace: Trace, gray: np.ndarray, k: int) -> Located:
    """`located` (found on an image `k` times smaller) moved onto the full-size `gray`: each corner refined
    where it lands, the homography refitted on them. A second marker search on the full image would cost
    time and, with the small image's buffers still held by the allocator, the kit's memory."""
    t = located.template

    def up(c: np.ndarray) -> np.ndarray:  # pixel centres: small pixel i spans full pixels k*i .. k*i+k-1
        return (np.asarray(c, np.float32) * k + (k - 1) / 2.0).astype(np.float32)

    ppm = located.geom.px_per_mm * k
    markers = {i: _refine_corners(gray, up(c), ppm) for i, c in located.markers.items()}
    geom = page_geometry(t.markers, markers, t.page.width_mm, t.page.height_mm, min_markers=1)
    if geom is None:  # pragma: no cover - the same corners gave a homography at the small size
        raise Refused("reader_error")
    trace.shape = gray.shape
    trace.markers_found = {i: markers[i] if i in markers else up(c) for i, c in trace.markers_found.items()}
    trace.markers_confirmed = {i: markers.get(i, up(c)) for i, c in trace.markers_confirmed.items()}
    trace.markers_missing = {i: (up(c), m) for i, (c, m) in trace.markers_missing.items()}
    trace.homography = geom.H
    return Located(template=t, geom=geom, markers=markers, outside=located.outside)


def _no_marker(gray: np.ndarray, trace: Trace) -> Refused:
    """No kit marker in view: dark, no sheet, out of focus, or a page that is not the kit's form."""
    small = quality.small_copy(gray)
    p95 = trace.measure(Measure("frame p95", float(np.percentile(small, 95)), quality.DARK_FRAME_P95, "below"))
    if p95.failed:
        # In a very dark frame even paper is dark: ask for light first, it is the likelier fix.
        dark = quality.page_in_view(small) or quality.frame_very_dark(small)
        return Refused("too_dark" if dark else "no_sheet", p95)
    doc = trace.measure(Measure("document tiles", quality.document_structure(gray), quality.MIN_DOCUMENT_TILES,
                                "below"))
    if doc.failed and not quality.page_in_view(small):
        return Refused("no_sheet", doc)
    sharp = trace.measure(Measure("frame sharpness", quality.frame_sharpness(gray), quality.MIN_FRAME_SHARPNESS,
                                  "below"))
    if sharp.failed:
        return Refused("out_of_focus", sharp)
    return Refused("not_a_kit_form", doc)
