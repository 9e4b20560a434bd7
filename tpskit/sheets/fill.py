"""Fill a blank sheet the way officers do: handwritten digits (validation split only), leading-box habits,
and pen-blackened answer bubbles with the officers' slips (partly filled, forgotten, wrong digit, extra).

`FilledSheet.truth` records what was written in every box and bubbled in every row, so that the reader's
values, its per-box classes and its digit/bubble agreement can all be scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import cv2
import numpy as np

from tpskit.forms import Box, FieldSpec, Template
from tpskit.sheets.handwriting import Glyph, InkStyle, Severity, draw_glyph, random_style, severity_value
from tpskit.sheets.render import BOX_LINE_MM, check_tps, render_blank
from tpskit.sheets.results import is_consistent, random_result

__all__ = ["BUBBLE_SLIPS", "HABITS", "PEN_RANGES", "FilledSheet", "Pen", "fill_sheet", "is_consistent",
           "random_result", "sample_pen"]

Habit = Literal["blank", "zero", "dash", "x"]
# How officers treat unused leading boxes (README: all four occur), and how often.
HABITS: dict[Habit, float] = {"blank": 0.4, "zero": 0.25, "dash": 0.2, "x": 0.15}
# Per bubble row, probability of each slip at severity 0 (clean) and 1 (hard); linear in between.
BUBBLE_SLIPS: dict[str, tuple[float, float]] = {
    "partial": (0.02, 0.15),
    "forgotten": (0.0, 0.05),
    "wrong": (0.0, 0.03),
    "extra": (0.0, 0.03),
}


@dataclass(frozen=True)
class Pen:
    """The pen an officer writes with, applied over a writer's style: the camera benchmark's "pen" condition."""

    kind: Literal["ballpoint", "felttip"] = "ballpoint"
    colour: Literal["blue", "black"] = "blue"
    #: 0 = pressed lightly (thin, faint ballpoint), 1 = pressed hard.
    pressure: float = 0.7

    def apply(self, style: InkStyle, rng: np.random.Generator) -> InkStyle:
        """`style` written with this pen (its shapes, size and slant unchanged)."""
        p = float(np.clip(self.pressure, 0.0, 1.0))
        if self.colour == "blue":
            ink = (rng.uniform(0.5, 0.8), rng.uniform(0.2, 0.45), rng.uniform(0.03, 0.25))
        else:
            k = rng.uniform(0.05, 0.25)
            ink = (k + rng.uniform(0, 0.06), k + rng.uniform(0, 0.03), k)
        if self.kind == "felttip":  # wide, saturated strokes; pressure widens the tip
            pen_mm, density = 0.75 + 0.5 * p + rng.uniform(-0.05, 0.05), rng.uniform(0.92, 1.0)
            ink = tuple(0.75 * v for v in ink)
        else:  # ballpoint: light pressure leaves a thin, faint, uneven line
            pen_mm, density = 0.3 + 0.3 * p + rng.uniform(-0.03, 0.03), 0.5 + 0.45 * p + rng.uniform(-0.03, 0.03)
        return replace(style, ink_bgr=tuple(float(v) for v in ink), pen_mm=float(pen_mm),  # type: ignore[arg-type]
                       density=float(np.clip(density, 0.4, 1.0)), keep_pen=False)


# Per severity: p_felttip, p_black, and the pressure range. "clean" keeps the writer's own ballpoint.
PEN_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "normal": dict(p_felttip=(0.15, 0.15), p_black=(0.4, 0.4), pressure=(0.3, 1.0)),
    "hard": dict(p_felttip=(0.3, 0.3), p_black=(0.4, 0.4), pressure=(0.0, 1.0)),
}


def sample_pen(rng: np.random.Generator, severity: str = "normal") -> Pen | None:
    """A pen at a severity (None at "clean": the writer's own ballpoint)."""
    r = PEN_RANGES.get(severity)
    if r is None:
        return None
    kind = "felttip" if rng.random() < r["p_felttip"][0] else "ballpoint"
    colour = "black" if rng.random() < r["p_black"][0] else "blue"
    return Pen(kind=kind, colour=colour, pressure=float(rng.uniform(*r["pressure"])))  # type: ignore[arg-type]


@dataclass
class FilledSheet:
    """A filled page (float32 BGR in [0, 1], `px_per_mm` pixels per mm) and what was written on it."""

    template: Template
    tps: str
    px_per_mm: float
    page: np.ndarray
    truth: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> dict[str, int]:
        return dict(self.truth["values"])

    @property
    def markers_mm(self) -> np.ndarray:
        """The four corners of every marker (page mm), for placing a sheet snug against the frame's edge."""
        m = self.template.markers
        s = m.size_mm
        return np.array([[i.x_mm + dx, i.y_mm + dy] for i in m.items for dx in (0, s) for dy in (0, s)], float)


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    p = np.array([weights[k] for k in keys], float)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def _field_marks(value: int, digits: int, habit: Habit,
                 rng: np.random.Generator) -> list[tuple[str, int | None]]:
    """Per box, (mark, digit): mark is 'digit' or an empty-box mark (blank, dash, x, slash, strike)."""
    text = str(value)
    if len(text) > digits:
        raise ValueError(f"value {value} does not fit in {digits} boxes")
    if value == 0 and rng.random() < 0.2:
        habit = "zero"  # zero written as 000
    lead = digits - len(text)
    marks: list[tuple[str, int | None]] = []
    for _ in range(lead):
        if habit == "zero":
            marks.append(("digit", 0))
        elif habit == "dash":
            marks.append(("strike" if rng.random() < 0.15 else "dash", None))
        elif habit == "x":
            marks.append(("slash" if rng.random() < 0.1 else "x", None))
        else:
            marks.append(("blank", None))
    marks.extend(("digit", int(c)) for c in text)
    return marks


def _box_interior_px(b: Box, ppm: float) -> tuple[float, float, float, float]:
    t = BOX_LINE_MM
    return ((b.x_mm + t) * ppm, (b.y_mm + t) * ppm, (b.w_mm - 2 * t) * ppm, (b.h_mm - 2 * t) * ppm)


def _apply_alpha(page: np.ndarray, alpha: np.ndarray, x0: int, y0: int,
                 ink: tuple[float, float, float]) -> None:
    h, w = alpha.shape
    ph, pw = page.shape[:2]
    ax0, ay0, ax1, ay1 = max(0, -x0), max(0, -y0), min(w, pw - x0), min(h, ph - y0)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    a = alpha[ay0:ay1, ax0:ax1, None]
    region = page[y0 + ay0:y0 + ay1, x0 + ax0:x0 + ax1]
    region *= 1.0 - a * (1.0 - np.asarray(ink, np.float32))


def scribble_bubble(page: np.ndarray, centre_px: tuple[float, float], radius_px: float, style: InkStyle,
                    rng: np.random.Generator, ppm: float, coverage: float = 1.0) -> None:
    """Blacken a bubble with a back-and-forth ballpoint scribble; `coverage` < 1 leaves part of it white."""
    ss = 4
    pen = max(1.0, style.pen_mm * ppm * rng.uniform(1.0, 1.5))
    size = math.ceil(2 * radius_px + 2 * pen + 4)
    cx, cy = centre_px
    x0, y0 = math.floor(cx - size / 2), math.floor(cy - size / 2)
    lc = np.array([cx - x0, cy - y0]) * ss  # centre in canvas pixels
    canvas = np.zeros((size * ss, size * ss), np.uint8)
    ang = rng.uniform(-0.6, 0.6) + (math.pi / 2 if rng.random() < 0.3 else 0.0)
    u = np.array([math.cos(ang), math.sin(ang)])  # stroke direction
    v = np.array([-u[1], u[0]])  # advance across the bubble
    r = radius_px * rng.uniform(0.85, 1.05) * ss
    spacing = pen * ss * rng.uniform(0.55, 0.85)
    # A partial fill covers a band from one side of the bubble.
    t = -r if rng.random() < 0.5 else r - 2 * r * coverage
    end = t + 2 * r * coverage
    pts = []
    side = 1.0
    while t <= end:
        half = math.sqrt(max(0.0, r * r - t * t)) * rng.uniform(0.85, 1.1)
        pts.append(lc + v * t + u * side * half)
        side = -side
        t += spacing
    if len(pts) < 2:
        pts = [lc - u * r * 0.3, lc + u * r * 0.3]
    q = np.round(np.array(pts) * 16).astype(np.int32)
    cv2.polylines(canvas, [q], False, 255, max(1, round(pen * ss)), cv2.LINE_AA, 4)
    alpha = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    _apply_alpha(page, alpha * style.density * rng.uniform(0.85, 1.0), x0, y0, style.ink_bgr)


def _bubble_row(written: int | None, s: float, rng: np.random.Generator) -> dict[str, Any]:
    """Which bubbles of one row the officer blackens, and the slip, if any."""
    row: dict[str, Any] = {"written": written, "filled": [], "partial": [], "slip": None}
    if written is None:
        return row
    p = {k: lo + (hi - lo) * min(s, 1.0) for k, (lo, hi) in BUBBLE_SLIPS.items()}
    u = rng.random()
    acc = 0.0
    slip = None
    for k, pk in p.items():
        acc += pk
        if u < acc:
            slip = k
            break
    row["slip"] = slip
    if slip == "forgotten":
        return row
    if slip == "wrong":
        other = written + int(rng.choice([-1, 1]))
        row["filled"] = [other if 0 <= other <= 9 else written - (other - written)]
    elif slip == "extra":
        extra = int(rng.choice([d for d in range(10) if d != written]))
        row["filled"] = sorted([written, extra])
    elif slip == "partial":
        row["filled"] = [written]
        row["partial"] = [written]
    else:
        row["filled"] = [written]
    return row


def fill_sheet(template: Template, tps: str, values: dict[str, int], rng: np.random.Generator,
               digits: tuple[np.ndarray, np.ndarray], severity: Severity = "normal",
               px_per_mm: float = 8.0, style: InkStyle | None = None, pen: Pen | None = None) -> FilledSheet:
    """Render the blank sheet of `tps` and write `values` into it by hand.

    `digits` is (images, labels) of the VALIDATION split (`load_validation_digits()`): the
    only handwriting ever drawn on test sheets. The truth records, per box, the index into those arrays.
    For an officer's hand, pass its digits and pen: `h = officer_digits.held_out_hand(seed)`,
    `digits=h.digits(per_class)`, `style=h.ink_style(rng, severity)` (default: a random ballpoint writer).
    `pen` replaces the writer's pen (`sample_pen`): ballpoint or felt-tip, blue or black, light or hard.
    """
    check_tps(tps)
    images, labels = digits
    labels = np.asarray(labels)
    by_label = {d: np.flatnonzero(labels == d) for d in range(10)}
    missing = [d for d, idx in by_label.items() if len(idx) == 0]
    if missing:
        raise ValueError(f"the digit set has no samples of {missing}")
    for f in template.fields:
        if f.name not in values:
            raise ValueError(f"no value for field {f.name}")
        if not 0 <= values[f.name] <= f.capacity:
            raise ValueError(f"{f.name}={values[f.name]} does not fit in {f.digits} boxes")

    s = severity_value(severity)
    page = render_blank(template, tps, px_per_mm)
    if style is None:
        style = random_style(rng, severity)
    if pen is not None:
        style = pen.apply(style, rng)
    sheet_habit: Habit = _choose(rng, HABITS)  # type: ignore[assignment]
    fields_truth: dict[str, Any] = {}
    for f in template.fields:
        habit: Habit = sheet_habit if rng.random() < 0.85 else _choose(rng, HABITS)  # type: ignore[assignment]
        marks = _field_marks(int(values[f.name]), f.digits, habit, rng)
        boxes = []
        for b, (mark, d) in zip(f.boxes, marks, strict=True):
            if mark == "digit":
                assert d is not None
                idx = int(rng.choice(by_label[d]))
                glyph = Glyph.digit(images[idx], int(labels[idx]))
                boxes.append({"mark": "digit", "digit": d, "val_index": idx})
            else:
                glyph = Glyph.empty(mark)  # type: ignore[arg-type]
                boxes.append({"mark": mark, "digit": None, "val_index": None})
            draw_glyph(page, _box_interior_px(b, px_per_mm), glyph, rng, style, px_per_mm=px_per_mm)
        entry: dict[str, Any] = {"value": int(values[f.name]), "habit": habit, "boxes": boxes}
        if f.bubbles is not None:
            entry["bubbles"] = _fill_bubbles(page, f, [bx["digit"] for bx in boxes], s, style, rng, px_per_mm)
        fields_truth[f.name] = entry

    truth = {
        "template": template.id,
        "form_code": template.form_code,
        "tps": tps,
        "severity": severity if isinstance(severity, str) else float(severity),
        "values": {f.name: int(values[f.name]) for f in template.fields},
        "fields": fields_truth,
    }
    return FilledSheet(template=template, tps=tps, px_per_mm=px_per_mm, page=page, truth=truth)


def _fill_bubbles(page: np.ndarray, f: FieldSpec, written: list[int | None], s: float, style: InkStyle,
                  rng: np.random.Generator, ppm: float) -> list[dict[str, Any]]:
    assert f.bubbles is not None
    rows = []
    r_px = f.bubbles.d_mm / 2 * ppm
    for centres, d in zip(f.bubbles.rows, written, strict=True):
        row = _bubble_row(d, s, rng)
        for digit in row["filled"]:
            cx, cy = centres[digit]
            coverage = rng.uniform(0.25, 0.55) if digit in row["partial"] else 1.0
            scribble_bubble(page, (cx * ppm, cy * ppm), r_px, style, rng, ppm, coverage)
        rows.append(row)
    return rows


def bubbles_agree(row: dict[str, Any]) -> bool:
    """Truth helper: the row's bubbles state the written digit exactly (one bubble, the right one)."""
    return row["written"] is not None and row["filled"] == [row["written"]]
