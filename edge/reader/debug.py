"""Debug images: what the reader read, and what the gate saw when it refused.

Only built when the caller passes a debug sink; the reading itself never depends on them.

- `draw_reading`: the rectified sheet, every box where its printed lines were found, its reading and
  confidence, each field's value and status, the checks; a legend.
- `draw_refusal`: the photo (downscaled) with the marker search (found, confirmed by bit pattern, missing:
  outside the frame or covered), the sheet outline where known, the boxes whose measurement failed, every
  gate measurement with its threshold (the one that decided in red), the reason; a legend.

Labels are placed in a margin added beside the page, or on free space, never over the form's print or
over each other: each label takes the first free slot near its anchor, with a leader line.
"""

from __future__ import annotations

import cv2
import numpy as np

from tpskit.forms import Template

from .geometry import PageGeometry, warp_region
from .grid import GridFit
from .trace import Refused, Trace
from .types import ReadingResult

DEBUG_PX_PER_MM = 4.0
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GREEN, _BLUE, _RED, _ORANGE, _GREY = (40, 150, 40), (200, 110, 0), (0, 0, 220), (0, 140, 255), (90, 90, 90)
_COLOURS = {"ok": _GREEN, "resolved_by_checks": _BLUE, "review": _RED}


class _Labels:
    """Places text boxes without overlap: each label takes the nearest free slot to its anchor."""

    def __init__(self, img: np.ndarray, blocked: np.ndarray | None = None) -> None:
        self.img = img
        h, w = img.shape[:2]
        self.taken = np.zeros((h, w), bool) if blocked is None else blocked.copy()

    def put(self, text: str, anchor: tuple[int, int], colour: tuple[int, int, int], scale: float = 0.4,
            leader: bool = True) -> bool:
        """Draw the label in the nearest free slot; False when there is none (the caller lists it elsewhere)."""
        (tw, th), base = cv2.getTextSize(text, _FONT, scale, 1)
        bw, bh = tw + 4, th + base + 4
        h, w = self.taken.shape
        ax, ay = anchor
        best = None
        for r in range(0, max(h, w), 4):
            for dx, dy in ((r, 0), (0, r), (-r, 0), (0, -r), (r, r), (-r, r), (r, -r), (-r, -r)):
                x, y = ax + dx, ay + dy - bh // 2
                if x < 0 or y < 0 or x + bw > w or y + bh > h:
                    continue
                if not self.taken[y : y + bh, x : x + bw].any():
                    best = (x, y)
                    break
            if best is not None or r > 400:
                break
        if best is None:
            return False
        x, y = best
        self.taken[max(0, y - 1) : y + bh + 1, max(0, x - 1) : x + bw + 1] = True
        cv2.rectangle(self.img, (x, y), (x + bw - 1, y + bh - 1), (255, 255, 255), -1)
        cv2.putText(self.img, text, (x + 2, y + th + 2), _FONT, scale, colour, 1, cv2.LINE_AA)
        if leader and (abs(x - ax) > 6 or abs(y + bh // 2 - ay) > 6):
            end = (min(max(ax, x), x + bw - 1), min(max(ay, y), y + bh - 1))
            cv2.line(self.img, anchor, end, colour, 1, cv2.LINE_AA)
        return True


def _print_mask(page: np.ndarray) -> np.ndarray:
    """Where the form has print or ink (dilated a little): labels stay off it."""
    dark = cv2.adaptiveThreshold(page, 1, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 31, 8)
    return cv2.dilate(dark, np.ones((7, 7), np.uint8)).astype(bool)


def _legend(img: np.ndarray, items: list[tuple[str, tuple[int, int, int]]], x: int, y: int) -> None:
    for i, (text, colour) in enumerate(items):
        yy = y + 16 * i
        cv2.rectangle(img, (x, yy - 9), (x + 10, yy + 1), colour, -1)
        cv2.putText(img, text, (x + 16, yy), _FONT, 0.4, (30, 30, 30), 1, cv2.LINE_AA)


def draw_reading(gray: np.ndarray, geom: PageGeometry, t: Template, result: ReadingResult,
                 grid: GridFit | None = None, trace: Trace | None = None) -> np.ndarray:
    """BGR image: the rectified page with every box where its printed lines were found (green ok, blue
    resolved by checks, red review); in the margin, per field, its value, status, confidence and each box's
    digit and probability, joined to the field by a leader; the checks, the gate's measurements, a legend."""
    ppm = DEBUG_PX_PER_MM
    page = warp_region(gray, geom, 0, 0, t.page.width_mm, t.page.height_mm, ppm)
    pw = page.shape[1]
    margin = 380
    img = cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)
    img = cv2.copyMakeBorder(img, 0, 0, 0, margin, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    H = img.shape[0]
    blocked = np.zeros(img.shape[:2], bool)
    blocked[:, :pw] = True  # the page itself: nothing is written over the form
    legend = [("ok", _GREEN), ("resolved by checks", _BLUE), ("review", _RED)]
    bottom = H - 16 * (len(legend) + len(result.checks) + 3)
    blocked[bottom:, :] = True
    labels = _Labels(img, blocked)
    for f in t.fields:
        fr = result.fields.get(f.name)
        if fr is None:
            continue
        colour = _COLOURS[fr.status]
        fit = grid.fields[f.name] if grid is not None else None
        right = 0
        for k, b in enumerate(f.boxes):
            dx, dy = (fit.boxes[k].dx_mm, fit.boxes[k].dy_mm) if fit is not None else (0.0, 0.0)
            p0 = (round((b.x_mm + dx) * ppm), round((b.y_mm + dy) * ppm))
            p1 = (round((b.x_mm + dx + b.w_mm) * ppm), round((b.y_mm + dy + b.h_mm) * ppm))
            cv2.rectangle(img, p0, p1, colour, 1)
            right = max(right, p1[0])
        boxes = " ".join(f"{'-' if br.digit is None else br.digit}:{br.p:.2f}" for br in fr.boxes)
        value = "?" if fr.value is None else str(fr.value)
        text = f"{f.name} {value} {fr.status.replace('resolved_by_checks', 'resolved')} {fr.confidence:.3f} [{boxes}]"
        last = f.boxes[-1]
        y = round((last.y_mm + last.h_mm / 2) * ppm)
        labels.put(text, (pw + 2, y), colour, 0.33, leader=False)
        cv2.line(img, (right + 1, y), (pw + 1, y), colour, 1, cv2.LINE_AA)
    y = bottom + 12
    for c in result.checks:
        cv2.putText(img, f"{c.id}: {'pass' if c.passed else 'FAIL'}", (pw + 6, y), _FONT, 0.36,
                    _GREEN if c.passed else _RED, 1, cv2.LINE_AA)
        y += 16
    gate = ", ".join(f"{k}={v:g}" for k, v in result.gate.items() if k.startswith(("line", "grid")))
    cv2.putText(img, gate[:60], (pw + 6, y), _FONT, 0.3, _GREY, 1, cv2.LINE_AA)
    cv2.putText(img, gate[60:120], (pw + 6, y + 12), _FONT, 0.3, _GREY, 1, cv2.LINE_AA)
    _legend(img, legend, pw + 8, H - 16 * len(legend) + 6)
    return img


def draw_refusal(gray: np.ndarray, trace: Trace, refused: Refused, template: Template | None) -> np.ndarray:
    """BGR image of the photo as the gate saw it, with why it refused (see the module's docstring)."""
    h, w = gray.shape
    k = max(1.0, max(h, w) / 1200.0)
    small = cv2.resize(gray, (round(w / k), round(h / k)), interpolation=cv2.INTER_AREA)
    panel = 330
    img = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    img = cv2.copyMakeBorder(img, 0, 0, 0, panel, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    W0 = small.shape[1]
    blocked = np.zeros(img.shape[:2], bool)
    blocked[:, :W0] = _print_mask(small)
    blocked[:, W0:] = True  # the side panel has its own text
    labels = _Labels(img, blocked)

    def pt(p: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(p, np.float64) / k).astype(np.int32)

    # The sheet's outline and its failing boxes, where the homography is known.
    if trace.homography is not None and trace.page_mm is not None:
        pw, ph = trace.page_mm
        corners = cv2.perspectiveTransform(np.array([[[0, 0]], [[pw, 0]], [[pw, ph]], [[0, ph]]], np.float64),
                                           trace.homography).reshape(-1, 2)
        cv2.polylines(img, [pt(corners)], True, _GREY, 1, cv2.LINE_AA)
        sheet_mask = np.zeros(blocked.shape, np.uint8)
        cv2.fillPoly(sheet_mask, [pt(corners)], 1)
        labels.taken |= sheet_mask.astype(bool)  # labels go on the desk around the sheet, or in the panel
        if template is not None:
            for f in template.fields:
                for b in f.boxes:
                    r = np.array([[[b.x_mm, b.y_mm]], [[b.x_mm + b.w_mm, b.y_mm]], [[b.x_mm + b.w_mm, b.y_mm + b.h_mm]],
                                  [[b.x_mm, b.y_mm + b.h_mm]]], np.float64)
                    poly = pt(cv2.perspectiveTransform(r, trace.homography).reshape(-1, 2))
                    cv2.polylines(img, [poly], True, _GREEN, 1)
                    box_mask = np.zeros(blocked.shape, np.uint8)
                    cv2.fillPoly(box_mask, [poly], 1)
                    labels.taken |= box_mask.astype(bool)
        few = len(trace.bad_boxes) <= 3  # a few boxes get their value beside them; many, a line in the panel
        for (x, y, bw, bh), text in trace.bad_boxes:
            r = np.array([[[x, y]], [[x + bw, y]], [[x + bw, y + bh]], [[x, y + bh]]], np.float64)
            poly = pt(cv2.perspectiveTransform(r, trace.homography).reshape(-1, 2))
            cv2.polylines(img, [poly], True, _RED, 2)
            if few:
                labels.put(text, tuple(int(v) for v in poly.max(axis=0)), _RED, 0.35)
    # The marker search.
    unplaced: list[tuple[str, tuple[int, int, int]]] = []

    def label(text: str, anchor: tuple[int, int], colour: tuple[int, int, int]) -> None:
        if not labels.put(text, anchor, colour):
            unplaced.append((text, colour))

    for mid, c in trace.markers_found.items():
        cv2.polylines(img, [pt(c)], True, _GREEN, 2)
        label(f"{trace.corner_names.get(mid, mid)}: found", tuple(int(v) for v in pt(c).mean(axis=0)), _GREEN)
    for mid, c in trace.markers_confirmed.items():
        cv2.polylines(img, [pt(c)], True, _BLUE, 2)
        label(f"{trace.corner_names.get(mid, mid)}: confirmed", tuple(int(v) for v in pt(c).mean(axis=0)), _BLUE)
    for mid, (c, match) in trace.markers_missing.items():
        p = pt(c)
        inside = bool(((p >= 0).all(axis=1) & (p[:, 0] < W0) & (p[:, 1] < img.shape[0])).all())
        colour = _ORANGE if inside else _RED
        cv2.polylines(img, [p], True, colour, 1, cv2.LINE_AA)
        what = f"covered? cells {match:.0%}" if inside else "outside the frame"
        anchor = (int(np.clip(p[:, 0].mean(), 0, W0 - 1)), int(np.clip(p[:, 1].mean(), 0, img.shape[0] - 1)))
        label(f"{trace.corner_names.get(mid, mid)}: {what}", anchor, colour)
    # The measurements, the reason, and the legend, in the side panel.
    x = W0 + 10
    cv2.putText(img, f"REFUSED: {refused.reason}", (x, 22), _FONT, 0.55, _RED, 1, cv2.LINE_AA)
    y = 48
    for m in trace.measures:
        colour = _RED if m is refused.measure or m.failed else _GREEN
        cv2.putText(img, m.text(), (x, y), _FONT, 0.4, colour, 1, cv2.LINE_AA)
        y += 18
    if refused.params:
        cv2.putText(img, ", ".join(f"{a}={b}" for a, b in refused.params.items())[:48], (x, y), _FONT, 0.4,
                    _GREY, 1, cv2.LINE_AA)
        y += 18
    if len(trace.bad_boxes) > 3:
        values = sorted({t for _, t in trace.bad_boxes})
        cv2.putText(img, f"{len(trace.bad_boxes)} boxes in red: {', '.join(values)[:30]}", (x, y), _FONT, 0.4, _RED, 1,
                    cv2.LINE_AA)
        y += 18
    for text, colour in unplaced:  # labels with no free place on the photo
        cv2.putText(img, text[:48], (x, y), _FONT, 0.4, colour, 1, cv2.LINE_AA)
        y += 18
    _legend(img, [("marker found", _GREEN), ("marker confirmed by its bits", _BLUE),
                  ("marker predicted, not seen", _ORANGE), ("outside frame / failed", _RED),
                  ("template box", _GREEN)], x, img.shape[0] - 90)
    return img
