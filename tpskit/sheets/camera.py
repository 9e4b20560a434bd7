"""A camera photographing a sheet on a desk, for tests, the benchmark and the simulated kit: as wide as the
field, one parameter per condition so that the benchmark can sweep each on its own.

One photo: the page (rendered at ~8 px/mm) on a physical sheet, which may curl or carry a fold, seen by a
pinhole camera (8 or 12 MP, landscape or portrait) from above, tilted up to 20 degrees, filling 55 to 98 %
of the frame, a marker possibly within a millimetre of the frame's edge; then the room and the optics: paper
from grey to clipped white, cream or recycled; a warm or cool lamp, over- or underexposure, gradient and
vignetting; soft shadows and hard ones (a hand, a phone, the stand's arm) across the boxes; a weak sheen;
defocus and slight motion blur, sensor noise and JPEG 60-95.

Conditions (`CONDITIONS`) and their ranges per severity (`RANGES`): "clean", "normal" and "hard" are all
photos a person reads without effort ("hard" is the far end of that). `sample_shot(rng, severity,
only=condition)` draws one condition at a severity and the rest clean, so that its own effect can be
measured. What a person cannot read (true glare, real defocus, lights off, a hand over a marker, ...) is in
`bad_captures.py`, built on the same camera.

`shoot()` returns the photo with its `Projection` (page pixels -> frame pixels, exact on a curled sheet) and
takes hooks that bad captures use to put a hand over a marker or a glare spot over the boxes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal

import cv2
import numpy as np

SeverityName = Literal["clean", "normal", "hard"]
SEVERITIES: tuple[SeverityName, ...] = ("clean", "normal", "hard")
FRAME_SIZE = (4056, 3040)  # Raspberry Pi HQ camera, 12.3 MP (width, height), landscape
SENSORS: dict[str, tuple[int, int]] = {"12mp": FRAME_SIZE, "8mp": (3280, 2464)}  # 8 MP: Pi camera v2
_LOWRES = 8  # lighting and desk are generated at 1/8 resolution and upscaled
_GAIN_ONE = 128  # uint8 gain maps: 128 = x1.0

#: Every condition the benchmark sweeps on its own (the pen is drawn by fill.py, see fill.PEN_RANGES).
CONDITIONS: tuple[str, ...] = ("sensor", "framing", "tilt", "curl", "paper", "light", "shadow", "sheen", "blur",
                               "jpeg")

# Ranges per condition and severity: each photo draws uniformly within them. Probabilities ("p_...") say how
# often an optional effect is present at all.
RANGES: dict[str, dict[SeverityName, dict[str, tuple[float, float]]]] = {
    "sensor": {  # p_portrait: portrait frames; p_8mp: the 8 MP sensor
        "clean": dict(p_portrait=(0.0, 0.0), p_8mp=(0.0, 0.0)),
        "normal": dict(p_portrait=(0.4, 0.4), p_8mp=(0.4, 0.4)),
        "hard": dict(p_portrait=(0.5, 0.5), p_8mp=(0.5, 0.5)),
    },
    "framing": {  # fill of the limiting frame dimension; in-plane angle; p_snug: a marker 0-1 mm from an edge
        "clean": dict(fill=(0.8, 0.9), angle=(-1.5, 1.5), p_snug=(0.0, 0.0)),
        "normal": dict(fill=(0.62, 0.95), angle=(-5.0, 5.0), p_snug=(0.15, 0.15)),
        "hard": dict(fill=(0.55, 0.98), angle=(-10.0, 10.0), p_snug=(0.35, 0.35)),
    },
    "tilt": {  # degrees between sheet and sensor; lens field of view (diagonal)
        "clean": dict(tilt=(0.0, 2.0), fov=(55.0, 65.0)),
        "normal": dict(tilt=(0.0, 8.0), fov=(50.0, 72.0)),
        "hard": dict(tilt=(5.0, 20.0), fov=(50.0, 78.0)),
    },
    "curl": {  # height (mm) of a curled edge; of a fold's ridge
        "clean": dict(curl=(0.0, 0.0), fold=(0.0, 0.0), p_curl=(0.0, 0.0), p_fold=(0.0, 0.0)),
        "normal": dict(curl=(1.0, 6.0), fold=(0.5, 2.0), p_curl=(0.4, 0.4), p_fold=(0.2, 0.2)),
        "hard": dict(curl=(4.0, 15.0), fold=(1.5, 5.0), p_curl=(0.6, 0.6), p_fold=(0.4, 0.4)),
    },
    "paper": {  # reflectance of white paper; p of cream, grey and recycled stock; recycled speck density
        "clean": dict(white=(0.9, 0.96), p_cream=(0.0, 0.0), p_grey=(0.0, 0.0), p_recycled=(0.0, 0.0),
                      grey=(0.8, 0.86), specks=(0.0, 0.0)),
        "normal": dict(white=(0.86, 0.97), p_cream=(0.2, 0.2), p_grey=(0.15, 0.15), p_recycled=(0.1, 0.1),
                       grey=(0.74, 0.86), specks=(0.2, 0.6)),
        "hard": dict(white=(0.84, 0.98), p_cream=(0.2, 0.2), p_grey=(0.25, 0.25), p_recycled=(0.25, 0.25),
                     grey=(0.62, 0.82), specks=(0.4, 1.0)),
    },
    "light": {  # exposure (paper white = exposure x 255; above 1 clips); lamp colour; gradient; vignetting
        "clean": dict(exposure=(0.86, 0.95), lamp=(0.0, 0.1), gradient=(0.0, 0.08), vignette=(0.0, 0.08)),
        "normal": dict(exposure=(0.66, 1.1), lamp=(0.0, 0.6), gradient=(0.05, 0.25), vignette=(0.05, 0.18)),
        "hard": dict(exposure=(0.42, 1.35), lamp=(0.2, 1.0), gradient=(0.15, 0.42), vignette=(0.1, 0.3)),
    },
    "shadow": {  # a soft shadow's depth; a hard shadow's (hand, phone, stand arm) depth over the boxes
        "clean": dict(soft=(0.0, 0.0), hard=(0.0, 0.0), p_soft=(0.0, 0.0), p_hard=(0.0, 0.0)),
        "normal": dict(soft=(0.05, 0.3), hard=(0.15, 0.35), p_soft=(0.6, 0.6), p_hard=(0.3, 0.3)),
        "hard": dict(soft=(0.2, 0.45), hard=(0.25, 0.55), p_soft=(0.6, 0.6), p_hard=(0.6, 0.6)),
    },
    "sheen": {  # a weak specular sheen of the lamp, fraction of the headroom above the paper it lifts
        "clean": dict(sheen=(0.0, 0.0), p_sheen=(0.0, 0.0)),
        "normal": dict(sheen=(0.05, 0.2), p_sheen=(0.3, 0.3)),
        "hard": dict(sheen=(0.1, 0.35), p_sheen=(0.4, 0.4)),
    },
    "blur": {  # defocus sigma and motion length, 12 MP frame pixels (scaled with the sensor)
        "clean": dict(blur=(0.3, 0.7), motion=(0.0, 0.0), p_motion=(0.0, 0.0)),
        "normal": dict(blur=(0.5, 1.4), motion=(1.5, 2.5), p_motion=(0.3, 0.3)),
        "hard": dict(blur=(0.9, 2.2), motion=(2.0, 4.5), p_motion=(0.5, 0.5)),
    },
    "jpeg": {  # JPEG quality; sensor noise (uint8 levels at full exposure)
        "clean": dict(quality=(90, 95), noise=(1.0, 2.0)),
        "normal": dict(quality=(72, 95), noise=(1.5, 4.0)),
        "hard": dict(quality=(60, 95), noise=(3.0, 6.0)),
    },
}
# How the sheet lies under the stand, in quarter turns clockwise of the page in the frame. In a landscape
# frame the sheet's long side along the frame's long side (1, or 3 upside down) is usual; portrait frames
# take the page upright (0, or 2).
_TURNS_LANDSCAPE = {1: 0.55, 3: 0.25, 0: 0.1, 2: 0.1}
_TURNS_PORTRAIT = {0: 0.6, 2: 0.25, 1: 0.08, 3: 0.07}
_PAPERS = {"white": (1.0, 1.0, 1.0), "cream": (0.8, 0.93, 0.98), "grey": (1.0, 1.0, 1.0),
           "recycled": (0.86, 0.92, 0.94)}
_LAMPS = {"warm": (0.62, 0.84, 1.0), "cool": (1.0, 0.95, 0.84)}  # BGR gains at full colour cast


@dataclass(frozen=True)
class Shot:
    """Every parameter of one photo (drawn by `sample_shot`, adjusted by bad-capture scenarios)."""

    size: tuple[int, int] = FRAME_SIZE
    quarter_turns: int = 1
    angle_deg: float = 0.0  # small in-plane rotation on top of the quarter turns
    fill: float = 0.85  # fraction of the frame (limiting dimension) the sheet spans
    centre: tuple[float, float] = (0.0, 0.0)  # offset of the sheet centre, fraction of the free margin
    #: When set, the sheet is pushed towards frame side `snug_side` (0 left, 1 right, 2 top, 3 bottom) until
    #: the nearest marker is this many mm from the frame's edge (negative: beyond it).
    snug_mm: float | None = None
    snug_side: int = 0
    tilt_deg: float = 0.0  # angle between the sheet and the sensor
    tilt_dir_deg: float = 0.0  # direction (in the frame) of the axis the sheet is tilted about
    fov_deg: float = 60.0  # diagonal field of view of the lens
    curl_mm: float = 0.0  # height of a curled edge
    curl_edge: int = 0  # page edge that curls: 0 left, 1 right, 2 top, 3 bottom
    curl_width_mm: float = 60.0  # how far into the sheet the curl reaches
    fold_mm: float = 0.0  # height of a fold's ridge
    fold_angle_deg: float = 0.0  # direction of the crease on the page
    fold_offset: float = 0.0  # crease position, -1..1 of the page's half-size across it
    fold_width_mm: float = 70.0  # half-width of the tent the fold makes
    exposure: float = 0.9  # paper white ends up near exposure * 255 (above 1: clipped)
    gradient: float = 0.1  # brightness falls by this fraction across the frame
    vignette: float = 0.1
    shadow: float = 0.0  # depth of a soft shadow across part of the frame
    hard_shadow: str = "none"  # "hand", "phone" or "arm" casting a hard-edged shadow over the boxes
    hard_shadow_depth: float = 0.0
    hard_shadow_at: tuple[float, float] = (0.5, 0.5)  # page point (fraction of w, h) the shadow covers
    sheen: float = 0.0  # weak specular lift (fraction of the headroom above the lit paper)
    sheen_at: tuple[float, float] = (0.5, 0.5)  # page point (fraction of w, h) at the sheen's centre
    blur_sigma: float = 0.8  # defocus, frame pixels
    motion_px: float = 0.0  # motion blur length, frame pixels
    noise_sigma: float = 2.0  # sensor noise, uint8 levels
    wb: tuple[float, float, float] = (1.0, 1.0, 1.0)  # BGR gains: lamp colour and white balance
    quality: int = 88
    paper: tuple[float, float, float] = (0.93, 0.95, 0.96)  # BGR paper colour
    specks: float = 0.0  # recycled paper: fibres and specks, density 0..1
    black: float = 0.07  # printed black reflects a little
    desk: int = 0  # desk texture seed
    show_sheet: bool = True
    #: Seed of the geometry's small random parts (shadow shapes, sheen shape, recycled specks).
    detail: int = 0


@dataclass(frozen=True)
class Projection:
    """Page pixels -> frame pixels through the camera, the sheet's curl and fold included."""

    page_wh: tuple[int, int]  # page size in page pixels
    page_ppm: float  # page pixels per mm
    R: np.ndarray  # sheet -> camera rotation
    t: np.ndarray  # sheet centre in camera coordinates (mm)
    f: float  # focal length, frame pixels
    c: tuple[float, float]  # principal point plus the placement shift (frame pixels)
    shot: Shot = field(repr=False)

    def height_mm(self, u_mm: np.ndarray, v_mm: np.ndarray) -> np.ndarray:
        """Height of the sheet above the desk at page points (mm)."""
        s = self.shot
        w, h = self.page_wh[0] / self.page_ppm, self.page_wh[1] / self.page_ppm
        z = np.zeros(np.broadcast(u_mm, v_mm).shape, np.float64)
        if s.curl_mm > 0:
            dist = (u_mm, w - u_mm, v_mm, h - v_mm)[s.curl_edge]
            z = z + s.curl_mm * np.clip(1.0 - dist / s.curl_width_mm, 0.0, 1.0) ** 2
        if s.fold_mm > 0:
            a = math.radians(s.fold_angle_deg)
            n = (-math.sin(a), math.cos(a))  # normal to the crease
            half = abs(n[0]) * w / 2 + abs(n[1]) * h / 2
            d = (u_mm - w / 2) * n[0] + (v_mm - h / 2) * n[1] - s.fold_offset * half * 0.6
            z = z + s.fold_mm * np.clip(1.0 - np.abs(d) / s.fold_width_mm, 0.0, 1.0)
        return z

    def _camera(self, pts_px: np.ndarray, z: np.ndarray | None) -> np.ndarray:
        p = np.asarray(pts_px, np.float64).reshape(-1, 2)
        u, v = p[:, 0] / self.page_ppm, p[:, 1] / self.page_ppm
        w, h = self.page_wh[0] / self.page_ppm, self.page_wh[1] / self.page_ppm
        if z is None:
            z = self.height_mm(u, v)
        local = np.stack([u - w / 2, v - h / 2, -z], axis=1)  # z towards the camera is negative depth
        return local @ self.R.T + self.t

    def to_frame(self, pts_px: np.ndarray, flat: bool = False) -> np.ndarray:
        """Frame pixels of page pixels (N, 2); `flat` ignores curl and fold (the plane's homography)."""
        cam = self._camera(pts_px, np.zeros(len(np.asarray(pts_px).reshape(-1, 2))) if flat else None)
        return np.stack([self.f * cam[:, 0] / cam[:, 2] + self.c[0], self.f * cam[:, 1] / cam[:, 2] + self.c[1]],
                        axis=1)

    @property
    def homography(self) -> np.ndarray:
        """Page pixels -> frame pixels of the flat sheet (exact when there is no curl or fold)."""
        pw, ph = self.page_wh
        src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64)
        return cv2.getPerspectiveTransform(src.astype(np.float32), self.to_frame(src, flat=True).astype(np.float32)
                                           ).astype(np.float64)

    @property
    def bent(self) -> bool:
        return self.shot.curl_mm > 0 or self.shot.fold_mm > 0

    def px_per_mm_at(self, u_mm: float, v_mm: float) -> float:
        """Frame pixels per page mm around a page point."""
        p = self.to_frame(np.array([[u_mm, v_mm], [u_mm + 1, v_mm], [u_mm, v_mm + 1]]) * self.page_ppm)
        return float((np.linalg.norm(p[1] - p[0]) + np.linalg.norm(p[2] - p[0])) / 2)

    def to_page(self, frame_pts: np.ndarray, iterations: int = 4) -> np.ndarray:
        """Page pixels seen at frame pixels (inverse of `to_frame`, by fixed-point iteration over the curl)."""
        hinv = np.linalg.inv(self.homography)
        x = np.asarray(frame_pts, np.float64).reshape(-1, 2)

        def flat_inverse(q: np.ndarray) -> np.ndarray:
            return cv2.perspectiveTransform(q.reshape(-1, 1, 2), hinv).reshape(-1, 2)

        p = flat_inverse(x)
        if not self.bent:
            return p
        target = p.copy()
        for _ in range(iterations):
            p = p + target - flat_inverse(self.to_frame(p))
        return p


