"""What an officer writes into one box, drawn in ballpoint onto a page image (pure numpy/cv2).

Used by the digit model's training synthesis and by the sheet filler, so the model is trained on
the same pen strokes the tests and benchmarks photograph. Digits are real handwritten digits (an
MNIST image from the fixed split); empty-box marks (dash, X, slash, strike-through) are synthesised
strokes. Ink is applied multiplicatively, like ballpoint on paper:
``page *= 1 - alpha * (1 - ink_colour)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

GlyphKind = Literal["digit", "blank", "dash", "x", "slash", "strike"]
EMPTY_KINDS: tuple[GlyphKind, ...] = ("blank", "dash", "x", "slash", "strike")
# Box height assumed when the caller gives no scale (the official forms use 11 and 13 mm boxes).
NOMINAL_BOX_H_MM = 11.5
Severity = Literal["clean", "normal", "hard"] | float
SEVERITY_LEVELS = {"clean": 0.0, "normal": 0.5, "hard": 1.0}


def severity_value(severity: Severity) -> float:
    return SEVERITY_LEVELS[severity] if isinstance(severity, str) else float(severity)


@dataclass(frozen=True)
class Glyph:
    """One box's content: a handwritten digit (28x28 uint8, 255 = ink) or an empty-box mark."""

    kind: GlyphKind
    image: np.ndarray | None = None
    label: int | None = None

    @classmethod
    def digit(cls, image: np.ndarray, label: int) -> Glyph:
        return cls("digit", np.asarray(image, np.uint8), int(label))

    @classmethod
    def empty(cls, kind: GlyphKind = "blank") -> Glyph:
        if kind not in EMPTY_KINDS:
            raise ValueError(f"not an empty-box mark: {kind}")
        return cls(kind)

    @property
    def is_empty(self) -> bool:
        return self.kind != "digit"


@dataclass(frozen=True)
class Variety:
    """Training-only variation of the real digits, beyond pen and placement (where writers differ most).

    Off unless `random_style(..., variety=True)`: generated sheets and the card's validation boxes are
    drawn without it, bit for bit as before.
    """

    elastic_px: float = 0.0  # amplitude of a smooth displacement field, in MNIST pixels (writers' shapes)
    breaks: int = 0  # small gaps along the strokes: pen skips, loops left open
    close_px: int = 0  # morphological closing: loops closed, strokes joined
    zero_tail: bool = False  # a 0 whose stroke overshoots where it started, at the top
    pressure: float = 0.0  # low-frequency ink-density variation along the strokes, 0..1


@dataclass(frozen=True)
class InkStyle:
    """One officer's pen and habits. draw_glyph adds small per-box jitter on top."""

    ink_bgr: tuple[float, float, float] = (0.55, 0.25, 0.12)  # blue ballpoint, BGR in [0, 1]
    density: float = 0.9  # peak alpha of a stroke (pen pressure)
    pen_mm: float = 0.5  # stroke width
    scale: float = 0.72  # digit height / box height
    offset: tuple[float, float] = (0.0, 0.0)  # centre offset as a fraction of box (w, h)
    rotation_deg: float = 0.0  # positive = counter-clockwise
    slant: float = 0.0  # horizontal shear (x += slant * (centre_y - y)), positive leans right
    jitter: float = 0.5  # per-box variation of scale/offset/rotation, 0..1
    one_flag: bool = False  # `1` with a long flag at the top
    one_foot: bool = False  # `1` with a foot (base stroke)
    seven_crossed: bool = False  # `7` with a bar through the stem
    four_open: bool = False  # `4` written open at the top (synthesised strokes)
    variety: Variety | None = None  # training-only shape variation (see Variety)
    # The digit image was drawn with this writer's pen already (officer_digits): keep its stroke width
    # instead of eroding/dilating it to pen_mm (a felt-tip's filled loops must stay filled).
    keep_pen: bool = False


