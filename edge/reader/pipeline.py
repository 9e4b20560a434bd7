"""read_sheet: photo bytes in, a ReadingResult out. Pure: no files, no network, no globals.

decode -> markers -> homography -> QR (form + TPS) -> box grid (each box found by its printed lines; the
homography refitted on them) -> capture gate (measured on the box lines) -> digit boxes -> one batched
int8 inference -> bubbles -> field values -> checks as error correction -> statuses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from tpskit.edge.texts import refusal
from tpskit.forms import Template, parse_qr_payload

from . import quality
from .bubbles import BUBBLE_PX_PER_MM, BubbleRow, bubble_region, read_bubbles
from .decode import UnreadablePhoto, decode_photo, release_freed_memory
from .digit_model import DigitModel
from .geometry import PageGeometry, geometry_from_points, marker_page_corners, warp_region
from .grid import SEGMENTS, GridFit, fit_grid, local_offset, sharpen_strips
from .locate import Located, at_full_size, locate_sheet, markers_sharpness, page_extent
from .normalise import BOX_PX_PER_MM, batch_to_model_input
from .qr import QUIET_INSIDE, read_qr_grid
from .resolve import DEFAULT_MARGIN, DEFAULT_NODE_BUDGET, DEFAULT_SLIP_PRIOR, FieldEvidence, check_holds, resolve
from .trace import Measure, Refused, Trace
from .types import EMPTY, BoxReading, CheckResult, FieldReading, ReadingResult
from .values import FieldLikelihood, bubble_likelihoods, field_candidates

#: A field whose best value has at least this probability, with digits and bubbles agreeing, is `ok`
#: on its own. Calibrated by bench/calibrate.py (models/digits_int8.json, "calibration").
DEFAULT_CONFIDENCE = 0.99
#: Every box at least this likely empty, and no bubble filled: nothing was written on the sheet.
BLANK_BOX_P = 0.9
QR_PX_PER_MM = 4.0
#: Symbol sizes (modules) whose corners are tried first: a "TPSFORM/1;form=...;tps=<13 digits>" payload at
#: error level M is 29 modules (version 3). Other sizes are found by the detector's own search.
QR_SIZES_FIRST = (29,)
#: A sheet with fewer working-image pixels per mm than this at half size is decoded at full size: the
#: digit boxes are read at 6 px/mm, and a thin pen stroke needs ~1.2 source pixels (bench/gate.py, "size":
#: at half size, 6 px/mm of the photo read 99.40 % of boxes, at full size 99.55 %, and the printed lines
#: measure 0.64 mm wide instead of 0.45). A full decode costs a 12 MP image in memory: only when needed.
FULL_DECODE_BELOW_PX_PER_MM = 4.0
#: Each box is read at these offsets (mm) and the probabilities averaged: a digit the model sees the same
#: way from every position is read with confidence, one whose reading depends on a third of a millimetre
#: is not. On bench/read.py's normal sheets (single-CNN model) it took forms read unaided from 89.0 to
#: 90.5 % and fields sent to review from 5.5 to 4.8 %, for about 10 ms per photo.
DEFAULT_SHIFTS_MM: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.35, 0.0), (-0.35, 0.0), (0.0, 0.35), (0.0, -0.35))
#: Only a box read below this probability where it was found is read at the other shifts: most boxes are
#: read at p > 0.999 at once, and their other readings changed nothing measurable. On bench/read.py's
#: mixed and officer sets (860 photos, model v4), against reading every box at every shift: no silent error
#: either way, forms read unaided 95.0 vs 94.5 % (normal), 79.2 vs 78.8 % (hard), 80.0 % both (officers),
#: fields correct within 0.07 %, for 9 % (normal) to 18 % (hard) of the boxes read again instead of 100 %.
DEFAULT_STEADY_P = 0.999
#: The classes that writers the model never saw push their look-alikes into, near-certain though the model is:
#: an open 4 read as 9, a 1 with a long flag read as 7 (the top confusions on held-out officers' boxes, at
#: p up to 0.9998). One writer misreads every field alike, so misread fields can balance a check between
#: them and the checks then "prove" the wrong values. A box read as one of these classes must be at least
#: STRICT_P sure for its field to stand alone; below, the field is a suspect that the checks must settle.
STRICT_CLASSES: tuple[int, ...] = (7, 9)
#: Chosen by bench/calibrate.py (--strict) on its own held-out officers' photos; see models/digits_int8.json.
DEFAULT_STRICT_P = 0.99995

#: STRICT_CLASSES as a look-up by class.
_STRICT = np.isin(np.arange(11), STRICT_CLASSES)

DebugSink = Callable[[str, np.ndarray], None]


@dataclass(frozen=True)
class ReadOptions:
    #: The kit's own TPS: a sheet whose QR names another TPS is refused.
    expected_tps: str | None = None
    #: Registered voters of the TPS (voter registry, at provisioning): tightens fields with a max_value.
    registered_voters: int | None = None
    confidence: float = DEFAULT_CONFIDENCE
    margin: float = DEFAULT_MARGIN
    node_budget: int = DEFAULT_NODE_BUDGET
    #: Offsets (mm) at which a box is read; probabilities are averaged over them.
    shifts_mm: tuple[tuple[float, float], ...] = DEFAULT_SHIFTS_MM
    #: A box whose best class has at least this probability where it was found is not read at the other
    #: shifts (above 1: every box is read at every shift).
    steady_p: float = DEFAULT_STEADY_P
    #: Prior probability that a sheet as written breaks a check (see resolve.py).
    slip_prior: float = DEFAULT_SLIP_PRIOR
    #: A box read as one of STRICT_CLASSES below this probability leaves its field unsure.
    strict_p: float = DEFAULT_STRICT_P
    #: False: measure the capture on the box grid but do not refuse on it (too dark, out of focus, glare,
    #: not flat); for calibrating the gate's thresholds (bench/gate.py), never on a kit.
    enforce_gate: bool = True
    #: Receives named debug images (the rectified sheet with every reading drawn); None costs nothing.
    debug: DebugSink | None = field(default=None, compare=False)


@dataclass
class _Clock:
    timings: dict[str, float] = field(default_factory=dict)
    t: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self.t) * 1000.0
        self.t = now


def _gate(grid: GridFit, t: Template, trace: Trace) -> None:
    """Refuse a capture whose boxes cannot be read, from the printed box lines where the digits are.

    Every measurement is made (and traced) before the first failing one, in this order, is raised."""
    boxes = [b for f in t.fields for b in f.boxes]
    fits = grid.boxes()

    def where(i: int, label: str) -> tuple[tuple[float, float, float, float], str]:
        b, fit = boxes[i], fits[i]
        return (b.x_mm + fit.dx_mm, b.y_mm + fit.dy_mm, b.w_mm, b.h_mm), label

    faded = quality.glare_stretches(grid)
    contrast, darkest = quality.darkest_box_contrast(grid)
    widths = np.array([f.width_mm for f in fits])
    checks = [
        ("glare", trace.measure(Measure("faded line stretches", float(faded.max()), quality.GLARE_MAX_FADED,
                                        "above")),
         [where(int(j), f"{int(faded[j])}/{4 * SEGMENTS}") for j in np.flatnonzero(faded > quality.GLARE_MAX_FADED)]),
        ("too_dark", trace.measure(Measure("line contrast", contrast, quality.MIN_LINE_CONTRAST, "below", " grey")),
         [where(darkest, f"{contrast:.0f}")]),
        ("out_of_focus", trace.measure(Measure("line width", quality.blurriest_line_width(grid),
                                               quality.MAX_LINE_WIDTH_MM, "above", " mm")),
         [where(j, f"{widths[j]:.2f}") for j in np.flatnonzero(widths > quality.MAX_LINE_WIDTH_MM)]),
        ("sheet_not_flat", trace.measure(Measure("unfound box offset", quality.unfound_offset_mm(grid),
                                                 quality.MAX_UNFOUND_OFFSET_MM, "above", " mm")),
         [where(j, "?") for j, fit in enumerate(fits) if not fit.found]),
    ]
    for reason, m, bad in checks:
        if m.failed:
            trace.bad_boxes.extend(bad)
            raise Refused(reason, m)


def _grid_error(located: Located, grid: GridFit, t: Template) -> tuple[float, float]:
    """Reprojection error of the printed box grid (mm, largest over the boxes found): under the markers'
    homography, and under one refitted on the markers and the grid together. A flat sheet has both small;
    a curled one keeps the second large (no homography fits it), which does not matter to the reading:
    every box is cut where its own lines are."""
    geom = located.geom
    src, dst = [], []
    for i, c in located.markers.items():
        src.append(marker_page_corners(t.markers, i))
        dst.append(c)
    centres, seen = [], []
    for f in t.fields:
        for b, fit in zip(f.boxes, grid.fields[f.name].boxes, strict=True):
            if fit.found:
                centres.append((b.x_mm + b.w_mm / 2, b.y_mm + b.h_mm / 2))
                seen.append((b.x_mm + b.w_mm / 2 + fit.dx_mm, b.y_mm + b.h_mm / 2 + fit.dy_mm))
    if len(centres) < 4:
        return float("nan"), float("nan")
    c, s = np.array(centres), np.array(seen)
    before = float(np.max(np.hypot(*(s - c).T)))
    src.append(c)
    dst.append(geom.to_image(s))
    refit = geometry_from_points(np.concatenate(src), np.concatenate(dst), t.page.width_mm, t.page.height_mm)
    if refit is None:
        return before, before
    back = cv2.perspectiveTransform(geom.to_image(s).reshape(-1, 1, 2), np.linalg.inv(refit.H)).reshape(-1, 2)
    after = float(np.max(np.hypot(*(back - c).T)))
    return before, after


def _read_qr(gray: np.ndarray, templates: Mapping[str, Template], geom: PageGeometry, t: Template,
             offset: tuple[float, float] = (0.0, 0.0)) -> tuple[str, str]:
    detector = cv2.QRCodeDetector()
    spots = {(q.qr.x_mm + offset[0], q.qr.y_mm + offset[1], q.qr.size_mm) for q in templates.values()
             if q.markers == t.markers and q.page == t.page}
    for x, y, s in sorted(spots):
        # Where the markers say the symbol is: OpenCV decodes it from its four corners without searching.
        pad = 2.0
        region = warp_region(gray, geom, x - pad, y - pad, s + 2 * pad, s + 2 * pad, QR_PX_PER_MM)
        for n in QR_SIZES_FIRST:
            step = s / (n + 2 * QUIET_INSIDE)
            a = (pad + QUIET_INSIDE * step) * QR_PX_PER_MM - 0.5
            b = (pad + s - QUIET_INSIDE * step) * QR_PX_PER_MM - 0.5
            corners = np.array([[[a, a], [b, a], [b, b], [a, b]]], np.float32)
            text, _ = detector.decode(region, corners)
            payload = parse_qr_payload(text) if text else None
            if payload is not None:
                return payload.form_code, payload.tps
        for ppm, pad in ((QR_PX_PER_MM, 2.0), (6.0, 2.0)):
            region = warp_region(gray, geom, x - pad, y - pad, s + 2 * pad, s + 2 * pad, ppm)
            text, _, _ = detector.detectAndDecode(region)
            payload = parse_qr_payload(text) if text else None
            if payload is not None:
                return payload.form_code, payload.tps
        # Blur merges the modules before it harms the digits: read the symbol from its module grid.
        text = read_qr_grid(gray, geom, x, y, s).text
        payload = parse_qr_payload(text) if text else None
        if payload is not None:
            return payload.form_code, payload.tps
    raise Refused("qr_unreadable")


def _layout_grids(gray: np.ndarray, templates: Mapping[str, Template], located: Located) -> list[GridFit]:
    """The box grid of every template sharing the markers found (the QR, which names one, would not read)."""
    t = located.template
    return [fit_grid(gray, located.geom, c) for c in templates.values() if c.markers == t.markers and c.page == t.page]


def _qr_failure(gray: np.ndarray, located: Located, fits: list[GridFit], trace: Trace) -> Refused:
    """Why the QR would not decode, in the officer's terms: too dark, out of focus, glare over it, or the code
    itself (covered, smudged, torn). The box grid of whichever template fits the layout best (they share
    their markers) measures the light and the focus, as the gate does."""
    t = located.template
    grid = max(fits, key=lambda g: g.found_fraction, default=None)
    # The boxes' lines measured the light on the sheet itself: when it passed, a dark, flat QR is covered
    # (a sticker, a scrap of paper, a thumb), not in the dark.
    lit = grid is not None and grid.found_fraction >= 0.5
    if lit:
        contrast, _ = quality.darkest_box_contrast(grid)
        dark = trace.measure(Measure("line contrast", contrast, quality.MIN_LINE_CONTRAST, "below", " grey"))
        if dark.failed:
            return Refused("too_dark", dark)
        width = trace.measure(Measure("line width", quality.blurriest_line_width(grid),
                                      quality.QR_MAX_LINE_WIDTH_MM, "above", " mm"))
        if width.failed:
            return Refused("out_of_focus", width)
    q = t.qr
    region = warp_region(gray, located.geom, q.x_mm, q.y_mm, q.size_mm, q.size_mm, 4.0)
    lo, hi = np.percentile(region, [5, 95])
    dark = trace.measure(Measure("QR contrast", float(hi - lo), quality.MIN_LINE_CONTRAST, "below", " grey"))
    if dark.failed and hi < 128 and not lit:
        return Refused("too_dark", dark)
    glare = trace.measure(Measure("QR saturated", float((region >= 250).mean()), quality.QR_GLARE_FRACTION, "above"))
    if glare.failed:
        return Refused("glare", glare)
    sharp = trace.measure(Measure("marker sharpness", markers_sharpness(gray, t, located.markers),
                                  quality.MIN_SHARPNESS, "below"))
    if sharp.failed:
        return Refused("out_of_focus", sharp)
    return Refused("qr_unreadable")


def _crop(strip: np.ndarray, u: int, v: int, w: int, h: int) -> np.ndarray:
    """strip[v:v+h, u:u+w], edge-replicated where it would leave the strip."""
    H, W = strip.shape
    if u >= 0 and v >= 0 and u + w <= W and v + h <= H:
        return strip[v : v + h, u : u + w]
    ys = np.clip(np.arange(v, v + h), 0, H - 1)
    xs = np.clip(np.arange(u, u + w), 0, W - 1)
    return strip[np.ix_(ys, xs)]


def _box_crops(grid: GridFit, t: Template, shifts_mm: Sequence[tuple[float, float]],
               only: set[int] | None = None) -> list[np.ndarray]:
    """Every digit box (or the boxes numbered in `only`, in template order) at every shift, cut from its
    field's strip where its printed lines were found.

    Ordered shift-major: all boxes at the first shift, then all at the second...
    """
    ppm = BOX_PX_PER_MM
    per_shift: list[list[np.ndarray]] = [[] for _ in shifts_mm]
    i = -1
    for f in t.fields:
        fit = grid.fields[f.name]
        for k, b in enumerate(f.boxes):
            i += 1
            if only is not None and i not in only:
                continue
            w, h = round(b.w_mm * ppm), round(b.h_mm * ppm)
            for j, shift in enumerate(shifts_mm):
                u, v = fit.box_origin_px(f, k, shift)
                per_shift[j].append(_crop(fit.strip, u, v, w, h))
    return [c for crops in per_shift for c in crops]


def _read_boxes(grid: GridFit, t: Template, model: DigitModel, opts: ReadOptions, clock: _Clock) -> np.ndarray:
    """(boxes, 11) class probabilities: every box read where it was found; a box the model is not sure of
    there (best class below `opts.steady_p`) is read again at the other shifts and the probabilities of all
    its readings averaged."""
    shifts = opts.shifts_mm or ((0.0, 0.0),)
    # Normalised one shift at a time: the float work arrays stay small (the kit has little memory).
    first = batch_to_model_input(_box_crops(grid, t, shifts[:1]))
    clock.lap("boxes")
    probs = np.asarray(model.predict(first), np.float64)
    clock.lap("infer")
    unsure = np.flatnonzero(probs.max(axis=1) < opts.steady_p)
    if len(shifts) == 1 or len(unsure) == 0:
        return probs
    more = batch_to_model_input(_box_crops(grid, t, shifts[1:], only=set(unsure.tolist())))
    clock.lap("boxes")
    # In batches no larger than the sheet's own: the runtime's activation arena follows the batch size.
    size = len(first)
    extra = np.concatenate([np.asarray(model.predict(more[k : k + size]), np.float64)
                            for k in range(0, len(more), size)]).reshape(len(shifts) - 1, len(unsure), -1)
    probs[unsure] = (probs[unsure] + extra.sum(axis=0)) / len(shifts)
    clock.lap("infer")
    return probs


def _bubble_rows(gray: np.ndarray, geom: PageGeometry, t: Template, grid: GridFit) -> dict[str, list[BubbleRow]]:
    """Answer bubbles per field, warped where the field's own boxes were found (a curled sheet moves both)."""
    rows: dict[str, list[BubbleRow]] = {}
    for f in t.fields:
        if f.bubbles is None:
            continue
        fit = grid.fields[f.name]
        found = [b for b in fit.boxes if b.found]
        # In the field's own strip geometry (a curled field's local correction included).
        offs = [np.subtract(fit.strip_mm(b.centre_mm, (b.dx_mm, b.dy_mm)), b.centre_mm) for b in found]
        dx, dy = (float(v) for v in np.mean(offs, axis=0)) if offs else (0.0, 0.0)
        x, y, w, h = bubble_region(f.bubbles)
        region = warp_region(gray, fit.geometry(geom), x + dx, y + dy, w, h, BUBBLE_PX_PER_MM)
        rows[f.name] = read_bubbles(region, f.bubbles, (x, y))
    return rows


