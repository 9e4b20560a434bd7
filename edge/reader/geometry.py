"""Corner markers -> homography from the template page (mm) to the photo, and warps of page regions.

Markers are found on a downscaled copy (an ArUco search over a 12 MP frame is slow) and their corners
refined on the working image. Each marker's id says which page corner it is, and ArUco reports corners
in the marker's own order, so any rotation of the sheet, upside-down included, maps correctly.

A sheet that fills the frame can put a marker within a millimetre of the frame's edge, where its quiet
zone is cut off and ArUco (which needs white around the square) misses it: the search image gets a white
border, so such a marker keeps a quiet zone. A marker the search still misses (deep shadow, blur, strong
tilt) is looked for where the other markers put it, by its own bit pattern (`verify_marker`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from tpskit.forms import Markers

#: Markers are first searched on a copy downscaled by this whole factor (INTER_AREA's fast path).
DETECT_DOWNSCALE = 2
#: White border (search-image pixels) added around the frame before the marker search.
BORDER_PX = 12


#: Adaptive-threshold windows (smallest, largest, step; search-image px) of each marker search. `quick`, one
#: window, finds all four markers of nearly every sheet under the stand's lamp (of 580 markers on the field
#: captures and bench/read.py's photos, 576, their corners within 0.05 px of `normal`'s) in two thirds of the
#: time; `normal`, two windows, runs when it does not; `thorough` tries more, for uneven light and small
#: markers, only when a marker is still missing.
SEARCHES: dict[str, tuple[int, int, int]] = {"quick": (23, 23, 16), "normal": (7, 23, 16), "thorough": (5, 35, 10)}


@lru_cache(maxsize=8)
def _detector(dictionary: str, search: str) -> cv2.aruco.ArucoDetector:
    code = getattr(cv2.aruco, dictionary, None)
    if not isinstance(code, int):
        raise ValueError(f"unknown ArUco dictionary {dictionary!r}")
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_NONE  # refined below, on the larger image
    lo, hi, step = SEARCHES[search]
    params.adaptiveThreshWinSizeMin, params.adaptiveThreshWinSizeMax, params.adaptiveThreshWinSizeStep = lo, hi, step
    params.minDistanceToBorder = 1
    return cv2.aruco.ArucoDetector(cv2.aruco.getPredefinedDictionary(code), params)


def detect_markers(gray: np.ndarray, dictionary: str, downscale: int = DETECT_DOWNSCALE, search: str = "normal"
                   ) -> dict[int, np.ndarray]:
    """Marker id -> its four corners (4, 2) float32 in `gray` pixels, in the marker's own TL, TR, BR, BL.

    Searched on a copy downscaled by `downscale`, with the threshold windows of `search` (SEARCHES).
    """
    h, w = gray.shape
    f = 1.0 / downscale
    small = gray if downscale == 1 else cv2.resize(gray, (w // downscale, h // downscale),
                                                   interpolation=cv2.INTER_AREA)
    # A white border: a marker at the frame's edge keeps a quiet zone (paper-white, from the image itself).
    white = int(np.percentile(small[::4, ::4], 99))
    small = cv2.copyMakeBorder(small, BORDER_PX, BORDER_PX, BORDER_PX, BORDER_PX, cv2.BORDER_CONSTANT, value=white)
    corners, ids, _ = _detector(dictionary, search).detectMarkers(small)
    found: dict[int, np.ndarray] = {}
    if ids is None:
        return found
    win = max(2, round(1.5 / f))
    for c, i in zip(corners, ids.ravel(), strict=True):
        pts = ((c.reshape(4, 2) - BORDER_PX) / f).astype(np.float32)
        if (pts < -0.5).any() or (pts[:, 0] > w - 0.5).any() or (pts[:, 1] > h - 0.5).any():
            continue  # a square cut by the frame's edge, closed by the white border: not the marker's corners
        if f < 1:
            pts = subpix_corners(gray, pts, win)
        # Keep the largest detection per id (a marker printed elsewhere in view is smaller or absent).
        if int(i) not in found or cv2.contourArea(pts) > cv2.contourArea(found[int(i)]):
            found[int(i)] = pts
    return found


def subpix_corners(gray: np.ndarray, pts: np.ndarray, win: int) -> np.ndarray:
    """Corners (N, 2) refined to sub-pixel on `gray` (cv2.cornerSubPix, window `win`).

    A corner up to half a pixel outside the frame (a marker touching its edge) is first moved onto the
    frame's edge pixel: cornerSubPix refuses any corner outside the image, and the reader would refuse the
    photo as its own error."""
    h, w = gray.shape
    start = np.empty((len(pts), 1, 2), np.float32)
    start[:, 0, 0] = np.clip(pts[:, 0], 0, w - 1)
    start[:, 0, 1] = np.clip(pts[:, 1], 0, h - 1)
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.05)
    return cv2.cornerSubPix(gray, start, (win, win), (-1, -1), crit).reshape(-1, 2)


def marker_page_corners(markers: Markers, marker_id: int) -> np.ndarray:
    """The four corners (mm) of a marker's black square on the page, TL, TR, BR, BL."""
    item = next(m for m in markers.items if m.id == marker_id)
    s = markers.size_mm
    return np.array([[item.x_mm, item.y_mm], [item.x_mm + s, item.y_mm], [item.x_mm + s, item.y_mm + s],
                     [item.x_mm, item.y_mm + s]], np.float32)


