"""Officers' handwriting that MNIST lacks, synthesised: stroke models of their digit shapes, one writer per seed.

Indonesian polling officers write digits MNIST (mostly American school hands) rarely shows: a 1 with a long
flag (a 7 without its bar) and a foot, a 2 with a loop at the bottom, a 4 written open in one stroke that
looks like a 9, crossed 7s, flat-topped 3s, and felt-tip pens whose ink fills the small loops of 8, 6, 9
and 0. Each such shape is a named STYLE, drawn as parametric pen paths (Catmull-Rom splines through control
points) in digit units (height 1, y down).

A writer (`OfficerHand`, drawn from a seed) picks one style per digit and keeps it, and has their own slant,
width, proportions, loop size, pen (ballpoint 0.3-0.7 mm or felt-tip 0.8-1.6 mm, whose ink bleeds into small
loops), stroke jitter and tremor; every digit they write varies a little around that.

Train / held-out split, so a benchmark can report "writers never seen" honestly:
- by writer: a writer's parameters come from a generator seeded with its part, so no held-out writer can
  ever be drawn on the training side, whatever the seeds;
- by style family: every named style has two independently built constructions ("families"), `a` and
  `b` (different control skeletons, stroke order, pen lifts, loop placement); training writers use `a`,
  held-out writers use `b`. The model learns what a looped 2 is from family `a` and is judged on `b`.

Training also takes handwriting-like fonts (`font_digit`, Debian font packages, training only: the tests,
the demo and the benchmarks never need a font) and elastically distorted training digits; those live in
models/training/. Images are (SIZE, SIZE) uint8 with 255 = ink, like the validation digits but at twice
their resolution, so thin ballpoint strokes and small loops survive; `draw_glyph` accepts any size.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from tpskit.sheets.handwriting import InkStyle, Severity, random_style

Part = Literal["train", "held_out"]
PARTS: tuple[Part, ...] = ("train", "held_out")
#: The construction family each part draws; see the module docstring.
FAMILY: dict[Part, str] = {"train": "a", "held_out": "b"}
# Salts the writer generator with the part: the two parts' writers come from disjoint random streams.
_PART_SALT: dict[Part, int] = {"train": 0x7A11, "held_out": 0x4E1D}
SIZE = 56  # image side, px (the validation digits are 28)
_DIGIT_FRAC = 0.72  # digit height / image side, as in MNIST (20 of 28)
_NOMINAL_DIGIT_MM = 8.3  # a digit written in an 11.5 mm box at 72 % of its height
Pt = tuple[float, float]

# ---------------------------------------------------------------------------------------------- geometry


def _catmull_rom(pts: np.ndarray, per_seg: int = 10) -> np.ndarray:
    """A centripetal Catmull-Rom spline through `pts` (k, 2), ends included."""
    if len(pts) < 3:
        t = np.linspace(0, 1, per_seg + 1)[:, None]
        return pts[0] + t * (pts[-1] - pts[0]) if len(pts) == 2 else pts
    p = np.vstack([2 * pts[0] - pts[1], pts, 2 * pts[-1] - pts[-2]])
    out = [p[1][None]]
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        t0 = 0.0
        t1 = t0 + max(np.linalg.norm(p1 - p0), 1e-6) ** 0.5
        t2 = t1 + max(np.linalg.norm(p2 - p1), 1e-6) ** 0.5
        t3 = t2 + max(np.linalg.norm(p3 - p2), 1e-6) ** 0.5
        t = np.linspace(t1, t2, per_seg + 1)[1:, None]
        a1 = (t1 - t) / (t1 - t0) * p0 + (t - t0) / (t1 - t0) * p1
        a2 = (t2 - t) / (t2 - t1) * p1 + (t - t1) / (t2 - t1) * p2
        a3 = (t3 - t) / (t3 - t2) * p2 + (t - t2) / (t3 - t2) * p3
        b1 = (t2 - t) / (t2 - t0) * a1 + (t - t0) / (t2 - t0) * a2
        b2 = (t3 - t) / (t3 - t1) * a2 + (t - t1) / (t3 - t1) * a3
        out.append((t2 - t) / (t2 - t1) * b1 + (t - t1) / (t2 - t1) * b2)
    return np.vstack(out)


def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 24) -> list[Pt]:
    """Points on an ellipse from angle a0 to a1 (degrees, 0 = right, 90 = down since y points down)."""
    t = np.radians(np.linspace(a0, a1, n))
    return [(cx + rx * math.cos(v), cy + ry * math.sin(v)) for v in t]


@dataclass(frozen=True)
class Stroke:
    """One pen-down path: pieces are splines joined at sharp corners (the pen turns without lifting)."""

    pieces: tuple[tuple[Pt, ...], ...]

    def path(self, jitter: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
        out = []
        for piece in self.pieces:
            pts = jitter(np.asarray(piece, float))
            if out:
                pts[0] = out[-1][-1]  # the corner stays joined after jitter
            out.append(_catmull_rom(pts))
        return np.vstack(out)


def _s(*pieces: list[Pt]) -> Stroke:
    return Stroke(tuple(tuple(p) for p in pieces))


# ---------------------------------------------------------------------------------------------- styles


@dataclass(frozen=True)
class Shape:
    """A writer's proportions, in digit units: width w, loop size, where the middle of 3/8 sits."""

    w: float = 0.55
    loop: float = 1.0  # 0.55 (tight loops) .. 1.25 (round, open loops)
    mid: float = 0.45  # y of the waist of 8 / middle of 3
    flag: float = 0.42  # length of a 1's flag, fraction of the height
    flag_deg: float = 35.0  # flag angle below horizontal