def _rejected(photo: str | None, reason: str, clock: _Clock, params: Mapping[str, str] | None = None,
              template: Template | None = None, tps: str | None = None,
              gate: Mapping[str, float] | None = None) -> ReadingResult:
    return ReadingResult(photo=photo, template=template.id if template else None,
                         form_code=template.form_code if template else None, tps=tps, status="rejected",
                         reason=reason, message=refusal(reason, **(params or {})),
                         timings_ms=clock.timings, gate=dict(gate or {}))


def _gate_summary(trace: Trace, located: Located | None, grid_error: tuple[float, float] | None
                  ) -> dict[str, float]:
    """The gate's measurements for the result (a technician tells a real fault from a gate fault)."""
    out = {m.name.replace(" ", "_"): round(m.value, 4) for m in trace.measures}
    if located is not None:
        out["markers_confirmed"] = len(trace.markers_confirmed)
        out["markers_outside"] = len(located.outside)
    if grid_error is not None:
        out["grid_error_markers_mm"] = round(grid_error[0], 3)
        out["grid_error_mm"] = round(grid_error[1], 3)
    return out


def read_sheet(data: bytes, templates: Mapping[str, Template], model: DigitModel,
               options: ReadOptions | None = None, photo: str | None = None) -> ReadingResult:
    """Read one photographed sheet. Never raises on bad input: a refusal is a `rejected` result.

    An error inside the reader itself (a defect that some photo triggers) is the refusal
    `reader_error`, so that neither the kit's loop nor `tpskit read` over many photos stops on one
    photo; the fuzzer (tests/fuzz) treats that reason as a crash to fix."""
    try:
        return _read_sheet(data, templates, model, options, photo)
    except Exception:
        return _rejected(photo, "reader_error", _Clock())


