"""The printed box grid: where each digit box really is in the photo, and what its printed lines say about
the capture.

The corner markers give a homography, but a curled or folded sheet, or a sheet tilted towards the lens,
moves the boxes by up to a few millimetres from where it puts them. The box lines are printed at a known
place and width, so each field's strip is searched for them: first the whole field (all its vertical
lines, then its top and bottom lines, within `SEARCH_MM`), then each box on its own (within
`BOX_SEARCH_MM`). Every box is then cut where its lines are, and the distance between where the
homography put it and where it is found is the homography's reprojection error on the box grid.

The same lines are the gate's evidence, measured where the digits are (not over the whole photo):
- `contrast`: grey levels between the paper and the printed black in the box, the light the ink gets;
- `width_mm`: the effective width of the printed lines (area / peak of their darkness profile), which
  defocus and motion blur widen: the sharpness where it matters;
- `visibility`: per stretch of line, its darkness against the paper beside it. Specular glare adds light
  on top of paper and ink alike, so the lines fade where it lies; bright or even clipped paper does not
  fade them (printed black stays dark), and a shadow darkens both and leaves the ratio alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numpy as np

from tpskit.forms import FieldSpec, Template

from .geometry import PageGeometry, warp_region
from .normalise import BOX_PX_PER_MM

#: Printed width of a box line (tpskit.sheets.render.BOX_LINE_MM; the authority's forms print 0.3-0.4 mm).
LINE_MM = 0.35
#: How far a field's lines are searched for around where the homography puts them (a curled sheet's
#: boxes move up to about this much); a field's neighbours sit 1.5 mm above and below, so the vertical
#: search scores the field's own top and bottom lines together, which only the true position aligns.
SEARCH_MM = 3.0
#: Then each box on its own, around its field's position (a fold between two boxes of one field).
BOX_SEARCH_MM = 0.8
#: Darkness is measured against the brightest pixel within this distance: paper, since no stroke is as wide.
_PAPER_MM = 2.2
#: A line's profile is measured over this half-width around its centre.
_PROFILE_MM = 1.0
#: Each of a box's four lines is cut into this many stretches for the visibility measurement.
SEGMENTS = 3
#: Inner rows/columns kept clear of the box corners when profiling a line (mm).
_CORNER_MM = 1.5
#: A box whose lines were not found takes the offset of found boxes within this distance (mm).
NEIGHBOUR_MM = 30.0
#: Fields measured together in one array operation (see fit_grid).
GROUP_MAX = 6
#: The vertical lines are searched for among dark features no wider than this (mm): wider than the widest
#: line the gate lets through (MAX_LINE_WIDTH_MM, 1.10 mm effective, about twice that at its foot); narrower
#: than the heavy ink the comb would otherwise take for lines (on bench/read.py's held-out officers' hard
#: sheets, felt-tip 2s with filled loops beside a box's left line pulled six fields 1.7-3 mm off their
#: boxes; 2.5 mm took that set from 1 refusal and 93.15 % of fields correct to none and 94.77 %; at 1.5-1.8 mm
#: the lines of a small, blurred, curled sheet in the mixed hard set were lost).
LINE_SEARCH_MAX_MM = 2.5
#: A line is "found" when its darkness peak stands this far above the profile's median.
_FOUND = 0.12
#: Effective width (mm) of a crisp printed line through the camera (bench/gate.py, "focus", at 0.05 mm
#: defocus: 0.41-0.43), and the strength of the unsharp mask that undoes part of a wider line's blur
#: (`sharpen_strips`).
SHARP_LINE_MM = 0.45
UNSHARP_AMOUNT = 1.0
#: Fields not found at first are searched again in up to this many rounds, each reaching this much (mm)
#: farther from the found boxes than the nearest lost field, through the local affine map the found boxes
#: weighted by a Gaussian of this width (mm) describe (a curl's displacement changes over a few cm).
CURL_ROUNDS = 4
#: Stretches of a field's comb of vertical lines tried (the printed size first), and how much more clearly
#: a stretched comb must fit to be taken (a curl's rise of 15 mm under a lens 400 mm away enlarges 4 %).
FIELD_SCALES = (1.0, 0.97, 1.03, 1.06)
SCALE_PENALTY = 0.02
CURL_TURNS_DEG = (0.0, -1.5, 1.5, -3.0, 3.0, -4.5, 4.5)
CURL_STEP_MM = 25.0
CURL_SIGMA_MM = 35.0


@dataclass(frozen=True)
class BoxFit:
    """One box, measured."""

    #: Offset (mm, page axes) of the box from where the homography puts it.
    dx_mm: float
    dy_mm: float
    #: Whether the box's own lines located it (otherwise it keeps its field's offset).
    found: bool
    #: Darkness (0..1, against the local paper) of each stretch of its four lines: left, right, top, bottom
    #: x SEGMENTS.
    visibility: tuple[float, ...]
    #: Local paper grey level at each of those stretches.
    paper: tuple[float, ...]
    #: Grey levels between paper and printed line (median over the box's lines).
    contrast: float
    #: Effective width (mm) of its vertical lines: area / peak of the darkness profile.
    width_mm: float
    #: Template centre of the box (page mm).
    centre_mm: tuple[float, float] = (0.0, 0.0)
    #: For a box whose lines were not found: how much the found boxes around it disagree about the offset
    #: it was given (mm; inf when none is near). 0 for a found box.
    uncertainty_mm: float = 0.0


@dataclass
class FieldFit:
    name: str
    #: Page position (mm) of the strip's top-left pixel, and the strip (grey, BOX_PX_PER_MM) itself.
    x0_mm: float
    y0_mm: float
    strip: np.ndarray
    boxes: list[BoxFit]
    #: Offset of the field as a whole (mm), and whether its lines were found.
    dx_mm: float
    dy_mm: float
    found: bool
    #: For a field searched where the found boxes around it say the sheet went (a curl): the local affine
    #: map (2 x 3, page mm -> page mm) the strip was warped through. Box offsets stay in page mm under the
    #: homography; in the strip, a box sits at the inverse of this map applied to where it is.
    correction: np.ndarray | None = None
    #: How clearly the field's lines stood out where they were found (the weaker of its two directions).
    score: float = 0.0

    def strip_mm(self, centre_mm: tuple[float, float], off: tuple[float, float]) -> tuple[float, float]:
        """Where a box centre at template `centre_mm` moved by `off` lies in the strip's page millimetres."""
        x, y = centre_mm[0] + off[0], centre_mm[1] + off[1]
        if self.correction is None:
            return x, y
        inv = cv2.invertAffineTransform(self.correction)
        return float(inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]), float(inv[1, 0] * x + inv[1, 1] * y + inv[1, 2])

    def box_origin_px(self, spec: FieldSpec, k: int, shift_mm: tuple[float, float] = (0.0, 0.0)) -> tuple[int, int]:
        """Top-left pixel in `strip` of box `k` where it was found, moved by `shift_mm`."""
        b, fit = spec.boxes[k], self.boxes[k]
        cx, cy = self.strip_mm((b.x_mm + b.w_mm / 2, b.y_mm + b.h_mm / 2), (fit.dx_mm, fit.dy_mm))
        u = (cx - b.w_mm / 2 + shift_mm[0] - self.x0_mm) * BOX_PX_PER_MM
        v = (cy - b.h_mm / 2 + shift_mm[1] - self.y0_mm) * BOX_PX_PER_MM
        return round(u), round(v)

    def geometry(self, geom: PageGeometry) -> PageGeometry:
        """The page geometry this field's strip was warped with."""
        return geom if self.correction is None else corrected(geom, self.correction)


