"""Single printed boxes, written in and photographed, as the digit model sees them (no TensorFlow).

One sample: a patch of paper with the printed box (and its neighbours' lines) at a camera
resolution of 4.5-8 px/mm, ink drawn with `draw_glyph`, camera effects (blur, uneven light, shadow,
noise, JPEG), then the reader's rectification to BOX_PX_PER_MM with a registration error, the crop of
the box rectangle and `box_to_model_input`. The training script and the model test both build their
data here, so the committed model's card can be checked without TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np

from tpskit.edge.reader.normalise import BOX_PX_PER_MM, batch_to_model_input
from tpskit.sheets.handwriting import Glyph, GlyphKind, InkStyle, Severity, draw_glyph, random_style, severity_value

EMPTY_CLASS = 10
CLASSES = [str(d) for d in range(10)] + ["empty"]
EMPTY_MIX: dict[GlyphKind, float] = {"blank": 0.4, "dash": 0.2, "x": 0.15, "slash": 0.15, "strike": 0.1}
BOX_SIZES_MM = ((9.5, 11.0), (11.0, 13.0))  # the official templates' digit boxes
REGISTRATION_MM = 0.8  # reader's worst registration error, plus a margin
VAL_SEED = 20240301
VAL_COPIES = 2
VAL_EMPTY_FRACTION = 0.1
CHUNK = 500


@dataclass(frozen=True)
class BoxJob:
    kind: GlyphKind  # "digit" or an empty-box mark
    index: int  # image index for digits, -1 otherwise
    severity: float


def render_box(glyph: Glyph, rng: np.random.Generator, severity: Severity = "normal",
               neighbour_pool: np.ndarray | None = None, style: InkStyle | None = None,
               variety: bool = False) -> np.ndarray:
    """One written box, photographed and rectified: the uint8 gray crop the reader would hand over.

    `variety` adds the training-only shape variation of the digits (handwriting.Variety).
    """
    s = severity_value(severity)
    bw_mm, bh_mm = BOX_SIZES_MM[int(rng.random() < 0.35)]
    bw_mm += rng.uniform(-0.3, 0.3)
    bh_mm += rng.uniform(-0.3, 0.3)
    r = rng.uniform(4.5, 8.0)  # camera px per mm on the paper
    margin = 3.2
    cw, ch = round((bw_mm + 2 * margin) * r), round((bh_mm + 2 * margin) * r)
    paper = np.array([rng.uniform(0.85, 1.0), rng.uniform(0.88, 1.0), rng.uniform(0.9, 1.0)], np.float32)
    page = np.empty((ch, cw, 3), np.float32)
    page[:] = paper

    # Printed lines: this box and its neighbours (left/right gap 1.5-2.5 mm, sometimes none).
    line_mm = rng.uniform(0.2, 0.6)
    line_grey = rng.uniform(0.0, 0.35)
    gap = rng.uniform(1.5, 2.5)
    rects = [(margin, margin, bw_mm, bh_mm)]
    if rng.random() < 0.7:
        rects.append((margin - gap - bw_mm, margin, bw_mm, bh_mm))
    if rng.random() < 0.7:
        rects.append((margin + bw_mm + gap, margin, bw_mm, bh_mm))
    _print_rects(page, rects, line_mm, line_grey, r)

    box_px = (margin * r, margin * r, bw_mm * r, bh_mm * r)
    if style is None:
        style = random_style(rng, s, variety=variety)
    draw_glyph(page, box_px, glyph, rng, style, px_per_mm=r)
    if neighbour_pool is not None and len(neighbour_pool) and rng.random() < 0.15 + 0.15 * min(s, 1.0):
        _bleed_from_neighbour(page, rects, margin, bw_mm, bh_mm, gap, r, neighbour_pool, rng, s)

    gray = _camera(page, rng, s, r)
    return _rectify_crop(gray, r, margin, bw_mm, bh_mm, rng, s)


def _print_rects(page: np.ndarray, rects: list[tuple[float, float, float, float]], line_mm: float,
                 grey: float, r: float) -> None:
    ss = 16  # 4 fractional bits
    mask = np.zeros(page.shape[:2], np.uint8)
    t = line_mm * r
    for x, y, w, h in rects:
        x, y, w, h = x * r, y * r, w * r, h * r
        for bar in (
            (x, y, x + w, y + t), (x, y + h - t, x + w, y + h), (x, y, x + t, y + h), (x + w - t, y, x + w, y + h)
        ):
            x0, y0, x1, y1 = bar
            poly = np.round(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]) * ss).astype(np.int32)
            cv2.fillPoly(mask, [poly], 255, cv2.LINE_AA, 4)
    a = mask.astype(np.float32) * (1.0 / 255.0)
    page *= 1.0 - a[:, :, None] * (1.0 - grey)


def _bleed_from_neighbour(page, rects, margin, bw_mm, bh_mm, gap, r, pool, rng, s) -> None:
    """A neighbour's digit written big and off-centre, so its strokes reach into this box's edge."""
    side = -1 if rng.random() < 0.5 else 1
    nx = margin + side * (bw_mm + gap)
    img = pool[rng.integers(len(pool))]
    style = random_style(rng, s)
    push = rng.uniform(0.25, 0.45) * -side  # towards our box
    style = InkStyle(**{**style.__dict__, "offset": (push, rng.uniform(-0.1, 0.1)), "scale": rng.uniform(0.8, 1.0)})
    draw_glyph(page, (nx * r, margin * r, bw_mm * r, bh_mm * r), Glyph.digit(img, 0), rng, style, px_per_mm=r)


def _camera(page: np.ndarray, rng: np.random.Generator, s: float, r: float) -> np.ndarray:
    """Blur, uneven light, shadow, noise and JPEG on the colour patch -> uint8 gray (what the reader sees)."""
    h, w = page.shape[:2]
    sigma = rng.uniform(0.0, 0.35 + 0.9 * s)
    if sigma > 0.2:
        page = cv2.GaussianBlur(page, (0, 0), sigma)
    # Light: exposure, a linear gradient across the patch, a colour cast.
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    grad = (xx * math.cos(ang) + yy * math.sin(ang)) / max(h, w)
    light = rng.uniform(0.75 - 0.35 * min(s, 1.2), 1.05) * (1.0 + rng.uniform(0, 0.1 + 0.35 * s) * (grad - 0.5))
    if rng.random() < 0.1 + 0.25 * s:  # a soft shadow edge (hand, phone, lamp) across the box
        a2 = rng.uniform(0, 2 * math.pi)
        d = (xx - w * rng.uniform(0.2, 0.8)) * math.cos(a2) + (yy - h * rng.uniform(0.2, 0.8)) * math.sin(a2)
        soft = rng.uniform(1.0, 4.0) * r  # penumbra of a few mm at document-camera distance
        depth = rng.uniform(0.1, 0.25 + 0.2 * min(s, 1.0))
        light = light * (1.0 - depth / (1.0 + np.exp(np.clip(-d / soft, -30, 30))))
    cast = np.array([rng.uniform(0.9, 1.05), 1.0, rng.uniform(0.9, 1.08)], np.float32)
    img = page * light[:, :, None] * cast
    img += rng.normal(0, rng.uniform(0.004, 0.012 + 0.03 * s), img.shape).astype(np.float32)
    u8 = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    q = int(rng.integers(max(40, int(85 - 45 * s)), 96))
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, q])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def _rectify_crop(gray: np.ndarray, r: float, margin: float, bw_mm: float, bh_mm: float,
                  rng: np.random.Generator, s: float) -> np.ndarray:
    """The reader's warp to BOX_PX_PER_MM and crop, with its registration error (shift, tiny tilt)."""
    p = BOX_PX_PER_MM
    out_w, out_h = round(bw_mm * p), round(bh_mm * p)
    err = REGISTRATION_MM * (0.5 + 0.5 * min(s, 1.0))
    dx, dy = rng.uniform(-err, err, 2)
    rot = math.radians(rng.uniform(-0.6, 0.6))
    zoom = 1.0 + rng.uniform(-0.02, 0.02)
    persp = rng.uniform(-1, 1, 2) * 2e-4 * s  # residual keystone per px
    # Output pixel (u, v) -> paper mm -> camera pixel.
    c, sn = math.cos(rot), math.sin(rot)
    a = np.array([[c, -sn], [sn, c]]) * zoom / p
    t = np.array([margin + dx, margin + dy])
    m = np.eye(3)
    m[:2, :2] = a * r
    m[:2, 2] = t * r
    m[2, :2] = persp
    return cv2.warpPerspective(gray, m, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def _glyph_for(job: BoxJob, images: np.ndarray, labels: np.ndarray) -> tuple[Glyph, int]:
    if job.kind == "digit":
        return Glyph.digit(images[job.index], int(labels[job.index])), int(labels[job.index])
    return Glyph.empty(job.kind), EMPTY_CLASS


def make_jobs(labels: np.ndarray, copies: int, empty_fraction: float, rng: np.random.Generator,
              severity: Severity | tuple[float, float]) -> list[BoxJob]:
    """Every image `copies` times plus empty boxes so they are `empty_fraction` of all samples."""
    n_digits = len(labels) * copies
    n_empty = round(n_digits * empty_fraction / (1.0 - empty_fraction))
    kinds = list(EMPTY_MIX)
    probs = np.array([EMPTY_MIX[k] for k in kinds])
    empty_kinds = rng.choice(len(kinds), size=n_empty, p=probs / probs.sum())
    total = n_digits + n_empty
    if isinstance(severity, tuple):
        sev = rng.uniform(severity[0], severity[1], total)
    else:
        sev = np.full(total, severity_value(severity))
    jobs = [BoxJob("digit", i % len(labels), float(sev[i])) for i in range(n_digits)]
    jobs += [BoxJob(kinds[k], -1, float(sev[n_digits + j])) for j, k in enumerate(empty_kinds)]
    return jobs


def render_chunk(jobs: Sequence[BoxJob], images: np.ndarray, labels: np.ndarray, seed: Sequence[int],
                 variety: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Render jobs with their own seed (independent of how chunks are spread over processes)."""
    rng = np.random.default_rng(list(seed))
    crops, ys = [], []
    for job in jobs:
        glyph, y = _glyph_for(job, images, labels)
        crops.append(render_box(glyph, rng, job.severity, neighbour_pool=images, variety=variety))
        ys.append(y)
    return batch_to_model_input(crops), np.array(ys, np.uint8)


def build_boxes(images: np.ndarray, labels: np.ndarray, *, copies: int, empty_fraction: float, seed: int,
                severity: Severity | tuple[float, float], pool=None, variety: bool = False,
                ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 model inputs and (N,) labels (10 = empty); same result for any `pool`.

    `variety` (training only) adds handwriting.Variety to the digits' shapes.
    """
    rng = np.random.default_rng(seed)
    jobs = make_jobs(labels, copies, empty_fraction, rng, severity)
    chunks = [jobs[i : i + CHUNK] for i in range(0, len(jobs), CHUNK)]
    seeds = [(seed, 1, k) for k in range(len(chunks))]
    args = [(c, images, labels, sd, variety) for c, sd in zip(chunks, seeds, strict=True)]
    results = pool.starmap(render_chunk, args) if pool is not None else [render_chunk(*a) for a in args]
    return np.concatenate([x for x, _ in results]), np.concatenate([y for _, y in results])


def validation_boxes(severity: Severity = "normal", seed: int = VAL_SEED, copies: int = VAL_COPIES,
                     digits: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The model card's validation set: the validation digits (never trained on) as photographed boxes."""
    if digits is None:
        from tpskit.sheets.digits_data import load_validation_digits

        digits = load_validation_digits()
    images, labels = digits
    sev_seed = seed + {"clean": 0, "normal": 1, "hard": 2}.get(severity, 3) if isinstance(severity, str) else seed
    return build_boxes(images, labels, copies=copies, empty_fraction=VAL_EMPTY_FRACTION,
                       seed=sev_seed, severity=severity)


# ------------------------------------------------------------------------------ officers' handwriting

#: The card's held-out officer set: writers never trained on (held-out seeds and style family).
HELD_OUT_SEED = 20240303
HELD_OUT_WRITERS = 200
HELD_OUT_PER_CLASS = 1


def render_officer_chunk(part: str, writer_seeds: Sequence[int], per_class: int, seed: Sequence[int],
                         severity: Severity | tuple[float, float], empty_fraction: float = VAL_EMPTY_FRACTION,
                         extra: tuple[np.ndarray, np.ndarray] | None = None, extra_fraction: float = 0.0,
                         fonts: Sequence[str] = (), font_fraction: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Boxes written by officers (`officer_digits.hand(seed, part)`), each with that writer's pen.

    Training only (`part="train"`): `extra_fraction` of the digits are `extra` digits (the training split)
    elastically bent and written with the writer's pen, `font_fraction` are handwriting-font digits.
    """
    from tpskit.sheets import officer_digits as od
    from tpskit.sheets.handwriting import Variety, vary_digit

    rng = np.random.default_rng(list(seed))
    kinds = list(EMPTY_MIX)
    probs = np.array([EMPTY_MIX[k] for k in kinds])
    crops, ys = [], []
    for ws in writer_seeds:
        h = od.hand(int(ws), part)  # type: ignore[arg-type]
        labels = [d for d in range(10) for _ in range(per_class)]
        n_empty = round(len(labels) * empty_fraction / (1.0 - empty_fraction) + rng.uniform(-0.5, 0.5))
        labels += [EMPTY_CLASS] * max(0, n_empty)
        pool = np.stack([h.write(d, rng) for d in rng.integers(0, 10, 4)])
        for y in labels:
            s = float(rng.uniform(*severity)) if isinstance(severity, tuple) else severity_value(severity)
            style = h.ink_style(rng, s)
            if y == EMPTY_CLASS:
                glyph = Glyph.empty(kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))])
            else:
                u = rng.random()
                if extra is not None and u < extra_fraction:
                    idx = rng.choice(np.flatnonzero(extra[1] == y))
                    v = Variety(elastic_px=float(rng.uniform(1.0, 2.8)), pressure=0.0)
                    img = vary_digit(extra[0][idx], v, rng)
                    if h.felt_tip:
                        img = od._fill_small_holes(img, h.bleed_rel * 400)
                    glyph, style = Glyph.digit(img, y), replace(style, keep_pen=False)
                elif fonts and u < extra_fraction + font_fraction:
                    img = od.font_digit(fonts[int(rng.integers(len(fonts)))], y, rng)
                    glyph, style = Glyph.digit(img, y), replace(style, keep_pen=False)
                else:
                    glyph = Glyph.digit(h.write(y, rng), y)
            crops.append(render_box(glyph, rng, s, neighbour_pool=pool, style=style))
            ys.append(y)
    return batch_to_model_input(crops), np.array(ys, np.uint8)


def build_officer_boxes(part: str, writer_seeds: Sequence[int], *, per_class: int, seed: int,
                        severity: Severity | tuple[float, float], pool=None, per_chunk: int = 25,
                        **kw) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) model inputs and labels for the writers' boxes; same result for any `pool`."""
    ws = list(writer_seeds)
    chunks = [ws[i : i + per_chunk] for i in range(0, len(ws), per_chunk)]
    args = [(part, c, per_class, (seed, 2, k), severity) for k, c in enumerate(chunks)]
    if pool is not None:
        from functools import partial

        results = pool.starmap(partial(render_officer_chunk, **kw), args)
    else:
        results = [render_officer_chunk(*a, **kw) for a in args]
    return np.concatenate([x for x, _ in results]), np.concatenate([y for _, y in results])


def held_out_officer_boxes(severity: Severity = "normal", writers: int = HELD_OUT_WRITERS,
                           seed: int = HELD_OUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """The model card's officer set: held-out writers (never trained on) as photographed boxes, + ~10 % empty."""
    sev_seed = seed + {"clean": 0, "normal": 1, "hard": 2}.get(severity, 3) if isinstance(severity, str) else seed
    return build_officer_boxes("held_out", range(writers), per_class=HELD_OUT_PER_CLASS, seed=sev_seed,
                               severity=severity)
