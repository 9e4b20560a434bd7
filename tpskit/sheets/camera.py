"""A fixed document camera photographing a sheet on a desk, for tests, the benchmark and the simulated kit.

One photo is: the page (rendered at ~8 px/mm) warped once into a 12 MP frame over a desk texture, then the
optics and the room: lighting gradient, vignetting, a soft shadow, white balance, defocus or motion blur,
sensor noise and JPEG. Everything after the warp runs on uint8 with OpenCV, so a 12 MP photo takes a few
hundred milliseconds. Severity scales every effect; "hard" is still legible to a person.

`shoot()` also returns the ground-truth homography (page pixels -> frame pixels) for tests, and takes hooks
that bad-capture scenarios use to put a hand over a marker or a glare spot over the boxes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

SeverityName = Literal["clean", "normal", "hard"]
FRAME_SIZE = (4056, 3040)  # Raspberry Pi HQ camera, 12.3 MP (width, height)
_LOWRES = 8  # lighting and desk are generated at 1/8 resolution and upscaled
_GAIN_ONE = 128  # uint8 gain maps: 128 = x1.0

# Ranges per severity: (clean, normal, hard). Each photo draws uniformly within its severity's range.
_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "clean": dict(fill=(0.82, 0.9), angle=(-1.5, 1.5), persp=(0.0, 0.008), gradient=(0.0, 0.08),
                  vignette=(0.0, 0.08), shadow=(0.0, 0.0), blur=(0.3, 0.7), motion=(0.0, 0.0),
                  noise=(1.0, 2.0), wb=(0.0, 0.03), quality=(90, 95), exposure=(0.86, 0.95)),
    "normal": dict(fill=(0.74, 0.9), angle=(-4.0, 4.0), persp=(0.005, 0.02), gradient=(0.05, 0.2),
                   vignette=(0.05, 0.18), shadow=(0.0, 0.25), blur=(0.6, 1.3), motion=(0.0, 2.0),
                   noise=(2.0, 4.0), wb=(0.02, 0.07), quality=(78, 90), exposure=(0.72, 0.92)),
    "hard": dict(fill=(0.70, 0.9), angle=(-8.0, 8.0), persp=(0.015, 0.035), gradient=(0.15, 0.32),
                 vignette=(0.12, 0.28), shadow=(0.2, 0.45), blur=(1.2, 2.0), motion=(0.0, 4.0),
                 noise=(3.5, 6.0), wb=(0.05, 0.12), quality=(62, 78), exposure=(0.6, 0.85)),
}
# How the sheet lies under the stand, in quarter turns clockwise of the page in the frame. The stand's usual
# placement puts the sheet's long side along the frame's long side (1); 3 is that placement upside down.
_TURNS = {1: 0.55, 3: 0.25, 0: 0.1, 2: 0.1}


@dataclass(frozen=True)
class Shot:
    """Every parameter of one photo (drawn by `sample_shot`, adjusted by bad-capture scenarios)."""

    size: tuple[int, int] = FRAME_SIZE
    quarter_turns: int = 1
    angle_deg: float = 0.0  # small in-plane rotation on top of the quarter turns
    fill: float = 0.85  # fraction of the frame (limiting dimension) the sheet spans
    centre: tuple[float, float] = (0.0, 0.0)  # offset of the sheet centre, fraction of the free margin
    persp: float = 0.01  # corner displacement as a fraction of the sheet's size
    exposure: float = 0.9  # paper white ends up near exposure * 255
    gradient: float = 0.1  # brightness falls by this fraction across the frame
    vignette: float = 0.1
    shadow: float = 0.0  # depth of a soft shadow across part of the frame
    blur_sigma: float = 0.8  # defocus, frame pixels
    motion_px: float = 0.0  # motion blur length, frame pixels
    noise_sigma: float = 2.0  # sensor noise, uint8 levels
    wb: tuple[float, float, float] = (1.0, 1.0, 1.0)  # BGR white balance gains
    quality: int = 88
    paper: tuple[float, float, float] = (0.93, 0.95, 0.96)  # BGR paper colour
    black: float = 0.07  # printed black reflects a little
    desk: int = 0  # desk texture seed
    show_sheet: bool = True


@dataclass(frozen=True)
class Photo:
    jpeg: bytes
    homography: np.ndarray  # 3x3, page pixels -> frame pixels
    shot: Shot


def sample_shot(rng: np.random.Generator, severity: SeverityName = "normal",
                size: tuple[int, int] = FRAME_SIZE) -> Shot:
    """Draw the parameters of one photo at a severity."""
    if severity not in _RANGES:
        raise ValueError(f"severity must be one of {sorted(_RANGES)}, got {severity!r}")
    r = _RANGES[severity]

    def u(key: str) -> float:
        lo, hi = r[key]
        return float(rng.uniform(lo, hi))

    turns = list(_TURNS)
    quarter = int(turns[rng.choice(len(turns), p=list(_TURNS.values()))])
    wb_spread = u("wb")
    wb = tuple(float(1.0 + rng.uniform(-wb_spread, wb_spread)) for _ in range(3))
    tint = rng.uniform(-0.015, 0.015, 3)
    paper = tuple(float(np.clip(rng.uniform(0.92, 0.97) + t, 0.85, 1.0)) for t in tint)
    return Shot(
        size=size, quarter_turns=quarter, angle_deg=u("angle"), fill=u("fill"),
        centre=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))), persp=u("persp"),
        exposure=u("exposure"), gradient=u("gradient"), vignette=u("vignette"),
        shadow=u("shadow") if rng.random() < 0.6 else 0.0, blur_sigma=u("blur"),
        motion_px=u("motion") if rng.random() < 0.4 else 0.0, noise_sigma=u("noise"),
        wb=wb, quality=round(u("quality")), paper=paper,  # type: ignore[arg-type]
        black=float(rng.uniform(0.04, 0.1)), desk=int(rng.integers(1 << 30)),
    )


def page_homography(page_wh: tuple[int, int], shot: Shot, rng: np.random.Generator) -> np.ndarray:
    """Where the page lands in the frame: quarter turns, small rotation, scale, offset, mild perspective."""
    pw, ph = page_wh
    fw, fh = shot.size
    total = math.radians(90 * shot.quarter_turns + shot.angle_deg)
    c, s = math.cos(total), math.sin(total)
    # Extent of the rotated sheet along the frame axes, in page pixels.
    ext_w = abs(pw * c) + abs(ph * s)
    ext_h = abs(pw * s) + abs(ph * c)
    scale = shot.fill * _fit_scale(page_wh, shot)
    free_x = max(0.0, fw - ext_w * scale) / 2
    free_y = max(0.0, fh - ext_h * scale) / 2
    cx = fw / 2 + shot.centre[0] * free_x * 0.9
    cy = fh / 2 + shot.centre[1] * free_y * 0.9
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64)
    centred = (src - (pw / 2, ph / 2)) * scale
    # Clockwise on screen (y down) for positive angles.
    rot = np.array([[c, -s], [s, c]])
    dst = centred @ rot.T + (cx, cy)
    if shot.persp > 0:
        jitter = rng.uniform(-1, 1, (4, 2)) * shot.persp * max(pw, ph) * scale
        # A tilted stand foreshortens one side: pull a pair of adjacent corners together as well.
        side = int(rng.integers(4))
        a, b = side, (side + 1) % 4
        mid = (dst[a] + dst[b]) / 2
        k = rng.uniform(0, shot.persp)
        dst[a] += (mid - dst[a]) * k
        dst[b] += (mid - dst[b]) * k
        dst = dst + jitter * 0.5
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def _fit_scale(page_wh: tuple[int, int], shot: Shot) -> float:
    """Frame pixels per page pixel at fill = 1 for this orientation."""
    pw, ph = page_wh
    fw, fh = shot.size
    total = math.radians(90 * shot.quarter_turns + shot.angle_deg)
    c, s = abs(math.cos(total)), abs(math.sin(total))
    return min(fw / (pw * c + ph * s), fh / (pw * s + ph * c))


def fill_for_px_per_mm(shot: Shot, page_wh: tuple[int, int], page_px_per_mm: float, target: float) -> float:
    """The `fill` that puts `target` frame pixels on each mm of the sheet."""
    return target / (page_px_per_mm * _fit_scale(page_wh, shot))


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cells: int) -> np.ndarray:
    g = rng.standard_normal((max(2, shape[0] * cells // shape[1] + 2), cells + 2)).astype(np.float32)
    return cv2.resize(g, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def desk_background(size: tuple[int, int], seed: int) -> np.ndarray:
    """A desk seen by the camera: wood, grey laminate, a cloth or a pale table top (uint8 BGR, full size)."""
    rng = np.random.default_rng(seed)
    fw, fh = size
    lw, lh = max(8, fw // _LOWRES), max(8, fh // _LOWRES)
    kind = int(rng.integers(4))
    base = {
        0: (rng.uniform(40, 70), rng.uniform(75, 110), rng.uniform(120, 160)),  # wood, BGR
        1: (rng.uniform(90, 140),) * 3,  # grey laminate
        2: (rng.uniform(50, 90), rng.uniform(70, 110), rng.uniform(30, 60)),  # green cloth
        3: (rng.uniform(150, 185), rng.uniform(160, 190), rng.uniform(165, 195)),  # pale table
    }[kind]
    tex = _smooth_noise(rng, (lh, lw), 6) * 0.5 + _smooth_noise(rng, (lh, lw), 40) * 0.35
    if kind == 0:  # wood grain along one direction
        ang = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
        t = xx * math.cos(ang) + yy * math.sin(ang)
        tex += np.sin(t * rng.uniform(0.15, 0.4) + _smooth_noise(rng, (lh, lw), 8) * 3.0) * 0.8
    amp = 10.0 if kind != 3 else 6.0
    low = np.clip(np.asarray(base, np.float32)[None, None, :] + tex[..., None] * amp, 0, 255).astype(np.uint8)
    return cv2.resize(low, (fw, fh), interpolation=cv2.INTER_LINEAR)


def _gain_map(shot: Shot, rng: np.random.Generator, extra: np.ndarray | None = None) -> np.ndarray:
    """Low-resolution BGR gain (float32): exposure x gradient x vignette x shadow x white balance."""
    fw, fh = shot.size
    lw, lh = max(8, fw // _LOWRES), max(8, fh // _LOWRES)
    yy, xx = np.mgrid[0:lh, 0:lw].astype(np.float32)
    xn, yn = xx / lw - 0.5, yy / lh - 0.5
    ang = rng.uniform(0, 2 * math.pi)
    ramp = xn * math.cos(ang) + yn * math.sin(ang)  # -0.7..0.7
    gain = 1.0 - shot.gradient * (ramp + 0.5)
    gain *= 1.0 - shot.vignette * (xn**2 + yn**2) * 2.0
    if shot.shadow > 0:
        # The soft edge of a shadow (the operator, the stand's arm) across one part of the frame.
        sang = rng.uniform(0, 2 * math.pi)
        d = xn * math.cos(sang) + yn * math.sin(sang) - rng.uniform(0.0, 0.35)
        soft = rng.uniform(0.04, 0.12)
        gain *= 1.0 - shot.shadow / (1.0 + np.exp(-d / soft))
    if extra is not None:
        gain *= extra
    gain = gain[..., None] * np.asarray(shot.wb, np.float32)[None, None, :] * shot.exposure
    return gain.astype(np.float32)


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    n = max(3, math.ceil(length) | 1)
    k = np.zeros((n, n), np.float32)
    c = n // 2
    dx, dy = math.cos(angle), math.sin(angle)
    for t in np.linspace(-length / 2, length / 2, n * 3):
        k[round(c + float(t) * dy), round(c + float(t) * dx)] += 1.0
    return k / k.sum()


def _add_noise(frame: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian sensor noise; one half-size tile reused per quadrant (no visible repetition, half the cost)."""
    if sigma <= 0:
        return frame
    h, w = frame.shape[:2]
    th, tw = (h + 1) // 2, (w + 1) // 2
    tile = np.empty((th, tw, 3), np.int16)
    cv2.setRNGSeed(int(rng.integers(1 << 31)))
    cv2.randn(tile, 0, sigma)
    out = np.empty_like(frame)
    for y0 in (0, th):
        for x0 in (0, tw):
            y1, x1 = min(h, y0 + th), min(w, x0 + tw)
            out[y0:y1, x0:x1] = cv2.add(frame[y0:y1, x0:x1], tile[: y1 - y0, : x1 - x0], dtype=cv2.CV_8U)
    return out