StyleFn = Callable[[Shape, str, np.random.Generator], list[Stroke]]


def _zero(sh: Shape, fam: str, rng) -> list[Stroke]:
    w = sh.w * (0.85 + 0.25 * sh.loop)
    if fam == "a":  # starts at the top, anticlockwise, overshoots where it began
        over = rng.uniform(5, 35)
        return [_s(_arc(w / 2, 0.5, w / 2, 0.5, -90, -450 - over, 30))]
    # b: starts at the top right, clockwise, egg-shaped (wider at the bottom), ends short or crossing
    pts = _arc(w / 2, 0.45, w * 0.42, 0.45, -60, 90, 14)
    pts += _arc(w / 2, 0.52, w / 2, 0.48, 90, 290 + rng.uniform(-8, 25), 16)
    return [_s(pts)]


def _one_stick(sh: Shape, fam: str, rng) -> list[Stroke]:
    x = sh.w / 2
    if fam == "a":
        return [_s([(x + 0.03, 0.0), (x - 0.03, 1.0)])]
    return [_s([(x + 0.05, 0.0), (x + 0.01, 0.45), (x - 0.02, 1.0)])]  # b: a slight bow


def _flag(sh: Shape, fam: str, x: float) -> list[Pt]:
    length, ang = sh.flag, math.radians(sh.flag_deg)
    end = (x - length * math.cos(ang), length * math.sin(ang))
    if fam == "a":  # straight flag
        return [end, (x, 0.0)]
    # b: a concave flag (pen curves up into the top)
    return [end, (x - 0.5 * length * math.cos(ang), 0.25 * length * math.sin(ang) + 0.01), (x, 0.0)]


def _one_flag(sh: Shape, fam: str, rng) -> list[Stroke]:
    x = sh.w * 0.7
    if fam == "a":  # one stroke: up the flag, corner, down the stem
        return [_s(_flag(sh, fam, x), [(x, 0.0), (x - 0.02, 1.0)])]
    # b: flag as its own stroke (pen lifted), stem starting a little above it
    return [_s([(x + 0.01, -0.02), (x - 0.02, 1.0)]), _s(_flag(sh, fam, x))]