@dataclass
class GridFit:
    fields: dict[str, FieldFit]

    def boxes(self) -> list[BoxFit]:
        return [b for f in self.fields.values() for b in f.boxes]

    def offsets_mm(self) -> np.ndarray:
        """(N, 2) offsets of the boxes that were found."""
        pts = [(b.dx_mm, b.dy_mm) for b in self.boxes() if b.found]
        return np.array(pts, np.float64).reshape(-1, 2)

    @property
    def found_fraction(self) -> float:
        boxes = self.boxes()
        return sum(b.found for b in boxes) / len(boxes) if boxes else 0.0


def _darkness(strip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relative darkness 1 - I / paper (float32), and the paper level (uint8, at least 1), of a grey (uint8)
    strip. The division of the uint8 images straight into float32 is the float32 division of their values
    (checked on every pair of values); the paper is converted only where it is measured."""
    k = max(3, round(_PAPER_MM * BOX_PX_PER_MM) | 1)
    paper = cv2.dilate(strip, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)), borderType=cv2.BORDER_REPLICATE)
    paper = np.maximum(paper, 1, out=paper)
    ratio = cv2.divide(strip, paper, dtype=cv2.CV_32F)
    return np.subtract(1.0, ratio, out=ratio), paper


def _median(a: np.ndarray, axis: int) -> np.ndarray:
    """np.median(a, axis) of a float array without NaN, the same bits (the middle value, or the mean of the
    two middle ones in a's float type). Sorted, not partitioned: the same middle values, and numpy's
    vectorised sort of short rows is several times faster than its partition across them."""
    n = a.shape[axis]
    k = n // 2
    s = np.sort(a, axis=axis)
    if n % 2:
        return s.take(k, axis=axis)
    return (s.take(k - 1, axis=axis) + s.take(k, axis=axis)) / 2


def _narrow(profiles: np.ndarray) -> np.ndarray:
    """The profiles (rows) with everything wider than LINE_SEARCH_MAX_MM taken out (a top-hat: each minus its
    opening), for the search of the vertical lines: a printed line stays, a felt-tip stroke or a filled loop
    down most of a box (which the median over its rows keeps as dark as a line) goes."""
    k = round(LINE_SEARCH_MAX_MM * BOX_PX_PER_MM) | 1
    return cv2.morphologyEx(profiles, cv2.MORPH_TOPHAT, np.ones((1, k), np.uint8), borderType=cv2.BORDER_REPLICATE)


def _window(at: np.ndarray, size: int, length: int) -> np.ndarray:
    """Indices (one more axis) of the `size` pixels a cv2.dilate kernel of that size, anchored at its centre,
    covers at each index in `at`, on an axis of `length` pixels; outside it, cv2.dilate leaves the border
    out of the maximum, and a clipped index repeats a pixel already in it."""
    lo = size // 2
    return np.clip(at[..., None] + np.arange(-lo, size - lo), 0, length - 1)


def _blurred(profiles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Profiles (rows) smoothed along their length for `_shifts`, and each one's median."""
    # A kernel one row high (sigmaY): each row is smoothed on its own.
    p = cv2.GaussianBlur(profiles.astype(np.float32), (0, 0), sigmaX=0.8, sigmaY=0.01)
    return p, _median(p, axis=1)


def _shifts(profiles: np.ndarray, centres_px: np.ndarray, reach_px: float, around_px: np.ndarray,
            rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """For each comb of line centres (`centres_px`, one row per comb), the shift that best matches it to its
    profile, sub-pixel, within `reach_px` of `around_px`; and how clearly the lines stand out there (mean
    profile value on the comb minus the profile's median). Comb i is matched to row `rows[i]` of `profiles`
    (row i when None): several combs on one profile share its smoothing."""
    p, med = _blurred(profiles)
    length = p.shape[1]
    n = len(centres_px)
    if rows is None:
        rows = np.arange(n)
    steps = np.arange(-round(reach_px), round(reach_px) + 1, dtype=np.float64)
    shifts = np.round(around_px)[:, None] + steps[None, :]  # (n, S)
    pos = centres_px[:, None, :] + shifts[:, :, None]  # (n, S, L)
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, length - 2)
    t = np.clip(pos - i0, 0.0, 1.0)
    flat = i0 + (rows * length)[:, None, None]
    val = p.take(flat) * (1 - t) + p.take(flat + 1) * t
    val[(pos < 0) | (pos > length - 1)] = 0.0
    score = val.sum(axis=2)  # (n, S)
    k = np.argmax(score, axis=1)
    best = shifts[np.arange(n), k]
    inner = (k > 0) & (k < score.shape[1] - 1)
    a = score[np.arange(n), np.maximum(k - 1, 0)]
    b = score[np.arange(n), k]
    c = score[np.arange(n), np.minimum(k + 1, score.shape[1] - 1)]
    den = a - 2 * b + c
    frac = np.where(inner & (den < 0), np.clip(0.5 * (a - c) / np.where(den < 0, den, -1.0), -0.5, 0.5), 0.0)
    height = b / centres_px.shape[1] - med[rows]
    return best + frac, height


def _line_centres(starts_mm: list[float], ends_mm: list[float], origin_mm: float) -> np.ndarray:
    """Centres (strip px) of the lines whose outer edges are at `starts` (left/top) and `ends` (right/bottom)."""
    c = [s + LINE_MM / 2 for s in starts_mm] + [e - LINE_MM / 2 for e in ends_mm]
    return (np.array(c) - origin_mm) * BOX_PX_PER_MM - 0.5


def _span(lo_mm: float, hi_mm: float, origin_mm: float, n: int) -> slice:
    a = max(0, round((lo_mm - origin_mm) * BOX_PX_PER_MM))
    b = min(n, round((hi_mm - origin_mm) * BOX_PX_PER_MM))
    return slice(a, max(a + 1, b))


def _line_widths_mm(profiles: np.ndarray, centres_px: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Area / peak of the darkness profile (row `rows[i]` of `profiles`) around each line centre, in mm (wider
    = blurrier); nan where there is no line."""
    r = round(_PROFILE_MM * BOX_PX_PER_MM)
    length = profiles.shape[1]
    idx = np.round(centres_px).astype(np.int64)[:, None] + np.arange(-r, r + 1)[None, :]
    ok = (idx[:, 0] >= 0) & (idx[:, -1] < length)
    p = profiles[rows[:, None], np.clip(idx, 0, length - 1)]
    base = np.minimum(p[:, 0], p[:, -1])[:, None]
    above = np.clip(p - base, 0.0, None)
    peak = above.max(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = above.sum(axis=1) / peak / BOX_PX_PER_MM
    return np.where(ok & (peak > 1e-3), w, np.nan)


def _segment_means(cum: np.ndarray, cols: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Means between consecutive `edges` (one row of edges per column in `cols`) of the columns of the
    cumulative sum `cum` (first row zero)."""
    j = cols[:, None]
    n = np.maximum(np.diff(edges, axis=1), 1)
    return (cum[edges[:, 1:], j] - cum[edges[:, :-1], j]) / n


def _layout(f: FieldSpec) -> tuple:
    """Fields with the same layout relative to their first box are measured together."""
    b0 = f.boxes[0]
    return tuple((round(b.x_mm - b0.x_mm, 3), round(b.y_mm - b0.y_mm, 3), b.w_mm, b.h_mm) for b in f.boxes)


def corrected(geom: PageGeometry, correction: np.ndarray) -> PageGeometry:
    """`geom` seen through a local affine correction of the page (2 x 3, page mm -> page mm)."""
    A = np.vstack([correction, [0.0, 0.0, 1.0]])
    return replace(geom, H=geom.H @ A)


def _fit_group(gray: np.ndarray, geom: PageGeometry, fields: list[FieldSpec],
               corrections: dict[str, np.ndarray] | None = None) -> list[FieldFit]:
    """Fields of one layout, warped and measured together (one array operation for all of them);
    `corrections`: a local affine map of the page (2 x 3, mm) to warp a field's strip through, where the
    homography alone puts it too far from where it is."""
    corrections = corrections or {}
    ppm = BOX_PX_PER_MM
    pad = SEARCH_MM + BOX_SEARCH_MM + 1.0
    g = len(fields)
    ref = fields[0]
    # Box geometry relative to the field's top-left box corner (same for every field of the group).
    rx = np.array([b.x_mm - ref.boxes[0].x_mm for b in ref.boxes])
    ry = np.array([b.y_mm - ref.boxes[0].y_mm for b in ref.boxes])
    bw = np.array([b.w_mm for b in ref.boxes])
    bh = np.array([b.h_mm for b in ref.boxes])
    n = len(rx)
    fx0, fy0, fx1, fy1 = rx.min(), ry.min(), (rx + bw).max(), (ry + bh).max()
    origins = [(f.boxes[0].x_mm + fx0 - pad, f.boxes[0].y_mm + fy0 - pad) for f in fields]
    bx, by = rx - fx0 + pad, ry - fy0 + pad  # box corners in strip mm
    sw, sh = fx1 - fx0 + 2 * pad, fy1 - fy0 + 2 * pad
    strips = [warp_region(gray, corrected(geom, corrections[f.name]) if f.name in corrections else geom,
                          x, y, sw, sh, ppm) for f, (x, y) in zip(fields, origins, strict=True)]
    H, W = strips[0].shape
    # Stacked vertically, the max filter runs once; it reaches ~1 mm into a neighbour, well inside the pad.
    dark2, paper2 = _darkness(np.vstack(strips))
    dark, paper = dark2.reshape(g, H, W), paper2.reshape(g, H, W)
    gi = np.arange(g)

    # Whole field: its vertical lines over the rows inside the boxes, then its top and bottom lines over
    # the boxes' columns. Medians: a digit crossing a line does not move it.
    rows = _span(pad + _CORNER_MM, pad + fy1 - fy0 - _CORNER_MM, 0.0, H)
    xprof = _median(dark[:, rows.start : rows.stop : 2], axis=1)  # (g, W); every other row is plenty
    xs = _line_centres(list(bx), list(bx + bw), 0.0)
    # A field raised towards the lens by a curl looks larger: its comb of lines is also tried stretched.
    fc = (pad + (fx1 - fx0) / 2) * ppm - 0.5
    S = len(FIELD_SCALES)
    combs = fc + (xs[None, :] - fc) * np.array(FIELD_SCALES)[:, None]  # (S, L)
    xline = _narrow(xprof)
    dxs, hxs = _shifts(xline, np.tile(combs, (g, 1)), SEARCH_MM * ppm, np.zeros(g * S), np.repeat(gi, S))
    dxs, hxs = dxs.reshape(g, S), hxs.reshape(g, S)
    pick = np.argmax(hxs - SCALE_PENALTY * (np.arange(S) > 0), axis=1)  # the printed size unless clearly not
    dx, hx = dxs[gi, pick], hxs[gi, pick]
    xscale = np.array(FIELD_SCALES)[pick]
    csum = np.zeros((g, H, W + 1), np.float32)  # row sums over any columns: a leading 0, then the cumsum
    np.cumsum(dark, axis=2, dtype=np.float32, out=csum[:, :, 1:])
    c0 = np.clip(np.round((pad + _CORNER_MM) * ppm + dx).astype(int), 0, W)
    c1 = np.clip(np.round((pad + fx1 - fx0 - _CORNER_MM) * ppm + dx).astype(int), 0, W)
    yprof = (csum[gi, :, c1] - csum[gi, :, c0]) / np.maximum(c1 - c0, 1)[:, None]  # (g, H)
    ys = _line_centres([pad], [pad + fy1 - fy0], 0.0)
    dy, hy = _shifts(yprof, np.repeat(ys[None], g, axis=0), SEARCH_MM * ppm, np.zeros(g))
    field_found = np.minimum(hx, hy) >= _FOUND
    dx, dy = np.where(field_found, dx, 0.0), np.where(field_found, dy, 0.0)
    moved = np.abs(dy) >= ppm  # rows used for the x profile were off: profile those fields again
    for k in np.flatnonzero(moved):
        r = _span(pad + _CORNER_MM + dy[k] / ppm, pad + fy1 - fy0 - _CORNER_MM + dy[k] / ppm, 0.0, H)
        xprof[k] = _median(dark[k, r.start : r.stop : 2], axis=0)
        xline[k] = _narrow(xprof[k : k + 1])[0]

    # Each box on its own, near its field's position: (g * n) profiles.
    reach = BOX_SEARCH_MM * ppm
    bxs = np.stack([(bx + LINE_MM / 2) * ppm - 0.5, (bx + bw - LINE_MM / 2) * ppm - 0.5], axis=1)  # (n, 2)
    around = dx[:, None] + (xscale[:, None] - 1.0) * ((bx + bw / 2) * ppm - 0.5 - fc)[None, :]  # (g, n)
    ddx, hbx = _shifts(xline, np.tile(bxs, (g, 1)), reach, around.reshape(-1), np.repeat(gi, n))
    ddx, hbx = ddx.reshape(g, n), hbx.reshape(g, n)
    c0 = np.clip(np.round((bx + _CORNER_MM) * ppm + ddx).astype(int), 0, W)  # (g, n)
    c1 = np.clip(np.round((bx + bw - _CORNER_MM) * ppm + ddx).astype(int), 0, W)
    yprofs = (csum[gi[:, None], :, c1] - csum[gi[:, None], :, c0]) / np.maximum(c1 - c0, 1)[..., None]  # (g, n, H)
    bys = np.stack([(by + LINE_MM / 2) * ppm - 0.5, (by + bh - LINE_MM / 2) * ppm - 0.5], axis=1)
    ddy, hby = _shifts(yprofs.reshape(g * n, H), np.tile(bys, (g, 1)), reach, np.repeat(dy, n))
    ddy, hby = ddy.reshape(g, n), hby.reshape(g, n)
    found = field_found[:, None] & (np.minimum(hbx, hby) >= _FOUND)
    ddx = np.where(found, ddx, dx[:, None])
    ddy = np.where(found, ddy, dy[:, None])

    # Measurements along each box's four lines, where it was found.
    lw, cm = LINE_MM * ppm, _CORNER_MM * ppm
    u, v = bx * ppm + ddx, by * ppm + ddy  # (g, n)
    w, h = bw * ppm, bh * ppm
    lin = np.linspace(0.0, 1.0, SEGMENTS + 1)
    ev = np.clip(np.round((v + cm)[..., None] + (h - 2 * cm)[:, None] * lin).astype(int), 0, H)  # (g, n, S+1)
    eh = np.clip(np.round((u + cm)[..., None] + (w - 2 * cm)[:, None] * lin).astype(int), 0, W)
    across = round(lw) + 3  # a line and a pixel of slack either side
    vx = np.stack([u + lw / 2 - 0.5, u + w - lw / 2 - 0.5], axis=2)  # (g, n, 2): left, right
    hy_ = np.stack([v + lw / 2 - 0.5, v + h - lw / 2 - 0.5], axis=2)  # top, bottom
    ci = np.clip(np.round(vx).astype(int), 0, W - 1)
    ri = np.clip(np.round(hy_).astype(int), 0, H - 1)
    G = gi[:, None, None]
    # Cumulative sums along each line (columns for vertical lines, rows for horizontal ones).
    # The darkest pixel across each line (a max filter `across` wide, as cv2.dilate, only where it is read;
    # rows run on into the next field's strip, as in the stacked image).
    peak_x = dark[G[..., None], :, _window(ci, across, W)].max(axis=3)  # (g, n, 2, H)
    peak_y = dark2[_window(ri + (gi * H)[:, None, None], across, g * H)].max(axis=-2)  # (g, n, 2, W)
    col_v = np.stack([peak_x, paper[G, :, ci].astype(np.float32)])  # (2, g, n, 2, H)
    col_h = np.stack([peak_y, paper[G, ri, :].astype(np.float32)])  # (2, g, n, 2, W)
    cum_v = np.concatenate([np.zeros((*col_v.shape[:-1], 1), np.float32), np.cumsum(col_v, axis=-1)], axis=-1)
    cum_h = np.concatenate([np.zeros((*col_h.shape[:-1], 1), np.float32), np.cumsum(col_h, axis=-1)], axis=-1)
    ev4 = np.broadcast_to(ev[None, :, :, None, :], (2, g, n, 2, SEGMENTS + 1))
    eh4 = np.broadcast_to(eh[None, :, :, None, :], (2, g, n, 2, SEGMENTS + 1))
    seg_v = np.diff(np.take_along_axis(cum_v, ev4, axis=-1), axis=-1) / np.maximum(np.diff(ev4, axis=-1), 1)
    seg_h = np.diff(np.take_along_axis(cum_h, eh4, axis=-1), axis=-1) / np.maximum(np.diff(eh4, axis=-1), 1)
    # per box: left, right, top, bottom x SEGMENTS
    vis = np.concatenate([seg_v[0].reshape(g, n, -1), seg_h[0].reshape(g, n, -1)], axis=2)
    pap = np.concatenate([seg_v[1].reshape(g, n, -1), seg_h[1].reshape(g, n, -1)], axis=2)
    contrast = _median(vis * pap, axis=2)
    widths = _line_widths_mm(xprof, vx.reshape(-1), np.repeat(gi, 2 * n)).reshape(g, n, 2)
    valid = ~np.isnan(widths)
    width = np.where(valid.any(axis=2), np.where(valid, widths, 0.0).sum(axis=2) / np.maximum(valid.sum(axis=2), 1),
                     np.nan)

    out = []
    for k, f in enumerate(fields):
        A = corrections.get(f.name)

        def moved(c: tuple[float, float], d: tuple[float, float], A: np.ndarray | None = A) -> tuple[float, float]:
            """Offset under the homography of a point at `c` found `d` away from it in the strip."""
            if A is None:
                return d
            x, y = c[0] + d[0], c[1] + d[1]
            return (float(A[0, 0] * x + A[0, 1] * y + A[0, 2] - c[0]),
                    float(A[1, 0] * x + A[1, 1] * y + A[1, 2] - c[1]))

        boxes = []
        for j in range(n):
            c = (f.boxes[j].x_mm + f.boxes[j].w_mm / 2, f.boxes[j].y_mm + f.boxes[j].h_mm / 2)
            ox, oy = moved(c, (float(ddx[k, j] / ppm), float(ddy[k, j] / ppm)))
            boxes.append(BoxFit(dx_mm=ox, dy_mm=oy, found=bool(found[k, j]), visibility=tuple(vis[k, j].tolist()),
                                paper=tuple(pap[k, j].tolist()), contrast=float(contrast[k, j]),
                                width_mm=float(width[k, j]), centre_mm=c))
        fdx, fdy = moved(_field_centre(f), (float(dx[k] / ppm), float(dy[k] / ppm)))
        out.append(FieldFit(name=f.name, x0_mm=origins[k][0], y0_mm=origins[k][1], strip=strips[k], boxes=boxes,
                            dx_mm=fdx, dy_mm=fdy, found=bool(field_found[k]), correction=A,
                            score=float(min(hx[k], hy[k]))))
    return out


def fit_grid(gray: np.ndarray, geom: PageGeometry, t: Template) -> GridFit:
    """Every field of the template, located and measured (see the module's docstring)."""
    groups: dict[tuple, list[FieldSpec]] = {}
    for f in t.fields:
        groups.setdefault(_layout(f), []).append(f)
    fits: dict[str, FieldFit] = {}
    for fields in groups.values():
        # At most GROUP_MAX fields at once: the float work arrays stay a few megabytes (the kit's memory).
        for k in range(0, len(fields), GROUP_MAX):
            for fit in _fit_group(gray, geom, fields[k : k + GROUP_MAX]):
                fits[fit.name] = fit
    _follow_curl(gray, geom, t, groups, fits)
    grid = GridFit(fields={f.name: fits[f.name] for f in t.fields})
    _place_unfound(grid)
    return grid


def _follow_curl(gray: np.ndarray, geom: PageGeometry, t: Template, groups: dict[tuple, list[FieldSpec]],
                 fits: dict[str, FieldFit]) -> None:
    """Search again, in place, the fields whose lines were not found, warped through the local affine map
    the found boxes around each describe (`local_affine`): a strongly curled edge moves, turns and
    enlarges its fields beyond the first search, smoothly. Nearest fields first, each round adding what it
    found to the evidence of the next, so the search follows the curl towards the edge."""
    for _ in range(CURL_ROUNDS):
        lost = [f for f in t.fields if not fits[f.name].found]
        if not lost or len(lost) == len(t.fields):
            return
        boxes = [b for fit in fits.values() for b in fit.boxes if b.found]
        if len(boxes) < 3:  # a field's comb can be found while none of its boxes is: nothing to follow
            return
        centres = np.array([b.centre_mm for b in boxes])
        # This round: the lost fields within reach of the found boxes (the nearest first).
        dist = {f.name: float(np.min(np.hypot(*(centres - _field_centre(f)).T))) for f in lost}
        reach = min(dist.values()) + CURL_STEP_MM
        local = {}
        for f in lost:
            if dist[f.name] <= reach:
                A = local_affine(fits.values(), _field_centre(f))
                if A is not None:
                    local[f.name] = A
        if not local:
            return
        # Near a curled edge a field also turns, faster than the boxes farther in can tell: each is tried
        # turned by CURL_TURNS_DEG about its centre, and the turn its lines fit best is kept.
        best: dict[str, FieldFit] = {}
        for turn in CURL_TURNS_DEG:
            corrections = {n: _turned(A, _field_centre(t.field_map[n]), turn) for n, A in local.items()}
            for fields in groups.values():
                again = [f for f in fields if f.name in corrections]
                for k in range(0, len(again), GROUP_MAX):
                    for fit in _fit_group(gray, geom, again[k : k + GROUP_MAX], corrections):
                        if fit.found and (fit.name not in best or fit.score > best[fit.name].score):
                            best[fit.name] = fit
        if not best:
            return
        fits.update(best)


def _turned(A: np.ndarray, centre: tuple[float, float], deg: float) -> np.ndarray:
    """The affine map `A` after a turn of `deg` degrees of the page about `centre` (mm)."""
    if deg == 0:
        return A
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    cx, cy = centre
    R = np.array([[c, -s, cx - c * cx + s * cy], [s, c, cy - s * cx - c * cy], [0.0, 0.0, 1.0]])
    return (np.vstack([A, [0.0, 0.0, 1.0]]) @ R)[:2]


def local_affine(fields: Iterable[FieldFit], at_mm: tuple[float, float]) -> np.ndarray | None:
    """The affine map (2 x 3, page mm -> page mm under the homography) that the found boxes describe around
    a page point: weighted least squares on their centres and offsets, nearer boxes weighing more
    (Gaussian, `CURL_SIGMA_MM`). A translation alone when the boxes near it do not span two directions;
    None when fewer than three boxes were found."""
    boxes = [b for f in fields for b in f.boxes if b.found]
    if len(boxes) < 3:
        return None
    c = np.array([b.centre_mm for b in boxes])
    moved = c + np.array([(b.dx_mm, b.dy_mm) for b in boxes])
    d2 = np.sum((c - at_mm) ** 2, axis=1)
    w = np.exp(-0.5 * (d2 - d2.min()) / CURL_SIGMA_MM**2)
    sw = np.sqrt(w)[:, None]
    X = np.column_stack([c - at_mm, np.ones(len(c))])  # centred on the point: a well-conditioned fit
    spread = np.linalg.svd((c - np.average(c, axis=0, weights=w)) * sw, compute_uv=False) / np.sqrt(w.sum())
    if spread[-1] < 3.0:  # boxes along a line (weighted spread under 3 mm across it): no turn or stretch known
        off = np.average(moved - c, axis=0, weights=w)
        return np.array([[1.0, 0.0, off[0]], [0.0, 1.0, off[1]]])
    coef, *_ = np.linalg.lstsq(X * sw, moved * sw, rcond=None)  # (3, 2): [M^T; t'] in centred coordinates
    M = coef[:2].T
    t_ = coef[2] - M @ np.asarray(at_mm)
    return np.column_stack([M, t_])


def sharpen_strips(grid: GridFit) -> None:
    """Undo part of the blur of each field's strip, in place, before its boxes are cut: an unsharp mask
    whose Gaussian is the blur the field's own printed lines show (their width beyond a crisp line's,
    `SHARP_LINE_MM`; a Gaussian of sigma s widens a line's area/peak by about 2.5 s), at `UNSHARP_AMOUNT`.
    A sharp strip (lines under ~0.47 mm) is left as it is."""
    for fit in grid.fields.values():
        widths = [b.width_mm for b in fit.boxes if b.found and np.isfinite(b.width_mm)]
        if not widths:
            continue
        w = float(np.median(widths))
        sigma_mm = np.sqrt(max(w * w - SHARP_LINE_MM**2, 0.0)) / 2.5
        if sigma_mm < 0.08:
            continue
        strip = fit.strip.astype(np.float32)
        blurred = cv2.GaussianBlur(strip, (0, 0), sigma_mm * BOX_PX_PER_MM)
        fit.strip = np.clip(strip + UNSHARP_AMOUNT * (strip - blurred) + 0.5, 0, 255).astype(np.uint8)


@lru_cache(maxsize=256)
def _field_centre(f: FieldSpec) -> tuple[float, float]:
    """Mean of the field's box centres (page mm); templates are immutable, so each is computed once."""
    xs = [b.x_mm + b.w_mm / 2 for b in f.boxes]
    ys = [b.y_mm + b.h_mm / 2 for b in f.boxes]
    return float(np.mean(xs)), float(np.mean(ys))


def local_offset(fields: Iterable[FieldFit], at_mm: tuple[float, float], k: int = 3) -> tuple[float, float] | None:
    """Offset (mm) of the sheet around a page point, from the `k` nearest boxes found (inverse-distance
    weighted); None when fewer than two were found."""
    boxes = [b for f in fields for b in f.boxes if b.found]
    if len(boxes) < 2:
        return None
    c = np.array([b.centre_mm for b in boxes])
    d = np.hypot(*(c - at_mm).T)
    near = np.argsort(d)[:k]
    w = 1.0 / np.maximum(d[near], 5.0)
    off = np.array([(boxes[i].dx_mm, boxes[i].dy_mm) for i in near])
    return float(np.sum(off[:, 0] * w) / w.sum()), float(np.sum(off[:, 1] * w) / w.sum())


def _place_unfound(grid: GridFit) -> None:
    """A box whose lines were not found (a hard shadow's edge, ink over them) takes the median offset of the
    found boxes of its own field when two or more were found (one strip, one comb of lines: they moved
    together), else of the found boxes within NEIGHBOUR_MM: a curled sheet moves neighbours together. How
    much they disagree is its uncertainty, which the gate weighs (`quality.unfound_offset_mm`). Its own
    field first: the boxes 30 mm around also span a fold or a curl's slope the field itself does not (on a
    second seed of bench/read.py's hard set two sheets were refused as not flat, at 0.9 and 1.9 mm of
    disagreement around, 0.1 mm within the field, that read every field right)."""
    found = [b for b in grid.boxes() if b.found]
    if len(found) == len(grid.boxes()):
        return
    centres = np.array([b.centre_mm for b in found]).reshape(-1, 2)
    offsets = np.array([(b.dx_mm, b.dy_mm) for b in found]).reshape(-1, 2)
    for fit in grid.fields.values():
        siblings = np.array([(b.dx_mm, b.dy_mm) for b in fit.boxes if b.found]).reshape(-1, 2)
        for j, b in enumerate(fit.boxes):
            if b.found:
                continue
            if fit.found and len(siblings) >= 2:
                evidence = siblings
            else:
                near = np.hypot(*(centres - b.centre_mm).T) <= NEIGHBOUR_MM if len(centres) else np.zeros(0, bool)
                if near.sum() < 2:
                    fit.boxes[j] = replace(b, uncertainty_mm=float("inf"))
                    continue
                evidence = offsets[near]
            med = np.median(evidence, axis=0)
            spread = float(np.max(np.hypot(*(evidence - med).T)))
            fit.boxes[j] = replace(b, dx_mm=float(med[0]), dy_mm=float(med[1]), uncertainty_mm=spread)