def _read_sheet(data: bytes, templates: Mapping[str, Template], model: DigitModel,
                options: ReadOptions | None, photo: str | None) -> ReadingResult:
    opts = options or ReadOptions()
    clock = _Clock()
    trace = Trace()
    try:
        decoded = decode_photo(data)
    except UnreadablePhoto:
        return _rejected(photo, "unreadable_file", clock)
    clock.lap("decode")
    gray = decoded.gray
    located: Located | None = None
    grid_error: tuple[float, float] | None = None
    t: Template | None = None
    tps: str | None = None
    try:
        located = locate_sheet(gray, decoded.scale, templates, trace)
        if decoded.scale > 1 and located.geom.px_per_mm < FULL_DECODE_BELOW_PX_PER_MM:
            # A sheet far from the lens: half size leaves too few pixels per pen stroke. Decode it all.
            clock.lap("markers")
            k = decoded.scale
            del gray, decoded  # the half-size image goes before the full one comes
            release_freed_memory()
            # The frame right of and below the sheet is not kept: around a small sheet it is much of the
            # 12 MP (issue 8).
            decoded = decode_photo(data, full=True, within=page_extent(located, k))
            gray = decoded.gray
            clock.lap("decode")
            located = at_full_size(located, trace, gray, k)
        clock.lap("markers")
        small = trace.measure(Measure("px/mm", located.geom.px_per_mm * decoded.scale,
                                      quality.MIN_FULLRES_PX_PER_MM, "below"))
        if small.failed and opts.enforce_gate:
            raise Refused("sheet_too_small", small)
        try:
            form_code, tps = _read_qr(gray, templates, located.geom, located.template)
        except Refused:
            # A curled corner moves the QR away from where the markers put it: look where the box grid
            # around it says it went; only then say why it cannot be read.
            fits = _layout_grids(gray, templates, located)
            q = located.template.qr
            near = local_offset((f for g in fits for f in g.fields.values()),
                                (q.x_mm + q.size_mm / 2, q.y_mm + q.size_mm / 2)) if fits else None
            try:
                if near is None or max(abs(near[0]), abs(near[1])) < 0.5:
                    raise
                form_code, tps = _read_qr(gray, templates, located.geom, located.template, near)
            except Refused:
                raise _qr_failure(gray, located, fits, trace) from None
        clock.lap("qr")
        if form_code not in templates:
            raise Refused("unknown_form", form=form_code)
        t = templates[form_code]
        geom = located.geom
        grid = fit_grid(gray, geom, t)
        grid_error = _grid_error(located, grid, t)
        clock.lap("grid")
        try:
            _gate(grid, t, trace)
        except Refused:
            if opts.enforce_gate:
                raise
        if opts.expected_tps is not None and tps != opts.expected_tps:
            raise Refused("wrong_tps", tps=tps, expected=opts.expected_tps)
        clock.lap("gate")
    except Refused as r:
        if opts.debug is not None:
            from .debug import draw_refusal

            opts.debug("refused", draw_refusal(gray, trace, r, templates.get(r.params.get("form", "")) or t))
        return _rejected(photo, r.reason, clock, r.params, t, tps, _gate_summary(trace, located, grid_error))

    sharpen_strips(grid)
    probs = _read_boxes(grid, t, model, opts, clock)
    bubble_rows = _bubble_rows(gray, geom, t, grid)
    clock.lap("bubbles")

    result = _interpret(t, tps, probs, bubble_rows, opts, clock, photo)
    result.gate = _gate_summary(trace, located, grid_error)
    if opts.debug is not None:
        from .debug import draw_reading

        opts.debug("sheet", draw_reading(gray, geom, t, result, grid, trace))
    return result


