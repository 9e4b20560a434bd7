"""read_sheet: photo bytes in, a ReadingResult out. Pure: no files, no network, no globals.

decode -> markers -> homography -> capture gate -> QR (form + TPS) -> digit boxes -> one batched int8
inference -> bubbles -> field values -> checks as error correction -> statuses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from tpskit.forms import Template, parse_qr_payload

from . import quality
from .bubbles import BUBBLE_PX_PER_MM, BubbleRow, bubble_region, read_bubbles
from .decode import UnreadablePhoto, decode_photo
from .digit_model import DigitModel
from .geometry import PageGeometry, detect_markers, page_geometry, warp_region
from .messages import officer_message
from .normalise import BOX_PX_PER_MM, batch_to_model_input
from .resolve import DEFAULT_MARGIN, DEFAULT_NODE_BUDGET, DEFAULT_SLIP_PRIOR, FieldEvidence, check_holds, resolve
from .types import EMPTY, BoxReading, CheckResult, FieldReading, ReadingResult
from .values import bubble_likelihoods, field_candidates, value_log_likelihood

#: A field whose best value has at least this probability, with digits and bubbles agreeing, is `ok`
#: on its own. Calibrated by bench/calibrate.py (models/digits_int8.json, "calibration").
DEFAULT_CONFIDENCE = 0.99
#: Every box at least this likely empty, and no bubble filled: nothing was written on the sheet.
BLANK_BOX_P = 0.9
QR_PX_PER_MM = 4.0
#: Each box is read at these offsets (mm) and the probabilities averaged: a digit the model sees the same
#: way from every position is read with confidence, one whose reading depends on a third of a millimetre
#: is not. On bench/read.py's normal sheets (single-CNN model) it took forms read unaided from 89.0 to
#: 90.5 % and fields sent to review from 5.5 to 4.8 %, for about 10 ms per photo.
DEFAULT_SHIFTS_MM: tuple[tuple[float, float], ...] = ((0.0, 0.0), (0.35, 0.0), (-0.35, 0.0), (0.0, 0.35), (0.0, -0.35))

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
    #: Offsets (mm) at which every box is read; probabilities are averaged over them.
    shifts_mm: tuple[tuple[float, float], ...] = DEFAULT_SHIFTS_MM
    #: Prior probability that a sheet as written breaks a check (see resolve.py).
    slip_prior: float = DEFAULT_SLIP_PRIOR
    #: Receives named debug images (the rectified sheet with every reading drawn); None costs nothing.
    debug: DebugSink | None = field(default=None, compare=False)


class _Refused(Exception):
    def __init__(self, reason: str, **params: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.params = params


@dataclass
class _Clock:
    timings: dict[str, float] = field(default_factory=dict)
    t: float = field(default_factory=time.perf_counter)

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = self.timings.get(stage, 0.0) + (now - self.t) * 1000.0
        self.t = now


def _locate_sheet(gray: np.ndarray, scale: int, templates: Mapping[str, Template]
                  ) -> tuple[Template, PageGeometry]:
    """Markers and homography for the first template layout whose four markers are all in view.

    When a marker is missing, say why in the officer's terms: no sheet at all, too dark, out of focus,
    too far, or a corner covered.
    """
    layouts: dict[tuple, Template] = {}
    for t in templates.values():
        key = (t.markers.model_dump_json(), t.page.width_mm, t.page.height_mm)
        layouts.setdefault(key, t)
    best_missing: tuple[Template, list[str], dict[int, np.ndarray]] | None = None
    for t in layouts.values():
        found = detect_markers(gray, t.markers.dictionary)
        ids = {m.id for m in t.markers.items}
        if len(ids & found.keys()) < 4:
            # Small markers (a sheet far away) can vanish on the downscaled copy: look once at full size.
            found = {**detect_markers(gray, t.markers.dictionary, downscale=1), **found}
        ours = {i: c for i, c in found.items() if i in ids}
        if len(ours) == 4:
            geom = page_geometry(t.markers, ours, t.page.width_mm, t.page.height_mm)
            if geom is not None:
                return t, geom
        missing = [m.corner for m in t.markers.items if m.id not in ours]
        if best_missing is None or len(missing) < len(best_missing[1]):
            best_missing = (t, missing, ours)
    assert best_missing is not None
    t, missing, ours = best_missing
    small = quality.small_copy(gray)
    if ours:
        if quality.frame_too_dark(small):
            raise _Refused("too_dark")
        # Blur makes markers vanish: say "out of focus" rather than "covered" when what is seen is soft.
        if _markers_sharpness(gray, t, ours) < quality.MIN_SHARPNESS:
            raise _Refused("out_of_focus")
        geom = page_geometry(t.markers, ours, t.page.width_mm, t.page.height_mm)
        if geom is not None and geom.px_per_mm * scale < quality.MIN_FULLRES_PX_PER_MM:
            raise _Refused("sheet_too_small")
        raise _Refused("marker_missing", corner=missing[0], corners=", ".join(missing))
    if quality.frame_too_dark(small):
        # In a very dark frame even paper is dark: ask for light first, it is the likelier fix.
        raise _Refused("too_dark" if quality.page_in_view(small) or quality.frame_very_dark(small) else "no_sheet")
    if not quality.page_in_view(small):
        raise _Refused("no_sheet")
    if quality.frame_sharpness(small) < quality.MIN_FRAME_SHARPNESS:
        raise _Refused("out_of_focus")
    raise _Refused("no_sheet")


def _markers_sharpness(gray: np.ndarray, t: Template, found: Mapping[int, np.ndarray]) -> float:
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


def _gate(gray: np.ndarray, scale: int, t: Template, geom: PageGeometry) -> np.ndarray:
    """Refuse a capture that cannot be read well; returns the page rectified at GATE_PX_PER_MM."""
    if geom.px_per_mm * scale < quality.MIN_FULLRES_PX_PER_MM:
        raise _Refused("sheet_too_small")
    m = t.markers
    found = {}
    for item in m.items:
        pts = np.array([[item.x_mm, item.y_mm], [item.x_mm + m.size_mm, item.y_mm],
                        [item.x_mm + m.size_mm, item.y_mm + m.size_mm], [item.x_mm, item.y_mm + m.size_mm]])
        found[item.id] = geom.to_image(pts).astype(np.float32)
    if geom.error_mm > 1.5:
        raise _Refused("sheet_not_flat")
    ppm = quality.GATE_PX_PER_MM
    page = warp_region(gray, geom, 0, 0, t.page.width_mm, t.page.height_mm, ppm)
    if float(np.median(page[::3, ::3])) < quality.DARK_PAPER:
        raise _Refused("too_dark")
    if _markers_sharpness(gray, t, found) < quality.MIN_SHARPNESS:
        raise _Refused("out_of_focus")
    return page


def _glare_over_boxes(page: np.ndarray, t: Template) -> bool:
    """Specular glare over any digit box of the template the QR named (page at GATE_PX_PER_MM)."""
    glare = quality.glare_mask(page)
    if not glare.any():
        return False
    ppm = quality.GATE_PX_PER_MM
    for f in t.fields:
        for b in f.boxes:
            x0, y0 = int(b.x_mm * ppm), int(b.y_mm * ppm)
            x1, y1 = math.ceil((b.x_mm + b.w_mm) * ppm), math.ceil((b.y_mm + b.h_mm) * ppm)
            if glare[y0:y1, x0:x1].mean() > quality.GLARE_BOX_FRACTION:
                return True
    return False


def _read_qr(gray: np.ndarray, templates: Mapping[str, Template], geom: PageGeometry, t: Template
             ) -> tuple[str, str]:
    detector = cv2.QRCodeDetector()
    spots = {(q.qr.x_mm, q.qr.y_mm, q.qr.size_mm) for q in templates.values()
             if q.markers == t.markers and q.page == t.page}
    for x, y, s in sorted(spots):
        for ppm, pad in ((QR_PX_PER_MM, 2.0), (6.0, 2.0), (8.0, 3.0), (5.0, 4.0)):
            region = warp_region(gray, geom, x - pad, y - pad, s + 2 * pad, s + 2 * pad, ppm)
            for img in (region, cv2.threshold(region, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)[1]):
                text, _, _ = detector.detectAndDecode(img)
                payload = parse_qr_payload(text) if text else None
                if payload is not None:
                    return payload.form_code, payload.tps
    raise _Refused("qr_unreadable")


def _box_crops(gray: np.ndarray, geom: PageGeometry, t: Template,
               shifts_mm: Sequence[tuple[float, float]]) -> list[np.ndarray]:
    """Every digit box at every shift, rectified at BOX_PX_PER_MM; one warp per field, crops cut from it.

    Ordered shift-major: all boxes at the first shift, then all at the second...
    """
    ppm = BOX_PX_PER_MM
    pad = max((max(abs(dx), abs(dy)) for dx, dy in shifts_mm), default=0.0)
    per_shift: list[list[np.ndarray]] = [[] for _ in shifts_mm]
    for f in t.fields:
        x0 = min(b.x_mm for b in f.boxes) - pad
        y0 = min(b.y_mm for b in f.boxes) - pad
        x1 = max(b.x_mm + b.w_mm for b in f.boxes) + pad
        y1 = max(b.y_mm + b.h_mm for b in f.boxes) + pad
        strip = warp_region(gray, geom, x0, y0, x1 - x0, y1 - y0, ppm)
        for b in f.boxes:
            w, h = round(b.w_mm * ppm), round(b.h_mm * ppm)
            for k, (dx, dy) in enumerate(shifts_mm):
                u0, v0 = round((b.x_mm + dx - x0) * ppm), round((b.y_mm + dy - y0) * ppm)
                per_shift[k].append(strip[v0 : v0 + h, u0 : u0 + w])
    return [c for crops in per_shift for c in crops]


def _rejected(photo: str | None, reason: str, clock: _Clock, params: Mapping[str, str] | None = None,
              template: Template | None = None, tps: str | None = None) -> ReadingResult:
    return ReadingResult(photo=photo, template=template.id if template else None,
                         form_code=template.form_code if template else None, tps=tps, status="rejected",
                         reason=reason, message=officer_message(reason, **(params or {})),
                         timings_ms=clock.timings)


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
    try:
        decoded = decode_photo(data)
    except UnreadablePhoto:
        return _rejected(photo, "unreadable_file", clock)
    clock.lap("decode")
    gray = decoded.gray
    try:
        t, geom = _locate_sheet(gray, decoded.scale, templates)
        clock.lap("markers")
        page = _gate(gray, decoded.scale, t, geom)
        clock.lap("gate")
        form_code, tps = _read_qr(gray, templates, geom, t)
        clock.lap("qr")
    except _Refused as r:
        return _rejected(photo, r.reason, clock, r.params)
    if form_code not in templates:
        return _rejected(photo, "unknown_form", clock, {"form": form_code}, tps=tps)
    t = templates[form_code]
    if _glare_over_boxes(page, t):
        return _rejected(photo, "glare", clock, template=t, tps=tps)
    if opts.expected_tps is not None and tps != opts.expected_tps:
        return _rejected(photo, "wrong_tps", clock, {"tps": tps, "expected": opts.expected_tps}, t, tps)

    shifts = opts.shifts_mm or ((0.0, 0.0),)
    crops = _box_crops(gray, geom, t, shifts)
    n_boxes = len(crops) // len(shifts)
    # Normalised one shift at a time: the float work arrays stay small (the kit has little memory).
    batch = np.concatenate([batch_to_model_input(crops[k : k + n_boxes]) for k in range(0, len(crops), n_boxes)])
    del crops
    clock.lap("boxes")
    probs = np.asarray(model.predict(batch), np.float64).reshape(len(shifts), n_boxes, -1).mean(axis=0)
    clock.lap("infer")

    bubble_rows: dict[str, list[BubbleRow]] = {}
    for f in t.fields:
        if f.bubbles is not None:
            x, y, w, h = bubble_region(f.bubbles)
            region = warp_region(gray, geom, x, y, w, h, BUBBLE_PX_PER_MM)
            bubble_rows[f.name] = read_bubbles(region, f.bubbles, (x, y))
    clock.lap("bubbles")

    result = _interpret(t, tps, probs, bubble_rows, opts, clock, photo)
    if opts.debug is not None:
        from .debug import draw_reading

        opts.debug("sheet", draw_reading(gray, geom, t, result))
    return result


def _interpret(t: Template, tps: str, probs: np.ndarray, bubble_rows: Mapping[str, list[BubbleRow]],
               opts: ReadOptions, clock: _Clock, photo: str | None) -> ReadingResult:
    # Blank sheet: every box empty and no bubble filled.
    any_bubble = any(r.filled for rows in bubble_rows.values() for r in rows)
    if not any_bubble and bool(np.all(probs[:, EMPTY] >= BLANK_BOX_P)):
        return _rejected(photo, "blank_sheet", clock, template=t, tps=tps)

    evidence: dict[str, FieldEvidence] = {}
    boxes_out: dict[str, list[BoxReading]] = {}
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
        cands = field_candidates(p)
        top_ll = cands[0].log_likelihood if cands else -math.inf
        conf = math.exp(top_ll) if cands else 0.0
        upper = f.upper_bound(opts.registered_voters)
        evidence[f.name] = FieldEvidence(
            name=f.name, upper=upper,
            log_likelihood=(lambda v, p=p: value_log_likelihood(p, v)),
            candidates=[c.value for c in cands],
            trusted=bool(cands) and conf >= opts.confidence and not disagree and cands[0].value <= upper,
        )
        boxes_out[f.name] = []
        raw = probs[i - f.digits : i]
        for k in range(f.digits):
            order = np.argsort(-raw[k])
            c0, c1 = int(order[0]), int(order[1])
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