@dataclass(frozen=True)
class Photo:
    jpeg: bytes
    homography: np.ndarray  # 3x3, page pixels -> frame pixels of the flat sheet
    shot: Shot
    projection: Projection | None = None

    def to_frame(self, pts_page_px: np.ndarray) -> np.ndarray:
        """Where page pixels are in the photo, curl and fold included."""
        if self.projection is None:
            return cv2.perspectiveTransform(np.asarray(pts_page_px, np.float64).reshape(-1, 1, 2),
                                            self.homography).reshape(-1, 2)
        return self.projection.to_frame(pts_page_px)


def _ranges(condition: str, severity: SeverityName) -> dict[str, tuple[float, float]]:
    return RANGES[condition][severity]


def sample_shot(rng: np.random.Generator, severity: SeverityName = "normal",
                size: tuple[int, int] | None = None, *, only: str | None = None) -> Shot:
    """Draw the parameters of one photo at a severity.

    `only`: draw that condition (one of CONDITIONS) at `severity` and every other one clean. `size` forces
    the frame size (otherwise the "sensor" condition draws it).
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {list(SEVERITIES)}, got {severity!r}")
    if only is not None and only not in CONDITIONS:
        raise ValueError(f"condition must be one of {list(CONDITIONS)}, got {only!r}")

    def level(cond: str) -> SeverityName:
        return severity if only is None or only == cond else "clean"

    def u(cond: str, key: str) -> float:
        lo, hi = _ranges(cond, level(cond))[key]
        return float(rng.uniform(lo, hi))

    def chance(cond: str, key: str) -> bool:
        return bool(rng.random() < _ranges(cond, level(cond))[key][0])

    # sensor
    portrait, small_sensor = chance("sensor", "p_portrait"), chance("sensor", "p_8mp")
    if size is None:
        w, h = SENSORS["8mp" if small_sensor else "12mp"]
        size = (h, w) if portrait else (w, h)
    turns_p = _TURNS_PORTRAIT if size[1] > size[0] else _TURNS_LANDSCAPE
    quarter = int(list(turns_p)[rng.choice(len(turns_p), p=list(turns_p.values()))])
    # framing
    fill = u("framing", "fill")
    angle = u("framing", "angle")
    centre = (float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)))
    snug = float(rng.uniform(0.0, 1.0)) if chance("framing", "p_snug") else None
    snug_side = int(rng.integers(4))
    # tilt
    tilt, fov = u("tilt", "tilt"), u("tilt", "fov")
    # curl
    curl = u("curl", "curl") if chance("curl", "p_curl") else 0.0
    fold = u("curl", "fold") if chance("curl", "p_fold") else 0.0
    # paper
    kind = "white"
    for k in ("cream", "grey", "recycled"):
        if chance("paper", f"p_{k}"):
            kind = k
            break
    refl = u("paper", "grey") if kind == "grey" else u("paper", "white")
    tint = rng.uniform(-0.012, 0.012, 3)
    paper = tuple(float(np.clip(refl * c + t, 0.3, 1.0)) for c, t in zip(_PAPERS[kind], tint, strict=True))
    specks = u("paper", "specks") if kind == "recycled" else 0.0
    # light
    exposure = u("light", "exposure")
    lamp = u("light", "lamp")
    cast = _LAMPS["warm" if rng.random() < 0.5 else "cool"]
    wb_jitter = 0.02 + 0.04 * lamp
    wb = tuple(float((1.0 - lamp + lamp * g) * (1.0 + rng.uniform(-wb_jitter, wb_jitter))) for g in cast)
    wb = tuple(v / max(wb) for v in wb)  # the camera's white balance keeps the brightest channel at 1
    gradient, vignette = u("light", "gradient"), u("light", "vignette")
    # shadow
    soft = u("shadow", "soft") if chance("shadow", "p_soft") else 0.0
    hard_kind = str(rng.choice(["hand", "phone", "arm"])) if chance("shadow", "p_hard") else "none"
    hard_depth = u("shadow", "hard") if hard_kind != "none" else 0.0
    # The darkest paper a person still reads easily is about 60 of 255: no combination goes below it.
    lowest = exposure * min(paper) * (1 - gradient) * (1 - 0.5 * vignette) * (1 - soft) * (1 - hard_depth)
    if lowest * 255 < 60:
        exposure *= 60 / (lowest * 255)
    # sheen
    sheen = u("sheen", "sheen") if chance("sheen", "p_sheen") else 0.0
    # blur (in 12 MP pixels, scaled to the frame)
    k = max(size) / FRAME_SIZE[0]
    blur = u("blur", "blur") * k
    motion = u("blur", "motion") * k if chance("blur", "p_motion") else 0.0
    # jpeg and noise: underexposure amplifies noise
    noise = u("jpeg", "noise") * (1.0 + max(0.0, 0.8 - exposure))
    quality = round(u("jpeg", "quality"))
    return Shot(
        size=size, quarter_turns=quarter, angle_deg=angle, fill=fill, centre=centre, snug_mm=snug,
        snug_side=snug_side, tilt_deg=tilt, tilt_dir_deg=float(rng.uniform(0, 360)), fov_deg=fov,
        curl_mm=curl, curl_edge=int(rng.integers(4)), curl_width_mm=float(rng.uniform(40, 90)),
        fold_mm=fold, fold_angle_deg=float(rng.uniform(0, 180)), fold_offset=float(rng.uniform(-1, 1)),
        fold_width_mm=float(rng.uniform(40, 110)),
        exposure=exposure, gradient=gradient, vignette=vignette, shadow=soft, hard_shadow=hard_kind,
        hard_shadow_depth=hard_depth, hard_shadow_at=(float(rng.uniform(0.3, 0.95)), float(rng.uniform(0.25, 0.8))),
        sheen=sheen, sheen_at=(float(rng.uniform(0.3, 0.95)), float(rng.uniform(0.25, 0.8))),
        blur_sigma=blur, motion_px=motion, noise_sigma=noise, wb=wb, quality=quality,  # type: ignore[arg-type]
        paper=paper, specks=specks, black=float(rng.uniform(0.04, 0.1)),  # type: ignore[arg-type]
        desk=int(rng.integers(1 << 30)), detail=int(rng.integers(1 << 30)),
    )


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    a = axis / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def projection(page_wh: tuple[int, int], page_ppm: float, shot: Shot, markers_mm: np.ndarray | None = None
               ) -> Projection:
    """Where the sheet lands: pose (quarter turns, angle, tilt), distance for the fill, placement.

    `markers_mm`: (N, 2) page points (the markers' corners) that `snug_mm` places against the frame's edge.
    """
    pw, ph = page_wh
    fw, fh = shot.size
    f = math.hypot(fw, fh) / 2 / math.tan(math.radians(shot.fov_deg) / 2)
    rot = math.radians(90 * shot.quarter_turns + shot.angle_deg)
    inplane = np.array([[math.cos(rot), -math.sin(rot), 0], [math.sin(rot), math.cos(rot), 0], [0, 0, 1]])
    d = math.radians(shot.tilt_dir_deg)
    R = _rotation(np.array([math.cos(d), math.sin(d), 0.0]), math.radians(shot.tilt_deg)) @ inplane
    w_mm, h_mm = pw / page_ppm, ph / page_ppm
    corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float64)
    # Distance for the fill: the extent scales with 1 / distance; two corrections converge.
    dist = f * max(w_mm, h_mm) / (shot.fill * max(fw, fh))
    proj = Projection(page_wh, page_ppm, R, np.array([0.0, 0.0, dist]), f, (fw / 2, fh / 2), shot)
    for _ in range(3):
        pts = proj.to_frame(corners, flat=True)
        ext = max((pts[:, 0].max() - pts[:, 0].min()) / fw, (pts[:, 1].max() - pts[:, 1].min()) / fh)
        dist *= ext / shot.fill
        proj = replace(proj, t=np.array([0.0, 0.0, dist]))
    pts = proj.to_frame(corners)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    free = np.maximum(0.0, np.array([fw, fh]) - (hi - lo)) / 2
    shift = np.array([fw, fh]) / 2 - (lo + hi) / 2 + np.asarray(shot.centre) * free * 0.95
    if shot.snug_mm is not None and markers_mm is not None:
        m = proj.to_frame(np.asarray(markers_mm) * page_ppm) + shift
        ppm = proj.px_per_mm_at(w_mm / 2, h_mm / 2)
        gap = shot.snug_mm * ppm
        axis, to_max = (0 if shot.snug_side < 2 else 1), shot.snug_side % 2
        size = (fw, fh)[axis]
        if to_max:
            shift[axis] += size - 1 - gap - m[:, axis].max()
        else:
            shift[axis] += gap - m[:, axis].min()
    return replace(proj, c=(fw / 2 + shift[0], fh / 2 + shift[1]))


def fill_for_px_per_mm(shot: Shot, page_wh: tuple[int, int], page_px_per_mm: float, target: float) -> float:
    """The `fill` that puts about `target` frame pixels on each mm of the sheet."""
    proj = projection(page_wh, page_px_per_mm, shot)
    w_mm, h_mm = page_wh[0] / page_px_per_mm, page_wh[1] / page_px_per_mm
    return shot.fill * target / proj.px_per_mm_at(w_mm / 2, h_mm / 2)


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


def _hard_shadow_polys(proj: Projection, rng: np.random.Generator) -> list[np.ndarray]:
    """Polygons (frame pixels) of a hand, a phone or the stand's arm whose shadow covers a page point."""
    s = proj.shot
    pw, ph = proj.page_wh
    at = np.array([[s.hard_shadow_at[0] * pw, s.hard_shadow_at[1] * ph]])
    c = proj.to_frame(at)[0]
    k = proj.px_per_mm_at(s.hard_shadow_at[0] * pw / proj.page_ppm, s.hard_shadow_at[1] * ph / proj.page_ppm)
    ang = rng.uniform(0, 2 * math.pi)
    d, n = np.array([math.cos(ang), math.sin(ang)]), np.array([-math.sin(ang), math.cos(ang)])

    def poly(pts_mm: np.ndarray) -> np.ndarray:  # local (along d, along n) mm -> frame px
        return c + (pts_mm[:, :1] * d + pts_mm[:, 1:] * n) * k

    if s.hard_shadow == "arm":  # a bar across the whole frame through the point
        half = rng.uniform(12, 25)
        return [poly(np.array([[-2000, -half], [2000, -half], [2000, half], [-2000, half]]))]
    if s.hard_shadow == "phone":  # a phone held above: its rectangle, one part over the point
        w2, h2 = 36.0, 74.0
        off = rng.uniform(-0.7, 0.7, 2) * (w2, h2)
        rect = np.array([[-w2, -h2], [w2, -h2], [w2, h2], [-w2, h2]]) + off
        return [poly(rect)]
    # A hand reaching in: palm and fingers, the fingertips beyond the point.
    polys = []
    ang_pts = np.linspace(0, 2 * math.pi, 30, endpoint=False)
    palm = np.column_stack([-70 + 45 * np.cos(ang_pts), 38 * np.sin(ang_pts)])
    polys.append(poly(palm))
    for j, off in enumerate(np.linspace(-24, 24, 4)):
        length = 70 + rng.uniform(-10, 10) + (8 if j in (1, 2) else 0)
        r = 8.0
        tip = np.column_stack([-40 + length + r * np.cos(np.linspace(-math.pi / 2, math.pi / 2, 8)),
                               off + r * np.sin(np.linspace(-math.pi / 2, math.pi / 2, 8))])
        polys.append(poly(np.vstack([[[-40, off - r]], tip, [[-40, off + r]]])))
    polys.append(poly(np.array([[-110, -30], [-600, -45], [-600, 45], [-110, 30]])))  # the arm behind it
    return polys


def _gain_map(shot: Shot, rng: np.random.Generator, proj: Projection | None,
              extra: np.ndarray | None = None) -> np.ndarray:
    """Low-resolution BGR gain (float32): exposure x gradient x vignette x shadows x white balance."""
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
    if shot.hard_shadow != "none" and shot.hard_shadow_depth > 0 and proj is not None:
        detail = np.random.default_rng(shot.detail)
        mask = np.zeros((lh, lw), np.uint8)
        for p in _hard_shadow_polys(proj, detail):
            cv2.fillPoly(mask, [np.round(p / _LOWRES * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        # A penumbra of a few millimetres: the lamp is not a point.
        soft_px = detail.uniform(0.6, 1.6) * proj.px_per_mm_at(100, 150) / _LOWRES
        m = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), max(0.5, soft_px))
        gain *= 1.0 - shot.hard_shadow_depth * m
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


def add_specular(frame: np.ndarray, centre: np.ndarray, radii: tuple[float, float], angle: float,
                 strength: float) -> None:
    """Specular light of the lamp, in place: lifts every pixel towards white by `strength` x a smooth blob
    (1.0 at the centre; above 1 the core saturates: paper, print and ink all at 255)."""
    rx, ry = radii
    r = 2.6 * max(rx, ry)
    h, w = frame.shape[:2]
    x0, y0 = max(0, int(centre[0] - r)), max(0, int(centre[1] - r))
    x1, y1 = min(w, int(centre[0] + r)), min(h, int(centre[1] + r))
    if x1 <= x0 or y1 <= y0 or strength <= 0:
        return
    k = 4  # the blob is smooth: compute it at quarter resolution
    yy, xx = np.mgrid[y0:y1:k, x0:x1:k].astype(np.float32)
    dx, dy = xx - centre[0], yy - centre[1]
    u = (dx * math.cos(angle) + dy * math.sin(angle)) / rx
    v = (-dx * math.sin(angle) + dy * math.cos(angle)) / ry
    g = np.clip(strength * np.exp(-(u * u + v * v)), 0.0, 1.0).astype(np.float32)
    g = cv2.resize(g, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
    roi = frame[y0:y1, x0:x1]
    lift = cv2.multiply(cv2.subtract(np.full_like(roi, 255), roi), cv2.merge([g, g, g]), dtype=cv2.CV_8U)
    frame[y0:y1, x0:x1] = cv2.add(roi, lift)


def _surface(page: np.ndarray, shot: Shot, proj: Projection) -> np.ndarray:
    """The page as the paper shows it: colour, printed black's reflectance, recycled specks, shading of a
    curled or folded sheet (lit from above and a little to one side). uint8 BGR."""
    paper = np.asarray(shot.paper, np.float32)
    m = np.zeros((3, 4), np.float32)
    m[np.arange(3), np.arange(3)] = paper * (1.0 - shot.black)
    m[:, 3] = paper * shot.black
    lit = cv2.transform(page.astype(np.float32, copy=False), m)
    ph, pw = page.shape[:2]
    rng = np.random.default_rng(shot.detail)
    if shot.specks > 0:
        # Recycled stock: grey fibres and specks, 0.1-0.4 mm, scattered over the whole sheet.
        n = int(shot.specks * pw * ph / (proj.page_ppm**2) * 0.08)
        spots = np.ones((ph, pw), np.float32)
        xs, ys = rng.uniform(0, pw, n), rng.uniform(0, ph, n)
        for x, y in zip(xs, ys, strict=True):
            r = max(1, round(rng.uniform(0.05, 0.2) * proj.page_ppm))
            cv2.circle(spots, (int(x), int(y)), r, float(rng.uniform(0.75, 0.93)), -1, cv2.LINE_AA)
        for _ in range(n // 4):
            x, y, a = rng.uniform(0, pw), rng.uniform(0, ph), rng.uniform(0, math.pi)
            ln = rng.uniform(0.5, 2.0) * proj.page_ppm
            p0 = (int(x), int(y))
            p1 = (int(x + ln * math.cos(a)), int(y + ln * math.sin(a)))
            cv2.line(spots, p0, p1, float(rng.uniform(0.82, 0.95)), 1, cv2.LINE_AA)
        lit *= spots[..., None]
    if proj.bent:
        # Lambert shading from the surface's slope, on a coarse grid (the surface is smooth).
        step = 2.0  # mm
        gw, gh = int(pw / proj.page_ppm / step) + 2, int(ph / proj.page_ppm / step) + 2
        uu, vv = np.meshgrid(np.arange(gw) * step, np.arange(gh) * step)
        z = proj.height_mm(uu, vv)
        gz_y, gz_x = np.gradient(z, step)
        light = np.array([rng.uniform(-0.35, 0.35), rng.uniform(-0.35, 0.35), 1.0])
        light /= np.linalg.norm(light)
        normal = np.stack([-gz_x, -gz_y, np.ones_like(z)], axis=-1)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
        shade = (normal @ light) / light[2]
        cell = round(step * proj.page_ppm)
        shade = cv2.resize(shade.astype(np.float32), (gw * cell, gh * cell), interpolation=cv2.INTER_LINEAR)[:ph, :pw]
        lit *= np.clip(shade, 0.5, 1.2)[..., None]
    return cv2.convertScaleAbs(lit, alpha=255.0)


def _place_sheet(frame: np.ndarray, surface: np.ndarray, proj: Projection) -> None:
    """Warp the sheet into the frame, in place (the desk stays where the sheet is not)."""
    fh, fw = frame.shape[:2]
    if not proj.bent:
        cv2.warpPerspective(surface, proj.homography, (fw, fh), dst=frame, flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_TRANSPARENT)
        return
    # A curled sheet is not a homography: inverse map on a coarse grid over the sheet's bounding box,
    # refined to full resolution one band of rows at a time (bounded memory).
    pw, ph = proj.page_wh
    outline = np.array([[x, 0] for x in np.linspace(0, pw, 20)] + [[pw, y] for y in np.linspace(0, ph, 20)]
                       + [[x, ph] for x in np.linspace(0, pw, 20)] + [[0, y] for y in np.linspace(0, ph, 20)])
    pts = proj.to_frame(outline)
    x0, y0 = max(0, int(pts[:, 0].min()) - 2), max(0, int(pts[:, 1].min()) - 2)
    x1, y1 = min(fw, int(pts[:, 0].max()) + 3), min(fh, int(pts[:, 1].max()) + 3)
    if x1 <= x0 or y1 <= y0:
        return
    step = 8
    gx = np.arange(x0, x1 + step, step, dtype=np.float64)
    gy = np.arange(y0, y1 + step, step, dtype=np.float64)
    mx, my = np.meshgrid(gx, gy)
    page_pts = proj.to_page(np.stack([mx.ravel(), my.ravel()], axis=1)).reshape(len(gy), len(gx), 2)
    coarse = page_pts.astype(np.float32)
    # Bilinear between the coarse nodes, exactly aligned on them (so that bands join without a seam).
    fx = (np.arange(x0, x1) - x0) / step
    j0 = np.minimum(fx.astype(int), len(gx) - 2)
    sx = (fx - j0).astype(np.float32)[None, :, None]
    band = 256
    for by in range(y0, y1, band):
        fy = (np.arange(by, min(y1, by + band)) - y0) / step
        i0 = np.minimum(fy.astype(int), len(gy) - 2)
        ty = (fy - i0).astype(np.float32)[:, None, None]
        rows = coarse[i0] * (1 - ty) + coarse[i0 + 1] * ty  # (bh, len(gx), 2)
        maps = rows[:, j0] * (1 - sx) + rows[:, j0 + 1] * sx
        cv2.remap(surface, np.ascontiguousarray(maps[..., 0]), np.ascontiguousarray(maps[..., 1]), cv2.INTER_LINEAR,
                  dst=frame[by : by + len(fy), x0:x1], borderMode=cv2.BORDER_TRANSPARENT)


Hook = Callable[[np.ndarray, Projection, np.random.Generator], None]


def shoot(page: np.ndarray | None, shot: Shot, rng: np.random.Generator, *,
          before_light: Hook | None = None, after_light: Hook | None = None,
          gain_extra: np.ndarray | None = None, page_px_per_mm: float = 8.0,
          markers_mm: np.ndarray | None = None) -> Photo:
    """Photograph `page` (float32 BGR in [0, 1], `page_px_per_mm`; None = no sheet) as `shot` says.

    Hooks get (frame uint8 BGR, projection, rng) and draw in place: `before_light` for objects lit like the
    sheet (a hand), `after_light` for light itself (glare). `gain_extra` multiplies the low-resolution
    lighting map (shape (h/8, w/8)). `markers_mm`: page points `shot.snug_mm` places against the frame edge.
    """
    fw, fh = shot.size
    frame = desk_background(shot.size, shot.desk)
    if page is not None:
        ph, pw = page.shape[:2]
    else:  # no sheet: a nominal A4 page still defines where hooks and shadows would fall
        pw, ph = round(210 * page_px_per_mm), round(297 * page_px_per_mm)
    proj = projection((pw, ph), page_px_per_mm, shot, markers_mm)
    if page is not None and shot.show_sheet:
        _place_sheet(frame, _surface(page, shot, proj), proj)
    if before_light is not None:
        before_light(frame, proj, rng)
    if shot.blur_sigma > 0.25:
        frame = cv2.GaussianBlur(frame, (0, 0), shot.blur_sigma)
    if shot.motion_px >= 1.5:
        frame = cv2.filter2D(frame, -1, _motion_kernel(shot.motion_px, rng.uniform(0, math.pi)))
    gain = _gain_map(shot, rng, proj if page is not None else None, gain_extra)
    gain_u8 = np.clip(gain * _GAIN_ONE, 0, 255).astype(np.uint8)
    frame = cv2.multiply(frame, cv2.resize(gain_u8, (fw, fh), interpolation=cv2.INTER_LINEAR),
                         scale=1.0 / _GAIN_ONE)
    if shot.sheen > 0 and page is not None:
        detail = np.random.default_rng(shot.detail + 1)
        c = proj.to_frame(np.array([[shot.sheen_at[0] * pw, shot.sheen_at[1] * ph]]))[0]
        k = proj.px_per_mm_at(shot.sheen_at[0] * pw / page_px_per_mm, shot.sheen_at[1] * ph / page_px_per_mm)
        add_specular(frame, c, (detail.uniform(30, 60) * k, detail.uniform(20, 40) * k),
                     detail.uniform(0, math.pi), shot.sheen)
    if after_light is not None:
        after_light(frame, proj, rng)
    frame = _add_noise(frame, shot.noise_sigma, rng)
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(shot.quality)])
    if not ok:  # pragma: no cover - OpenCV always encodes a uint8 BGR frame
        raise RuntimeError("JPEG encoding failed")
    return Photo(jpeg=buf.tobytes(), homography=proj.homography, shot=shot, projection=proj)


def photograph_with_truth(page: np.ndarray, rng: np.random.Generator, severity: SeverityName = "normal",
                          size: tuple[int, int] | None = None, *, only: str | None = None,
                          markers_mm: np.ndarray | None = None, **overrides: object) -> Photo:
    """Like `photograph`, also returning the projection and the drawn parameters (`overrides` replace them)."""
    shot = sample_shot(rng, severity, size, only=only)
    if overrides:
        shot = replace(shot, **overrides)  # type: ignore[arg-type]
    return shoot(page, shot, rng, markers_mm=markers_mm)


def photograph(page: np.ndarray, rng: np.random.Generator, severity: SeverityName = "normal",
               size: tuple[int, int] | None = None) -> bytes:
    """A JPEG of `page` on a desk under the kit's camera, at severity clean, normal or hard."""
    return photograph_with_truth(page, rng, severity, size).jpeg