def strict_doubt(raw: np.ndarray, strict_p: float) -> bool:
    """Whether a box of the field (its model readings, before the bubbles) is read as one of STRICT_CLASSES
    at less than `strict_p`."""
    top = raw.argmax(axis=1)
    return bool(np.any(_STRICT[top] & (raw.max(axis=1) < strict_p)))


def _interpret(t: Template, tps: str, probs: np.ndarray, bubble_rows: Mapping[str, list[BubbleRow]],
               opts: ReadOptions, clock: _Clock, photo: str | None) -> ReadingResult:
    # Blank sheet: every box empty and no bubble filled.
    any_bubble = any(r.filled for rows in bubble_rows.values() for r in rows)
    if not any_bubble and bool(np.all(probs[:, EMPTY] >= BLANK_BOX_P)):
        return _rejected(photo, "blank_sheet", clock, template=t, tps=tps)

    evidence: dict[str, FieldEvidence] = {}
    boxes_out: dict[str, list[BoxReading]] = {}
    # Each box's classes by probability (row by row, as np.argsort of each row alone).
    ranked = np.argsort(-probs, axis=1)
    agreement: dict[str, str | None] = {}
    i = 0
    for f in t.fields:
        p = probs[i : i + f.digits].copy()
        i += f.digits
        rows = bubble_rows.get(f.name)
        disagree = False
        if rows is not None:
            for k, row in enumerate(rows):
                if row.faint:
                    continue  # a mark too light to count either way: the digits alone decide this box
                top = int(np.argmax(p[k]))
                if row.reading == "several" or (row.reading is None and top != EMPTY) or (
                        isinstance(row.reading, int) and row.reading != top):
                    disagree = True
                p[k] = p[k] * bubble_likelihoods(list(row.filled))
                p[k] /= p[k].sum()
            agreement[f.name] = "disagree" if disagree else "agree"
        else:
            agreement[f.name] = None
        likelihood = FieldLikelihood(p)
        cands = field_candidates(p, likelihood=likelihood)
        top_ll = cands[0].log_likelihood if cands else -math.inf
        conf = math.exp(top_ll) if cands else 0.0
        upper = f.upper_bound(opts.registered_voters)
        raw = probs[i - f.digits : i]
        evidence[f.name] = FieldEvidence(
            name=f.name, upper=upper,
            log_likelihood=likelihood,
            candidates=[c.value for c in cands],
            trusted=bool(cands) and conf >= opts.confidence and not disagree and cands[0].value <= upper
            and not strict_doubt(raw, opts.strict_p),
        )
        boxes_out[f.name] = []
        for k in range(f.digits):
            c0, c1 = (int(c) for c in ranked[i - f.digits + k, :2])
            bubble = rows[k].reading if rows is not None else None
            boxes_out[f.name].append(BoxReading(
                digit=None if c0 == EMPTY else c0, p=round(float(raw[k, c0]), 6),
                alt=None if c1 == EMPTY else c1, alt_p=round(float(raw[k, c1]), 6), bubble=bubble))

    res = resolve(evidence, t.checks, margin=opts.margin, node_budget=opts.node_budget, slip_prior=opts.slip_prior)
    clock.lap("resolve")
    top = {n: (e.candidates[0] if e.candidates else None) for n, e in evidence.items()}
    fields: dict[str, FieldReading] = {}
    for f in t.fields:
        e = evidence[f.name]
        value = res.values[f.name]
        own_conf = math.exp(e.log_likelihood(value)) if value is not None else 0.0
        if res.adopted and f.name in res.variables and (value != top[f.name] or not e.trusted):
            status, conf = "resolved_by_checks", res.posterior()
        elif res.adopted or f.name not in res.variables:
            status, conf = ("ok" if e.trusted else "review"), own_conf
        else:
            # Nothing adopted: fields in a failing check, or unsure, wait for the officer.
            in_failing = any(f.name in c.fields and not check_holds(c, res.values) for c in t.checks)
            status = "ok" if e.trusted and not in_failing else "review"
            conf = own_conf
        fields[f.name] = FieldReading(name=f.name, value=value, confidence=conf, status=status,  # type: ignore[arg-type]
                                      boxes=boxes_out[f.name], ocr_value=top[f.name],
                                      ocr_confidence=math.exp(e.log_likelihood(top[f.name]))
                                      if top[f.name] is not None else 0.0,
                                      bubbles=agreement[f.name])  # type: ignore[arg-type]
    checks = [CheckResult(id=c.id, passed=check_holds(c, res.values)) for c in t.checks]
    all_ok = all(fr.status in ("ok", "resolved_by_checks") for fr in fields.values())
    status = "ok" if all_ok and all(c.passed for c in checks) else "review"
    return ReadingResult(photo=photo, template=t.id, form_code=t.form_code, tps=tps, status=status,
                         fields=fields, checks=checks, timings_ms=clock.timings)