def _one_flag_foot(sh: Shape, fam: str, rng) -> list[Stroke]:
    x = sh.w * 0.7
    foot = rng.uniform(0.14, 0.28)
    if fam == "a":
        return [_s(_flag(sh, fam, x), [(x, 0.0), (x - 0.02, 1.0)]),
                _s([(x - 0.02 - foot, 1.0), (x - 0.02 + foot, 0.99)])]
    # b: the stem runs into the right half of the foot; the left half is added after
    return [_s(_flag(sh, fam, x), [(x, 0.0), (x - 0.02, 0.98)], [(x - 0.02, 0.98), (x + foot, 0.99)]),
            _s([(x - foot * 1.1, 1.0), (x - 0.02, 0.99)])]


def _two_plain(sh: Shape, fam: str, rng) -> list[Stroke]:
    w = sh.w
    if fam == "a":
        return [_s([(0.05 * w, 0.28), (0.35 * w, 0.02), (0.8 * w, 0.06), (0.95 * w, 0.3), (0.6 * w, 0.62),
                    (0.0, 1.0)], [(0.0, 1.0), (w, 0.98)])]
    # b: a rounder top and a base that curves up at its end
    return [_s([*_arc(0.5 * w, 0.27, 0.48 * w, 0.26, 195, 375, 10), (0.75 * w, 0.55), (0.05 * w, 0.97)],
               [(0.05 * w, 0.97), (0.5 * w, 0.95), (1.05 * w, 0.9)])]


def _two_looped(sh: Shape, fam: str, rng) -> list[Stroke]:
    w, r = sh.w, 0.1 + 0.08 * sh.loop
    top = [(0.05 * w, 0.28), (0.35 * w, 0.02), (0.8 * w, 0.06), (0.95 * w, 0.3), (0.6 * w, 0.6)]
    if fam == "a":  # comes down to the bottom left, loops anticlockwise, runs out along the base
        cx, cy = 0.12 * w + r * 0.6, 0.98 - r
        return [_s([*top, (cx - 0.2 * r, cy + 0.9 * r), (cx - r, cy + 0.2 * r), (cx - 0.2 * r, cy - r),
                    (cx + 0.8 * r, cy - 0.1 * r), (cx + 1.2 * r, cy + r), (w, 0.99)])]
    # b: a rounder top, a flatter, wider loop sitting on the base line, the base rising at its end
    cx, cy = 0.25 * w, 0.96 - 0.75 * r
    return [_s([*_arc(0.5 * w, 0.27, 0.48 * w, 0.26, 195, 375, 10), (0.7 * w, 0.55), (cx + 0.3 * r, cy + 0.6 * r),
                (cx - 1.2 * r, cy + 0.5 * r), (cx - 1.1 * r, cy - 0.5 * r), (cx + 0.2 * r, cy - 0.8 * r),
                (cx + 0.6 * r, cy + 0.3 * r), (cx + 1.2 * r, 0.97), (1.05 * w, 0.92)])]


def _three_round(sh: Shape, fam: str, rng) -> list[Stroke]:
    w, m = sh.w, sh.mid
    if fam == "a":
        return [_s(_arc(0.45 * w, m / 2, 0.5 * w, m / 2, 200, 450, 14)
                   + _arc(0.45 * w, (1 + m) / 2, 0.55 * w, (1 - m) / 2, -90, 150, 16))]
    # b: two strokes-in-one with a cusp: the pen goes into the middle and back out with a small tick
    return [_s([*_arc(0.45 * w, m / 2, 0.45 * w, m / 2, 210, 430, 12), (0.3 * w, m)],
               [(0.3 * w, m), (0.45 * w, m + 0.01), *_arc(0.45 * w, (1 + m) / 2, 0.55 * w, (1 - m) / 2, -80, 160, 14)])]


def _three_flat(sh: Shape, fam: str, rng) -> list[Stroke]:
    w, m = sh.w, sh.mid
    bottom = _arc(0.45 * w, (1 + m) / 2, 0.55 * w, (1 - m) / 2, -100, 150, 16)
    if fam == "a":
        return [_s([(0.05 * w, 0.02), (0.9 * w, 0.02)], [(0.9 * w, 0.02), (0.3 * w, m)], [(0.3 * w, m), *bottom])]
    # b: the top line rises, the diagonal meets the belly in a curve (no corner)
    return [_s([(0.0, 0.06), (0.95 * w, 0.0)], [(0.95 * w, 0.0), (0.5 * w, 0.3), (0.35 * w, m), *bottom[2:]])]