def random_style(rng: np.random.Generator, severity: Severity = "normal", variety: bool = False) -> InkStyle:
    """A plausible officer: blue or black ballpoint, pen width, size, placement, slant, habits.

    severity 0 (clean) .. 1 (hard): wider ranges of size, off-centre placement and rotation, fainter
    ink; values above 1 are allowed (training uses a little beyond 'hard'). `variety` adds the
    training-only shape variation (drawn after everything else, so the rest of the style is unchanged).
    """
    s = severity_value(severity)
    if rng.random() < 0.6:  # blue ballpoint
        ink = (rng.uniform(0.45, 0.8), rng.uniform(0.15, 0.5), rng.uniform(0.02, 0.3))
    else:  # black (some are dark grey or slightly bluish)
        k = rng.uniform(0.05, 0.3)
        ink = (k + rng.uniform(0, 0.08), k + rng.uniform(0, 0.04), k)
    lo_scale = 0.68 - 0.13 * min(s, 1.2)
    hi_scale = 0.80 + 0.10 * min(s, 1.2)
    off = 0.04 + 0.10 * s
    style = InkStyle(
        ink_bgr=tuple(float(v) for v in ink),
        density=float(rng.uniform(max(0.45, 0.85 - 0.3 * s), 1.0)),
        pen_mm=float(np.exp(rng.uniform(np.log(0.28), np.log(0.95 + 0.15 * s)))),
        scale=float(rng.uniform(lo_scale, hi_scale)),
        offset=(float(rng.uniform(-off, off)), float(rng.uniform(-off * 0.8, off * 0.8))),
        # Lean stays within ~+-15 deg overall (MNIST digits bring their own slant on top): a 1 leaning
        # much further is a slash, which officers use to void a box.
        rotation_deg=float(rng.uniform(-1, 1) * (3 + 7 * min(s, 1.0))),
        slant=float(rng.uniform(-1, 1) * (0.03 + 0.09 * min(s, 1.0))),
        jitter=float(0.3 + 0.5 * min(s, 1.0)),
        one_flag=bool(rng.random() < 0.3),
        one_foot=bool(rng.random() < 0.2),
        seven_crossed=bool(rng.random() < 0.25),
        four_open=bool(rng.random() < 0.25),
    )
    if variety:
        style = replace(style, variety=random_variety(rng))
    return style


def random_variety(rng: np.random.Generator) -> Variety:
    """Mostly mild: the real digits stay the bulk of what the model sees."""
    return Variety(
        elastic_px=float(rng.uniform(0.5, 2.2)) if rng.random() < 0.7 else 0.0,
        breaks=int(rng.random() < 0.2) + int(rng.random() < 0.05),
        close_px=int(rng.random() < 0.1),
        zero_tail=bool(rng.random() < 0.3),
        pressure=float(rng.uniform(0.2, 0.6)) if rng.random() < 0.3 else 0.0,
    )


def vary_digit(img: np.ndarray, v: Variety, rng: np.random.Generator) -> np.ndarray:
    """An MNIST image (uint8, 255 = ink) reshaped by `v`: elastic field, closing, small gaps."""
    out = img
    if v.elastic_px > 0:
        # Smooth random field (sigma ~ a quarter of the digit): changes shape, keeps the strokes whole.
        f = rng.uniform(-1, 1, (2, 28, 28)).astype(np.float32)
        sig = float(rng.uniform(3.0, 5.0))
        f = np.stack([cv2.GaussianBlur(c, (0, 0), sig) for c in f])
        f *= v.elastic_px / max(float(np.abs(f).max()), 1e-6)
        gy, gx = np.mgrid[0:28, 0:28].astype(np.float32)
        out = cv2.remap(out, gx + f[0], gy + f[1], cv2.INTER_LINEAR, borderValue=0)
    if v.close_px:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * v.close_px + 1, 2 * v.close_px + 1))
        out = cv2.morphologyEx(out, cv2.MORPH_CLOSE, k)
    if v.breaks:
        ys, xs = np.nonzero(out > 127)
        if len(ys) > 40:
            out = out.copy()
            for i in rng.choice(len(ys), v.breaks, replace=False):
                cv2.circle(out, (int(xs[i]), int(ys[i])), int(rng.integers(1, 3)), 0, -1)
    return out


def _stroke_width_28(img: np.ndarray) -> float:
    """Mean stroke width of an MNIST image in its own pixels: 2 * area / perimeter."""
    m = (img > 127).astype(np.uint8)
    area = float(m.sum())
    if area == 0:
        return 2.5
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    perim = sum(cv2.arcLength(c, True) for c in contours)
    return float(np.clip(2.0 * area / max(perim, 1.0), 1.2, 5.0))