@dataclass(frozen=True)
class PageGeometry:
    #: Homography mapping page millimetres to working-image pixels.
    H: np.ndarray
    #: Mean reprojection error of the marker corners, in mm.
    error_mm: float
    #: Working-image pixels per page millimetre at the page centre.
    px_per_mm: float

    def to_image(self, pts_mm: np.ndarray) -> np.ndarray:
        return cv2.perspectiveTransform(np.asarray(pts_mm, np.float64).reshape(-1, 1, 2), self.H).reshape(-1, 2)


def page_geometry(markers: Markers, found: dict[int, np.ndarray], page_w: float, page_h: float,
                  min_markers: int = 3) -> PageGeometry | None:
    """Homography from the markers found (at least `min_markers`); None when impossible."""
    ids = [m.id for m in markers.items if m.id in found]
    if len(ids) < min_markers:
        return None
    src = np.concatenate([marker_page_corners(markers, i) for i in ids])
    dst = np.concatenate([found[i] for i in ids])
    return geometry_from_points(src, dst, page_w, page_h)


def geometry_from_points(src_mm: np.ndarray, dst_px: np.ndarray, page_w: float, page_h: float
                         ) -> PageGeometry | None:
    """Least-squares homography from page points (mm) to image points; None when degenerate."""
    src = np.asarray(src_mm, np.float64).reshape(-1, 2)
    dst = np.asarray(dst_px, np.float64).reshape(-1, 2)
    if len(src) < 4:
        return None
    H, _ = cv2.findHomography(src, dst, 0)
    if H is None or not np.isfinite(H).all() or abs(np.linalg.det(H)) < 1e-12:
        return None
    Hinv = np.linalg.inv(H)
    back = cv2.perspectiveTransform(dst.reshape(-1, 1, 2).astype(np.float64), Hinv).reshape(-1, 2)
    err = float(np.mean(np.linalg.norm(back - src, axis=1)))
    c = np.array([[page_w / 2, page_h / 2], [page_w / 2 + 1, page_h / 2], [page_w / 2, page_h / 2 + 1]])
    p = cv2.perspectiveTransform(c.reshape(-1, 1, 2), H).reshape(-1, 2)
    (ux, uy), (vx, vy) = p[1] - p[0], p[2] - p[0]
    ppm = float(np.sqrt(abs(ux * vy - uy * vx)))
    return PageGeometry(H=H, error_mm=err, px_per_mm=ppm)


def warp_region(gray: np.ndarray, geom: PageGeometry, x_mm: float, y_mm: float, w_mm: float, h_mm: float,
                px_per_mm: float) -> np.ndarray:
    """The page rectangle (mm) rectified at `px_per_mm`, sampled from the photo (nothing else is warped)."""
    out_w, out_h = max(1, round(w_mm * px_per_mm)), max(1, round(h_mm * px_per_mm))
    # output pixel centre (u + .5) / ppm + x  -> page mm -> image
    s = 1.0 / px_per_mm
    A = np.array([[s, 0, x_mm + 0.5 * s], [0, s, y_mm + 0.5 * s], [0, 0, 1]], np.float64)
    M = geom.H @ A
    # image pixel centres are at integer coordinates in OpenCV's remap convention
    return cv2.warpPerspective(gray, M, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REPLICATE)


def marker_bits(dictionary: str, marker_id: int) -> np.ndarray:
    """The marker's cells, border included, as a bool array (True = black), e.g. 6 x 6 for DICT_4X4_*."""
    return _marker_bits(dictionary, marker_id).copy()


@lru_cache(maxsize=64)
def _marker_bits(dictionary: str, marker_id: int) -> np.ndarray:
    code = getattr(cv2.aruco, dictionary)
    d = cv2.aruco.getPredefinedDictionary(code)
    cells = d.markerSize + 2
    return d.generateImageMarker(marker_id, cells) < 128


#: A marker is confirmed at its predicted place when at least this fraction of its cells match.
VERIFY_MATCH = 0.85


def verify_marker(gray: np.ndarray, geom: PageGeometry, markers: Markers, marker_id: int) -> float:
    """Fraction of the marker's cells (border included) that read as printed at the place `geom` puts it.

    Each cell is sampled at its centre, on the square rectified from the photo and binarised by Otsu
    over the square and its quiet zone; 1.0 is a perfect match. A hand or an object over the marker
    reads as noise (about 0.5), a white or black patch as the border's share of one colour.
    """
    bits = _marker_bits(markers.dictionary, marker_id)
    cells = bits.shape[0]
    item = next(m for m in markers.items if m.id == marker_id)
    s, q = markers.size_mm, min(markers.quiet_zone_mm, 2.0)
    per_cell = 8
    ppm = per_cell * cells / s
    patch = warp_region(gray, geom, item.x_mm - q, item.y_mm - q, s + 2 * q, s + 2 * q, ppm)
    _, binary = cv2.threshold(cv2.GaussianBlur(patch, (3, 3), 0), 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    off = round(q * ppm)
    inner = binary[off:off + cells * per_cell, off:off + cells * per_cell]
    if inner.shape != (cells * per_cell, cells * per_cell):
        return 0.0
    # Mean of the central half of each cell: robust to a corner error of a quarter cell.
    a, b = per_cell // 4, per_cell - per_cell // 4
    means = inner.reshape(cells, per_cell, cells, per_cell)[:, a:b, :, a:b].mean(axis=(1, 3))
    return float(((means < 0.5) == bits).mean())