def _four_closed(sh: Shape, fam: str, rng) -> list[Stroke]:
    w, bar = sh.w, 0.6 + rng.uniform(-0.06, 0.06)
    if fam == "a":
        return [_s([(0.65 * w, 0.0), (0.0, bar)], [(0.0, bar), (w, bar)]), _s([(0.65 * w, 0.02), (0.65 * w, 1.0)])]
    # b: one stroke, up the stem first, then down the diagonal and out along the bar
    return [_s([(0.72 * w, 1.0), (0.72 * w, 0.0)], [(0.72 * w, 0.0), (0.0, bar)], [(0.0, bar), (1.05 * w, bar)])]


def _four_open(sh: Shape, fam: str, rng) -> list[Stroke]:
    w, bar = sh.w, 0.6 + rng.uniform(-0.06, 0.06)
    if fam == "a":
        return [_s([(0.15 * w, 0.0), (0.05 * w, bar)], [(0.05 * w, bar), (w, bar)]),
                _s([(0.65 * w, 0.05), (0.65 * w, 1.0)])]
    # b: a leaning left stroke, a short bar, the stem rising above the left stroke
    return [_s([(0.3 * w, 0.08), (0.0, bar)], [(0.0, bar), (0.85 * w, bar - 0.02)]),
            _s([(0.6 * w, -0.03), (0.58 * w, 1.0)])]


def _four_one_stroke(sh: Shape, fam: str, rng) -> list[Stroke]:
    """Open 4 in one stroke: down the left, round into the bar, up to the top, back down the stem (a 9 look)."""
    w, bar = sh.w, 0.55 + rng.uniform(-0.05, 0.05)
    if fam == "a":  # a round bottom to the cup
        return [_s([(0.08 * w, 0.0), (0.04 * w, 0.3), (0.2 * w, bar), (0.55 * w, bar + 0.01), (0.75 * w, bar - 0.1),
                    (0.78 * w, 0.0)], [(0.78 * w, 0.0), (0.76 * w, 1.0)])]
    # b: starts with a hook in from the right (almost closing the top), angular cup
    return [_s([(0.35 * w, 0.02), (0.1 * w, 0.05), (0.05 * w, 0.25), (0.1 * w, bar)],
               [(0.1 * w, bar), (0.7 * w, bar)], [(0.7 * w, bar), (0.74 * w, 0.02)],
               [(0.74 * w, 0.02), (0.7 * w, 1.0)])]


def _five(sh: Shape, fam: str, rng) -> list[Stroke]:
    w = sh.w
    belly = [(0.1 * w, 0.46), (0.45 * w, 0.38), (0.9 * w, 0.52), (0.88 * w, 0.85), (0.45 * w, 1.0), (0.0, 0.88)]
    if fam == "a":  # stem and belly, then the top bar as its own stroke
        return [_s([(0.15 * w, 0.02), (0.1 * w, 0.46)], belly), _s([(0.15 * w, 0.02), (0.95 * w, 0.0)])]
    # b: one stroke: the bar right to left, down the stem, round the belly
    return [_s([(0.95 * w, 0.02), (0.12 * w, 0.0)], [(0.12 * w, 0.0), (0.08 * w, 0.45)],
               [(0.08 * w, 0.45), (0.5 * w, 0.36), (0.95 * w, 0.6), (0.7 * w, 0.97), (0.1 * w, 0.92)])]