def _empty_strokes(kind: GlyphKind, rng: np.random.Generator) -> list[np.ndarray]:
    """Polylines in box-unit coordinates (0..1 across the box, y down) for the empty-box marks."""
    j = lambda a: float(rng.uniform(-a, a))  # noqa: E731
    if kind == "dash":
        y = 0.5 + j(0.15)
        half = rng.uniform(0.12, 0.35)
        c = 0.5 + j(0.1)
        return [np.array([[c - half, y + j(0.04)], [c + half, y + j(0.04)]])]
    if kind == "x":
        m = rng.uniform(0.08, 0.3)
        return [
            np.array([[m + j(0.05), m + j(0.05)], [1 - m + j(0.05), 1 - m + j(0.05)]]),
            np.array([[1 - m + j(0.05), m + j(0.05)], [m + j(0.05), 1 - m + j(0.05)]]),
        ]
    if kind == "slash":  # long and diagonal, corner to corner
        m = rng.uniform(0.03, 0.2)
        if rng.random() < 0.8:
            return [np.array([[1 - m + j(0.05), m + j(0.05)], [m + j(0.05), 1 - m + j(0.05)]])]
        return [np.array([[m + j(0.05), m + j(0.05)], [1 - m + j(0.05), 1 - m + j(0.05)]])]
    if kind == "strike":  # a long horizontal stroke through the box, often across the lines
        y = 0.5 + j(0.2)
        return [np.array([[-rng.uniform(0, 0.3), y + j(0.05)], [1 + rng.uniform(0, 0.3), y + j(0.05)]])]
    return []


def _open_four_strokes(rng: np.random.Generator) -> list[np.ndarray]:
    """An open-topped 4 in digit-unit coordinates (x 0..~0.75, y 0..1)."""
    j = lambda a: float(rng.uniform(-a, a))  # noqa: E731
    bar_y = 0.62 + j(0.06)
    left_top = (0.28 + j(0.08), 0.0 + j(0.03))
    stem_x = 0.52 + j(0.06)
    return [
        np.array([left_top, (0.02 + j(0.04), bar_y), (0.75 + j(0.05), bar_y + j(0.03))]),
        np.array([(stem_x + j(0.04), 0.05 + j(0.05)), (stem_x + j(0.06), 1.0)]),
    ]


def _digit_variant_strokes(img: np.ndarray, label: int, style: InkStyle, rng: np.random.Generator) -> list[
    np.ndarray
]:
    """Extra strokes in MNIST pixel coordinates for the local habits (flagged/footed 1, crossed 7)."""
    ys, xs = np.nonzero(img > 127)
    if len(ys) == 0:
        return []
    y0, y1 = ys.min(), ys.max()
    h = float(y1 - y0 + 1)
    strokes: list[np.ndarray] = []
    if label == 1:
        top_x = float(xs[ys <= y0 + 1].mean())
        bot_x = float(xs[ys >= y1 - 1].mean())
        if style.one_flag:
            length = rng.uniform(0.25, 0.45) * h
            ang = math.radians(rng.uniform(25, 60))  # below horizontal, pointing left
            strokes.append(
                np.array([[top_x, y0], [top_x - length * math.cos(ang), y0 + length * math.sin(ang)]])
            )
        if style.one_foot:
            half = rng.uniform(0.15, 0.3) * h
            yb = y1 + rng.uniform(-0.5, 0.5)
            strokes.append(np.array([[bot_x - half, yb], [bot_x + half, yb + rng.uniform(-0.8, 0.8)]]))
    elif label == 0 and style.variety is not None and style.variety.zero_tail:
        # The pen closes the loop at the top and runs on a little, out or into the loop.
        top_x = float(xs[ys <= y0 + 1].mean())
        length = rng.uniform(0.1, 0.28) * h
        ang = math.radians(rng.uniform(-60, 60) + (90 if rng.random() < 0.7 else -90))
        sx = top_x + rng.uniform(-0.1, 0.1) * h
        strokes.append(np.array([[sx, y0 + 0.5], [sx + length * math.sin(ang), y0 + 0.5 - length * math.cos(ang)]]))
    elif label == 7 and style.seven_crossed:
        ym = y0 + rng.uniform(0.45, 0.6) * h
        row = xs[np.abs(ys - ym) <= 1]
        if len(row):
            xc = float(row.mean())
            half = rng.uniform(0.18, 0.3) * h
            strokes.append(np.array([[xc - half, ym + rng.uniform(-0.5, 0.5)], [xc + half, ym]]))
    return strokes


