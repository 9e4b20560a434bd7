"""Capture-quality measurements for the gate that runs before any digit is read.

Each is a number with a threshold, calibrated on generated captures (clean/normal/hard photos must pass,
the bad captures of `tpskit.sheets.bad_captures` must fail); `bench/read.py` reports both sides.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Brightest 5 % of the frame below this (of 255) means the lamp is off or the lens is covered.
DARK_FRAME_P95 = 70.0
#: Paper (median of the sheet) below this means the sheet is too dark to read.
DARK_PAPER = 75.0
#: Edge sharpness of the corner markers (see `edge_sharpness`) below this is out of focus.
MIN_SHARPNESS = 0.30
#: Full-resolution pixels per mm below this leave too few pixels per digit stroke.
MIN_FULLRES_PX_PER_MM = 6.0
#: A frame whose 5th-95th percentile spread is below this is one uniform surface: no sheet in view.
MIN_FRAME_CONTRAST = 40.0
#: Sharpness of the whole (downscaled) frame below this, with a sheet in view but no marker: out of focus.
MIN_FRAME_SHARPNESS = 0.2
#: Sampling density for the focus and glare measurements.
GATE_PX_PER_MM = 3.0
#: A pixel brighter than the paper by this much, and near saturation, is specular glare.
GLARE_ABOVE_PAPER = 18.0
GLARE_MIN_LEVEL = 245.0
#: Fraction of one digit box covered by glare that makes it unreadable.
GLARE_BOX_FRACTION = 0.12


def small_copy(gray: np.ndarray, long_side: int = 512) -> np.ndarray:
    """A copy about `long_side` wide, by a whole factor (INTER_AREA's fast path)."""
    h, w = gray.shape
    k = max(1, round(max(h, w) / long_side))
    return cv2.resize(gray, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)


def frame_too_dark(small: np.ndarray) -> bool:
    return float(np.percentile(small, 95)) < DARK_FRAME_P95


def frame_very_dark(small: np.ndarray) -> bool:
    """So dark that paper cannot be told from desk (the lamp is off, the lens is covered)."""
    return float(np.percentile(small, 95)) < DARK_FRAME_P95 / 2


def edge_sharpness(patch: np.ndarray) -> float:
    """Steepest edges relative to the contrast, on a patch rectified at GATE_PX_PER_MM.

    About 0.5 for a crisp black/white edge, falling towards 0 as defocus or motion widens the edge;
    independent of exposure because it is divided by the patch's own contrast.
    """
    p = patch.astype(np.float32)
    lo, hi = np.percentile(p, [5, 95])
    contrast = float(hi - lo)
    if contrast < 20.0:
        return 0.0
    gx = cv2.Sobel(p, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(p, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    mag = cv2.magnitude(gx, gy)
    return float(np.percentile(mag, 98)) / contrast


#: A bright region at least this fraction of the frame, clearly brighter than the rest, looks like a page.
MIN_PAGE_FRACTION = 0.06
MIN_PAGE_CONTRAST = 12.0


def page_in_view(small: np.ndarray) -> bool:
    """Whether a large region clearly brighter than its surroundings (a sheet of paper) is in view.

    Relative to the frame's own levels, so an underexposed sheet still counts (it is then "too dark",
    not "no sheet"), while an empty desk, dark or light, does not.
    """
    blurred = cv2.GaussianBlur(small, (0, 0), 2.0)
    _, mask = cv2.threshold(blurred, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    if n < 2:
        return False
    big = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h, area = (int(v) for v in stats[big])
    if area < MIN_PAGE_FRACTION * small.size:
        return False
    # A sheet lies inside the frame; a bright desk around dark objects reaches every edge.
    H, W = small.shape
    if (x <= 1) + (y <= 1) + (x + w >= W - 1) + (y + h >= H - 1) >= 3:
        return False
    inside = float(np.median(blurred[labels == big]))
    outside = float(np.median(blurred[labels != big]))
    return inside - outside >= MIN_PAGE_CONTRAST or inside >= 1.4 * max(outside, 1.0)


def frame_contrast(small: np.ndarray) -> float:
    lo, hi = np.percentile(small, [5, 95])
    return float(hi - lo)


def frame_sharpness(small: np.ndarray) -> float:
    """The same measure over the whole (downscaled) frame: used when no marker was found."""
    return edge_sharpness(small)


def glare_mask(page: np.ndarray) -> np.ndarray:
    """Specular highlights on a page rectified at GATE_PX_PER_MM: near-saturated and above the paper."""
    paper = float(np.median(page[::3, ::3]))
    return (page >= max(GLARE_MIN_LEVEL, paper + GLARE_ABOVE_PAPER)).astype(np.uint8)