def _six(sh: Shape, fam: str, rng) -> list[Stroke]:
    w, r = sh.w, 0.2 + 0.1 * sh.loop
    cy = 1.0 - r
    if fam == "a":  # a curved back into a round loop
        return [_s([(0.85 * w, 0.03), (0.35 * w, 0.22), (0.05 * w, 0.65),
                    *_arc(0.5 * w, cy, 0.45 * w, r, 170, 540 - 15, 18)])]
    # b: a straight back, the loop closing higher
    return [_s([(0.75 * w, 0.0), (0.1 * w, 1.0 - 1.6 * r)],
               [(0.1 * w, 1.0 - 1.6 * r), *_arc(0.5 * w, cy, 0.48 * w, r, 180, 520, 18)])]


def _seven(sh: Shape, fam: str, crossed: bool, hooked: bool) -> list[Stroke]:
    w = sh.w
    if fam == "a":
        head = [[(0.02 * w, 0.2), (0.0, 0.02)]] if hooked else []
        start = (0.0, 0.02)
        strokes = [_s(*head, [start, (w, 0.0)], [(w, 0.0), (0.35 * w, 1.0)])]
        if crossed:
            strokes.append(_s([(0.2 * w, 0.52), (0.85 * w, 0.5)]))
        return strokes
    # b: a wavy top bar and a stem curving in at the bottom; a longer, higher cross bar
    head = [[(0.05 * w, 0.16), (0.0, 0.05)]] if hooked else []
    strokes = [_s(*head, [(0.0, 0.05), (0.5 * w, 0.0), (1.02 * w, 0.04)],
                  [(1.02 * w, 0.04), (0.7 * w, 0.45), (0.45 * w, 1.0)])]
    if crossed:
        strokes.append(_s([(0.3 * w, 0.45), (w, 0.42)]))
    return strokes


def _eight(sh: Shape, fam: str, rng) -> list[Stroke]:
    w, m, k = sh.w, sh.mid, 0.6 + 0.4 * sh.loop
    if fam == "a":  # one stroke: top loop anticlockwise, through the waist, bottom loop clockwise, back up
        return [_s([(0.8 * w, 0.12), (0.5 * w, 0.0), (0.5 * w - 0.4 * w * k, 0.12), (0.5 * w - 0.3 * w * k, m - 0.12),
                    (0.5 * w, m), (0.5 * w + 0.45 * w * k, m + 0.17), (0.5 * w + 0.4 * w * k, 0.9), (0.5 * w, 1.0),
                    (0.5 * w - 0.42 * w * k, 0.9), (0.5 * w - 0.4 * w * k, m + 0.15), (0.5 * w, m),
                    (0.5 * w + 0.35 * w * k, m - 0.15), (0.82 * w, 0.1)])]
    # b: two stacked loops drawn as separate strokes (a snowman), the top one smaller
    return [_s(_arc(0.5 * w, m / 2, 0.38 * w * k, m / 2, -90, 275, 20)),
            _s(_arc(0.5 * w, (1 + m) / 2, 0.5 * w * k, (1 - m) / 2, -95, 270, 22))]


def _nine(sh: Shape, fam: str, rng) -> list[Stroke]:
    w, r = sh.w, 0.18 + 0.1 * sh.loop
    if fam == "a":  # a loop anticlockwise from the right, then a straight stem
        return [_s(_arc(0.45 * w, r, 0.45 * w, r, 10, -345, 20), [(0.9 * w, r + 0.02), (0.85 * w, 1.0)])]
    # b: a loop clockwise from the top, the stem curving into a tail to the left
    return [_s([*_arc(0.5 * w, r + 0.01, 0.48 * w, r, -70, 300, 20), (0.95 * w, r + 0.05), (0.85 * w, 0.8),
                (0.4 * w, 1.0), (0.15 * w, 0.92)])]