Hook = Callable[[np.ndarray, np.ndarray, np.random.Generator], None]


def shoot(page: np.ndarray | None, shot: Shot, rng: np.random.Generator, *,
          before_light: Hook | None = None, after_light: Hook | None = None,
          gain_extra: np.ndarray | None = None) -> Photo:
    """Photograph `page` (float32 BGR in [0, 1]; None = no sheet) with the parameters of `shot`.

    Hooks get (frame uint8 BGR, homography, rng) and draw in place: `before_light` for objects lit like
    the sheet (a hand), `after_light` for light itself (glare). `gain_extra` multiplies the low-resolution
    lighting map (shape (h/8, w/8)).
    """
    fw, fh = shot.size
    frame = desk_background(shot.size, shot.desk)
    hom = np.eye(3)
    if page is not None and shot.show_sheet:
        ph, pw = page.shape[:2]
        hom = page_homography((pw, ph), shot, rng)
        # Paper colour and the printed black's reflectance, folded into one affine colour transform.
        paper = np.asarray(shot.paper, np.float32)
        m = np.zeros((3, 4), np.float32)
        m[np.arange(3), np.arange(3)] = paper * (1.0 - shot.black)
        m[:, 3] = paper * shot.black
        printed = cv2.convertScaleAbs(cv2.transform(page.astype(np.float32, copy=False), m), alpha=255.0)
        cv2.warpPerspective(printed, hom, (fw, fh), dst=frame, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_TRANSPARENT)
    if before_light is not None:
        before_light(frame, hom, rng)
    if shot.blur_sigma > 0.25:
        frame = cv2.GaussianBlur(frame, (0, 0), shot.blur_sigma)
    if shot.motion_px >= 1.5:
        frame = cv2.filter2D(frame, -1, _motion_kernel(shot.motion_px, rng.uniform(0, math.pi)))
    gain = _gain_map(shot, rng, gain_extra)
    gain_u8 = np.clip(gain * _GAIN_ONE, 0, 255).astype(np.uint8)
    frame = cv2.multiply(frame, cv2.resize(gain_u8, (fw, fh), interpolation=cv2.INTER_LINEAR),
                         scale=1.0 / _GAIN_ONE)
    if after_light is not None:
        after_light(frame, hom, rng)
    frame = _add_noise(frame, shot.noise_sigma, rng)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(shot.quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR frame
        raise RuntimeError("JPEG encoding failed")
    return Photo(jpeg=buf.tobytes(), homography=hom, shot=shot)


def photograph_with_truth(page: np.ndarray, rng: np.random.Generator, severity: SeverityName = "normal",
                          size: tuple[int, int] = FRAME_SIZE, **overrides: object) -> Photo:
    """Like `photograph`, also returning the homography and the drawn parameters (`overrides` replace them)."""
    shot = sample_shot(rng, severity, size)
    if overrides:
        shot = replace(shot, **overrides)  # type: ignore[arg-type]
    return shoot(page, shot, rng)


def photograph(page: np.ndarray, rng: np.random.Generator, severity: SeverityName = "normal",
               size: tuple[int, int] = FRAME_SIZE) -> bytes:
    """A JPEG of `page` on a desk under the kit's fixed camera, at severity clean, normal or hard."""
    return photograph_with_truth(page, rng, severity, size).jpeg