def _apply_ink(page: np.ndarray, alpha: np.ndarray, x0: int, y0: int, style: InkStyle,
               rng: np.random.Generator) -> None:
    h, w = alpha.shape
    ph, pw = page.shape[:2]
    ax0, ay0 = max(0, -x0), max(0, -y0)
    ax1, ay1 = min(w, pw - x0), min(h, ph - y0)
    if ax1 <= ax0 or ay1 <= ay0:
        return
    a = alpha[ay0:ay1, ax0:ax1]
    # Ballpoint leaves slightly uneven ink along a stroke.
    texture = 1.0 - 0.25 * rng.random(a.shape, dtype=np.float32) * rng.uniform(0.2, 1.0)
    a = (a * (style.density * texture)).astype(np.float32)
    if style.variety is not None and style.variety.pressure > 0 and min(a.shape) > 2:
        # Pen pressure drifts along a stroke: a smooth field, some parts much fainter.
        field = cv2.resize(rng.random((3, 3), dtype=np.float32), (a.shape[1], a.shape[0]),
                           interpolation=cv2.INTER_CUBIC)
        a *= np.clip(1.0 - style.variety.pressure * field, 0.2, 1.0)
    ink = np.asarray(style.ink_bgr, np.float32)
    region = page[y0 + ay0 : y0 + ay1, x0 + ax0 : x0 + ax1]
    if page.ndim == 3:
        region *= 1.0 - a[:, :, None] * (1.0 - ink[None, None, :])
    else:  # a gray page takes the ink's luminance
        lum = float(ink @ np.array([0.114, 0.587, 0.299], np.float32))
        region *= 1.0 - a * (1.0 - lum)


def _soft_threshold(m: np.ndarray) -> np.ndarray:
    """Upsampled MNIST grey levels -> crisp anti-aliased pen alpha."""
    return np.clip((m - 0.3) * (1.0 / 0.4), 0.0, 1.0)


def draw_glyph(
    page: np.ndarray,
    box_px: tuple[float, float, float, float],
    glyph: Glyph,
    rng: np.random.Generator,
    style: InkStyle,
    *,
    px_per_mm: float | None = None,
) -> None:
    """Draw `glyph` into the box (x, y, w, h in page pixels) of a float32 page in [0, 1], in place.

    The pen width is physical: `px_per_mm` defaults to the box height over NOMINAL_BOX_H_MM.
    Strokes may leave the box (off-centre digits touch or cross the printed lines).
    """
    bx, by, bw, bh = (float(v) for v in box_px)
    ppm = px_per_mm if px_per_mm is not None else bh / NOMINAL_BOX_H_MM
    pen_px = max(0.8, style.pen_mm * ppm)
    j = style.jitter
    if glyph.kind == "blank":
        return
    if glyph.is_empty:
        strokes = _empty_strokes(glyph.kind, rng)
        pts = [np.column_stack([bx + s[:, 0] * bw, by + s[:, 1] * bh]) for s in strokes]
        _draw_polylines(page, pts, pen_px, style, rng)
        return
    assert glyph.image is not None and glyph.label is not None

    scale = style.scale * (1.0 + j * rng.uniform(-0.08, 0.08))
    target_h = scale * bh
    rot = math.radians(style.rotation_deg + j * rng.uniform(-3, 3))
    slant = style.slant + j * rng.uniform(-0.04, 0.04)
    cx = bx + bw * (0.5 + style.offset[0] + j * rng.uniform(-0.05, 0.05))
    cy = by + bh * (0.5 + style.offset[1] + j * rng.uniform(-0.04, 0.04))
    aspect = 1.0 + j * rng.uniform(-0.1, 0.1)  # writers' width/height habit

    if glyph.label == 4 and style.four_open:
        # Synthesised open 4: draw strokes in digit units mapped through the same placement.
        strokes = _open_four_strokes(rng)
        src_h, src_w = 1.0, 0.75
        pts_src = [s * np.array([1.0, 1.0]) for s in strokes]
        m = _placement(src_w / 2, src_h / 2, target_h / src_h, aspect, rot, slant, cx, cy)
        pts = [_affine(m, s) for s in pts_src]
        _draw_polylines(page, pts, pen_px, style, rng)
        return

    img = glyph.image
    if style.variety is not None:
        img = vary_digit(img, style.variety, rng)
    ys, xs = np.nonzero(img > 40)
    if len(ys) == 0:
        return
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    src_h = float(y1 - y0)
    s = target_h / src_h
    m = _placement((x0 + x1) / 2, (y0 + y1) / 2, s, aspect, rot, slant, cx, cy)
    extra = _digit_variant_strokes(img, glyph.label, style, rng)

    # Bounding region on the page (digit + extra strokes + pen), warp the MNIST mask straight into it.
    corners = np.array([[x0 - 1, y0 - 1], [x1 + 1, y0 - 1], [x0 - 1, y1 + 1], [x1 + 1, y1 + 1]], float)
    allpts = np.vstack([_affine(m, corners)] + [_affine(m, e) for e in extra])
    pad = math.ceil(pen_px) + 2
    px0 = math.floor(allpts[:, 0].min()) - pad
    py0 = math.floor(allpts[:, 1].min()) - pad
    px1 = math.ceil(allpts[:, 0].max()) + pad
    py1 = math.ceil(allpts[:, 1].max()) + pad
    w, h = px1 - px0, py1 - py0
    if w <= 0 or h <= 0 or w > 4 * bw + 50 or h > 4 * bh + 50:
        return
    m_local = m.copy()
    m_local[:, 2] -= (px0, py0)
    src = img.astype(np.float32) * (1.0 / 255.0)
    mask = cv2.warpAffine(src, m_local, (w, h), flags=cv2.INTER_CUBIC, borderValue=0)

    # Pen width: MNIST strokes (scaled) vs. the officer's pen; erode or dilate the difference.
    cur = _stroke_width_28(img) * s
    # Thinning MNIST's marker-like strokes too far breaks them where they are thin; a ballpoint line
    # is continuous, so erode to at most 40 % of the original width.
    delta = (max(pen_px, 0.4 * cur) - cur) / 2.0
    r = round(abs(delta))
    if r >= 1 and not style.keep_pen:
        k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        mask = cv2.dilate(mask, k) if delta > 0 else cv2.erode(mask, k)
    alpha = _soft_threshold(mask)
    if extra:
        canvas = np.zeros((h * 4, w * 4), np.uint8)
        for e in extra:
            p = np.round((_affine(m_local, e)) * 4 * 16).astype(np.int32)  # 4 fractional bits
            cv2.polylines(canvas, [p], False, 255, max(1, round(pen_px * 4)), cv2.LINE_AA, 4)
        extra_a = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        alpha = np.maximum(alpha, extra_a)
    _apply_ink(page, alpha, px0, py0, style, rng)