#: Named styles per digit and how often writers use them (weights), e.g. "2-looped".
STYLES: dict[str, tuple[int, float, StyleFn]] = {
    "0-oval": (0, 1.0, _zero),
    "1-stick": (1, 0.25, _one_stick),
    "1-flagged": (1, 0.35, _one_flag),
    "1-flagged-foot": (1, 0.4, _one_flag_foot),
    "2-plain": (2, 0.5, _two_plain),
    "2-looped": (2, 0.5, _two_looped),
    "3-round": (3, 0.65, _three_round),
    "3-flat-top": (3, 0.35, _three_flat),
    "4-closed": (4, 0.3, _four_closed),
    "4-open": (4, 0.3, _four_open),
    "4-open-one-stroke": (4, 0.4, _four_one_stroke),
    "5-standard": (5, 1.0, _five),
    "6-loop": (6, 1.0, _six),
    "7-plain": (7, 0.35, lambda sh, fam, rng: _seven(sh, fam, False, False)),
    "7-crossed": (7, 0.4, lambda sh, fam, rng: _seven(sh, fam, True, False)),
    "7-hooked": (7, 0.25, lambda sh, fam, rng: _seven(sh, fam, rng.random() < 0.4, True)),
    "8-loops": (8, 1.0, _eight),
    "9-loop-stem": (9, 1.0, _nine),
}


def styles_of(digit: int) -> list[str]:
    return [name for name, (d, _, _) in STYLES.items() if d == digit]


# ---------------------------------------------------------------------------------------------- rendering


def _fill_small_holes(img: np.ndarray, max_area: float) -> np.ndarray:
    """Felt-tip ink bleeds into loops smaller than `max_area` px: fill every hole below it."""
    m = (img > 110).astype(np.uint8)
    contours, hier = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if hier is None:
        return img
    out = img.copy()
    for c, h in zip(contours, hier[0], strict=True):
        if h[3] >= 0 and cv2.contourArea(c) <= max_area:  # a hole (has a parent)
            cv2.drawContours(out, [c], -1, 255, -1)
    return out


def render_strokes(paths: list[np.ndarray], pen_rel: float, size: int = SIZE, bleed_rel: float = 0.0) -> np.ndarray:
    """Pen paths (digit units, height ~1) -> (size, size) uint8, 255 = ink, MNIST-like framing.

    `pen_rel` is the pen width over the digit height; `bleed_rel` fills holes up to that fraction of the
    digit's height squared (felt-tip ink).
    """
    allp = np.vstack(paths)
    lo, hi = allp.min(axis=0), allp.max(axis=0)
    ext = np.maximum(hi - lo, 1e-3)
    box = _DIGIT_FRAC * size
    k = box / max(ext[1], ext[0] * 1.0)  # the taller side fills the box (a wide digit is limited by width)
    pen_px = max(1.0, pen_rel * ext[1] * k)
    ss = 4
    canvas = np.zeros((size * ss, size * ss), np.uint8)
    off = np.array([size, size]) / 2 - (lo + hi) / 2 * k
    for p in paths:
        q = np.round(((p * k + off) * ss) * 16).astype(np.int32)
        cv2.polylines(canvas, [q], False, 255, max(1, round(pen_px * ss)), cv2.LINE_AA, 4)
    img = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    if bleed_rel > 0:
        img = _fill_small_holes(img, bleed_rel * (ext[1] * k) ** 2)
    return img


def _smooth_noise(rng: np.random.Generator, n: int, amp: float, corr: int = 6) -> np.ndarray:
    """(n, 2) low-frequency noise: a hand's tremor along a stroke."""
    if amp <= 0 or n < 2:
        return np.zeros((n, 2))
    raw = rng.normal(0, 1, (n + 2 * corr, 2))
    ker = np.hanning(2 * corr + 1)
    ker /= ker.sum()
    sm = np.stack([np.convolve(raw[:, i], ker, mode="same") for i in range(2)], axis=1)[corr : corr + n]
    return sm * amp / max(float(np.abs(sm).max()), 1e-6)


def draw_style(name: str, family: str, shape: Shape, rng: np.random.Generator, *, slant: float = 0.0,
               jitter: float = 0.0, tremor: float = 0.0, pen_rel: float = 0.06, bleed_rel: float = 0.0,
               size: int = SIZE) -> np.ndarray:
    """One digit in the named style and family, as an image (see `render_strokes`)."""
    if name not in STYLES:
        raise ValueError(f"unknown style {name!r}; known: {', '.join(STYLES)}")
    if family not in FAMILY.values():
        raise ValueError(f"unknown family {family!r}")
    strokes = STYLES[name][2](shape, family, rng)

    def jit(pts: np.ndarray) -> np.ndarray:
        return pts + rng.normal(0, jitter, pts.shape) if jitter > 0 else pts.copy()

    paths = []
    for st in strokes:
        p = st.path(jit)
        p = p + _smooth_noise(rng, len(p), tremor)
        p[:, 0] += slant * (1.0 - p[:, 1])  # y up the digit leans right for slant > 0
        paths.append(p)
    return render_strokes(paths, pen_rel, size, bleed_rel)


# ---------------------------------------------------------------------------------------------- writers


@dataclass(frozen=True)
class OfficerHand:
    """One officer: a style per digit, proportions, slant, pen. Deterministic from (part, seed)."""

    part: Part
    seed: int
    styles: tuple[str, ...]  # style name per digit 0..9
    second: tuple[str | None, ...]  # an occasional second style per digit (writers are not perfectly consistent)
    shape: Shape
    slant: float
    jitter: float
    tremor: float
    pen_mm: float
    felt_tip: bool
    bleed_rel: float
    ink_bgr: tuple[float, float, float]

    @property
    def family(self) -> str:
        return FAMILY[self.part]

    def write(self, digit: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
        """One instance of `digit` in this hand: (size, size) uint8, 255 = ink."""
        name = self.styles[digit]
        if self.second[digit] is not None and rng.random() < 0.2:
            name = self.second[digit]  # type: ignore[assignment]
        sh = self.shape
        shape = replace(sh, w=sh.w * rng.uniform(0.92, 1.08), loop=sh.loop * rng.uniform(0.9, 1.1),
                        mid=sh.mid + rng.uniform(-0.03, 0.03), flag=sh.flag * rng.uniform(0.88, 1.12),
                        flag_deg=sh.flag_deg + rng.uniform(-6, 6))
        pen_rel = self.pen_mm / _NOMINAL_DIGIT_MM * rng.uniform(0.9, 1.1)
        return draw_style(name, self.family, shape, rng, slant=self.slant + rng.uniform(-0.04, 0.04),
                          jitter=self.jitter, tremor=self.tremor, pen_rel=pen_rel, bleed_rel=self.bleed_rel,
                          size=size)

    def digits(self, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(images, labels): `per_class` instances of each digit, in the validation digits' format (size aside)."""
        rng = np.random.default_rng([_PART_SALT[self.part], self.seed, 1, seed])
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        return np.stack([self.write(int(d), rng) for d in labels]), labels

    def ink_style(self, rng: np.random.Generator, severity: Severity = "normal") -> InkStyle:
        """This writer's pen on a sheet: placement and size vary with severity as for any writer.

        The pen width is the one the digits were drawn with (`keep_pen`), and the MNIST-only habits are off
        (the styles already carry flags, feet, crossed 7s and open 4s).
        """
        base = random_style(rng, severity)
        return replace(base, ink_bgr=self.ink_bgr, pen_mm=self.pen_mm,
                       density=float(rng.uniform(0.92, 1.0)) if self.felt_tip else base.density,
                       one_flag=False, one_foot=False, seven_crossed=False, four_open=False, keep_pen=True)


def _pick(rng: np.random.Generator, names: list[str]) -> str:
    w = np.array([STYLES[n][1] for n in names], float)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def hand(seed: int, part: Part) -> OfficerHand:
    """The writer `seed` of a part. Training and held-out writers come from disjoint random streams."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    rng = np.random.default_rng([_PART_SALT[part], int(seed)])
    styles = tuple(_pick(rng, styles_of(d)) for d in range(10))
    second = tuple((_pick(rng, styles_of(d)) if rng.random() < 0.25 else None) for d in range(10))
    felt = bool(rng.random() < 0.3)
    pen = float(rng.uniform(0.8, 1.6)) if felt else float(np.exp(rng.uniform(np.log(0.3), np.log(0.7))))
    if rng.random() < 0.6:  # blue
        ink = (rng.uniform(0.45, 0.8), rng.uniform(0.15, 0.5), rng.uniform(0.02, 0.3))
    else:
        k = rng.uniform(0.05, 0.3)
        ink = (k + rng.uniform(0, 0.08), k + rng.uniform(0, 0.04), k)
    shape = Shape(w=float(rng.uniform(0.45, 0.75)), loop=float(rng.uniform(0.55, 1.25)),
                  mid=float(rng.uniform(0.38, 0.5)), flag=float(rng.uniform(0.3, 0.55)),
                  flag_deg=float(rng.uniform(20, 50)))
    return OfficerHand(
        part=part, seed=int(seed), styles=styles, second=second, shape=shape,
        slant=float(rng.uniform(-0.12, 0.3)), jitter=float(rng.uniform(0.006, 0.022)),
        tremor=float(rng.uniform(0.0, 0.012)), pen_mm=pen, felt_tip=felt,
        bleed_rel=float(rng.uniform(0.02, 0.1)) if felt else 0.0,
        ink_bgr=tuple(float(v) for v in ink),
    )


def held_out_hand(seed: int) -> OfficerHand:
    """A writer the digit model never trained on (held-out seeds and style family): for tests and benchmarks."""
    return hand(seed, "held_out")


def training_hand(seed: int) -> OfficerHand:
    return hand(seed, "train")


# ---------------------------------------------------------------------------------------------- fonts (training)

#: Handwriting-like fonts from Debian packages (`make train` installs them); training only.
FONT_FILES: tuple[str, ...] = (
    "/usr/share/fonts/truetype/fifthhorseman/dkg.ttf",  # fonts-dkg-handwriting
    "/usr/share/fonts/truetype/fifthhorseman/dkgIt.ttf",
    "/usr/share/fonts/truetype/humor-sans/Humor-Sans.ttf",  # fonts-humor-sans
    "/usr/share/fonts/truetype/breip/Breip.ttf",  # fonts-breip
    "/usr/share/fonts/opentype/comic-neue/ComicNeue-Regular.otf",  # fonts-comic-neue
    "/usr/share/fonts/truetype/klee/KleeOne-Regular.ttf",  # fonts-klee
)
FONT_PACKAGES = ("fonts-dkg-handwriting", "fonts-humor-sans", "fonts-breip", "fonts-comic-neue", "fonts-klee")


def available_fonts() -> list[str]:
    return [f for f in FONT_FILES if Path(f).is_file()]


def font_digit(font_file: str, digit: int, rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A digit of a handwriting-like font, slanted and elastically bent: (size, size) uint8, 255 = ink."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(font_file, 160)
    img = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(img).text((128, 128), str(digit), fill=255, font=font, anchor="mm")
    a = np.asarray(img, np.float32)
    slant = rng.uniform(-0.15, 0.3)
    m = np.array([[1.0, -slant, slant * 128], [0.0, 1.0, 0.0]], np.float32)
    a = cv2.warpAffine(a, m, (256, 256), flags=cv2.INTER_LINEAR)
    # Smooth displacement field: each instance of the font is bent like a different hand.
    f = np.stack([cv2.GaussianBlur(rng.uniform(-1, 1, (256, 256)).astype(np.float32), (0, 0), 30) for _ in range(2)])
    f *= rng.uniform(4, 12) / max(float(np.abs(f).max()), 1e-6)
    gy, gx = np.mgrid[0:256, 0:256].astype(np.float32)
    a = cv2.remap(a, gx + f[0], gy + f[1], cv2.INTER_LINEAR, borderValue=0)
    ys, xs = np.nonzero(a > 64)
    if len(ys) == 0:
        return np.zeros((size, size), np.uint8)
    crop = a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    h, w = crop.shape
    k = _DIGIT_FRAC * size / max(h, w)
    small = cv2.resize(crop, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    out = np.zeros((size, size), np.float32)
    y0, x0 = (size - small.shape[0]) // 2, (size - small.shape[1]) // 2
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return np.clip(out, 0, 255).astype(np.uint8)