def _placement(src_cx: float, src_cy: float, s: float, aspect: float, rot: float, slant: float,
               cx: float, cy: float) -> np.ndarray:
    """2x3 affine: centre the source at the origin, scale, slant, rotate, move to (cx, cy)."""
    c, sn = math.cos(rot), math.sin(rot)
    a = np.array([[s * aspect, 0.0], [0.0, s]])
    a = np.array([[1.0, -slant], [0.0, 1.0]]) @ a  # y up the glyph leans right for slant > 0
    a = np.array([[c, sn], [-sn, c]]) @ a
    t = np.array([cx, cy]) - a @ np.array([src_cx, src_cy])
    return np.hstack([a, t[:, None]])


def _affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, float).reshape(-1, 2)
    return pts @ m[:, :2].T + m[:, 2]


def _draw_polylines(page: np.ndarray, pts: list[np.ndarray], pen_px: float, style: InkStyle,
                    rng: np.random.Generator) -> None:
    """Anti-aliased pen strokes (4x supersampled) with a little wobble, applied as ink."""
    if not pts:
        return
    allp = np.vstack(pts)
    pad = math.ceil(pen_px) + 3
    x0 = math.floor(allp[:, 0].min()) - pad
    y0 = math.floor(allp[:, 1].min()) - pad
    x1 = math.ceil(allp[:, 0].max()) + pad
    y1 = math.ceil(allp[:, 1].max()) + pad
    w, h = x1 - x0, y1 - y0
    if w <= 0 or h <= 0:
        return
    ss = 4
    canvas = np.zeros((h * ss, w * ss), np.uint8)
    thick = max(1, round(pen_px * ss))
    for p in pts:
        # Hand-drawn strokes are not ruler-straight: add a midpoint with a small sideways wobble.
        if len(p) == 2:
            d = p[1] - p[0]
            n = np.array([-d[1], d[0]]) / (np.hypot(*d) + 1e-6)
            mid = (p[0] + p[1]) / 2 + n * rng.normal(0, 0.02) * np.hypot(*d)
            p = np.array([p[0], mid, p[1]])
        q = np.round((p - (x0, y0)) * ss * 16).astype(np.int32)
        cv2.polylines(canvas, [q], False, 255, thick, cv2.LINE_AA, 4)
    alpha = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    _apply_ink(page, alpha, x0, y0, style, rng)


def with_habits(style: InkStyle, **habits: bool) -> InkStyle:
    """A copy of `style` with some habits switched (e.g. ``with_habits(s, one_flag=True)``)."""
    return replace(style, **habits)
