"""The sheet's QR code read from its module grid, for photos where a general QR detector gives up first.

OpenCV's detector binarises the photo and looks for the finder patterns' 1:1:3:1:1 runs; a little defocus
or motion blur on a sheet at 5-7 px/mm merges the 0.79 mm modules and it fails while the digits, 6-9 mm
tall, are still easy to read (bench/gate.py, "focus"). Here the reader already knows where the symbol is
(the template's square, through the sheet's homography) and how it is printed (tpskit/sheets/render.py:
the symbol fills the square with a quiet zone of `QUIET_INSIDE` modules inside it), so:

1. the square is rectified and turned into darkness against the local paper (light and shadow cancel);
2. each finder pattern is located by correlation with its ideal picture near where it should be, for each
   symbol size (21 to 41 modules), and the alignment pattern refines the fit (a homography from module
   coordinates to the rectified square);
3. every module is sampled at its centre; the blur is measured on the modules whose value is known (finder,
   separator, timing, alignment patterns and quiet zone): a 3 x 3 kernel and an offset, by least squares;
4. the unknown modules are chosen to explain the samples under that blur (coordinate descent, exact per
   pass since modules three apart share no sample), so a lone dark module that blur greyed out is still
   dark;
5. the modules are drawn as a clean symbol and decoded by OpenCV, whose Reed-Solomon error correction
   decides: a payload comes out only when its code words are consistent. A wrong or guessed module
   grid does not decode, so a misread TPS is as unlikely as with any QR reader.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .geometry import PageGeometry, warp_region

#: Modules of quiet zone printed inside the template's QR square (tpskit/sheets/render.QR_QUIET_INSIDE).
QUIET_INSIDE = 2
#: Symbol sizes tried (modules per side): versions 1 to 6.
SIZES = (21, 25, 29, 33, 37, 41)
#: Rectification density (px per module) and how far around the square is searched (mm).
PX_PER_MODULE = 6.0
SLACK_MM = 2.5
#: How far (modules) from where the print contract puts it a finder pattern is searched (the region's
#: slack, SLACK_MM, leaves room for it).
FINDER_REACH_MODULES = 3.0
#: A finder pattern is accepted when its correlation with the ideal picture is at least this.
MIN_FINDER_SCORE = 0.5
#: Fraction of the known modules (function patterns) a symbol size must explain to be tried.
MIN_FUNCTION_MATCH = 0.85


@dataclass(frozen=True)
class GridRead:
    text: str | None
    #: Symbol size (modules) whose function patterns fitted best, and how well (fraction of known modules).
    size: int = 0
    function_match: float = 0.0


def _alignment_centres(n: int) -> list[tuple[int, int]]:
    """Alignment pattern centres (row, col) of a symbol of n modules (versions up to 6: one pattern)."""
    version = (n - 17) // 4
    if version < 2:
        return []
    c = n - 7
    return [(c, c)]


@lru_cache(maxsize=16)
def _function_modules(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(known, dark) over the symbol plus a 1-module ring of quiet zone: which modules the standard fixes,
    and their colour. Format and version information are left unknown (they are data to us)."""
    m = n + 2
    known = np.zeros((m, m), bool)
    dark = np.zeros((m, m), bool)
    known[0, :] = known[-1, :] = known[:, 0] = known[:, -1] = True  # quiet zone ring: light
    finder = np.ones((7, 7), bool)
    finder[1:6, 1:6] = False
    finder[2:5, 2:5] = True
    for r, c in ((0, 0), (0, n - 7), (n - 7, 0)):
        known[1 + r - 1 : 1 + r + 8, 1 + c - 1 : 1 + c + 8] = True  # with its separator (light)
        dark[1 + r : 1 + r + 7, 1 + c : 1 + c + 7] = finder
    for k in range(8, n - 8):  # timing patterns
        known[1 + 6, 1 + k] = known[1 + k, 1 + 6] = True
        dark[1 + 6, 1 + k] = dark[1 + k, 1 + 6] = k % 2 == 0
    align = np.ones((5, 5), bool)
    align[1:4, 1:4] = False
    align[2, 2] = True
    for r, c in _alignment_centres(n):
        known[1 + r - 2 : 1 + r + 3, 1 + c - 2 : 1 + c + 3] = True
        dark[1 + r - 2 : 1 + r + 3, 1 + c - 2 : 1 + c + 3] = align
    known[1 + n - 8, 1 + 8] = dark[1 + n - 8, 1 + 8] = True  # the dark module
    return known, dark


@lru_cache(maxsize=8)
def _finder_picture(px: int) -> np.ndarray:
    """A finder pattern with its light separator, 9 x 9 modules at `px` pixels per module (1 = dark)."""
    cells = np.zeros((9, 9), np.float32)
    cells[1:8, 1:8] = 1
    cells[2:7, 2:7] = 0
    cells[3:6, 3:6] = 1
    return np.kron(cells, np.ones((px, px), np.float32))


def _darkness(region: np.ndarray, px_per_mm: float) -> np.ndarray:
    """1 - grey / local paper; the paper is the brightest level within ~6 mm (the quiet zone and light
    modules are never farther), smoothed."""
    k = max(3, round(6.0 * px_per_mm) | 1)
    paper = cv2.dilate(region, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    paper = cv2.blur(paper, (k, k)).astype(np.float32)
    dark = 1.0 - region.astype(np.float32) / np.maximum(paper, 1.0)
    return np.clip(dark, 0.0, 1.0)


def _peak(score: np.ndarray) -> tuple[float, float, float]:
    """(x, y, value) of the maximum, sub-pixel by a parabola through its neighbours."""
    _, v, _, (x, y) = cv2.minMaxLoc(score)
    fx, fy = float(x), float(y)
    h, w = score.shape
    if 0 < x < w - 1:
        a, b, c = score[y, x - 1], score[y, x], score[y, x + 1]
        d = a - 2 * b + c
        if d < 0:
            fx += float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))
    if 0 < y < h - 1:
        a, b, c = score[y - 1, x], score[y, x], score[y + 1, x]
        d = a - 2 * b + c
        if d < 0:
            fy += float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))
    return fx, fy, float(v)


def _locate(dark: np.ndarray, origin_px: float, square_px: float, n: int) -> np.ndarray | None:
    """Homography from module coordinates (col, row; module centres at k + 0.5) to `dark` pixels, from the
    three finder patterns found near where the print contract puts them (and the alignment pattern)."""
    step = square_px / (n + 2 * QUIET_INSIDE)
    px = max(3, round(step))
    tmpl = _finder_picture(px)
    reach = round(FINDER_REACH_MODULES * step)
    src, dst = [], []
    for r, c in ((0, 0), (0, n - 7), (n - 7, 0)):
        # Predicted top-left of the 9 x 9 picture (separator included) in `dark` pixels.
        x0 = origin_px + (QUIET_INSIDE + c - 1) * step
        y0 = origin_px + (QUIET_INSIDE + r - 1) * step
        scale = px / step
        u0, v0 = round(x0 - reach), round(y0 - reach)
        size = round(9 * step) + 2 * reach
        h, w = dark.shape
        if u0 < 0 or v0 < 0 or u0 + size > w or v0 + size > h:
            return None
        roi = dark[v0 : v0 + size, u0 : u0 + size]
        if abs(scale - 1.0) > 1e-3:
            roi = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        score = cv2.matchTemplate(roi, tmpl, cv2.TM_CCOEFF_NORMED)
        fx, fy, v = _peak(score)
        if v < MIN_FINDER_SCORE:
            return None
        # Centre of the finder in `dark` pixels; module centre (c + 3.5, r + 3.5).
        src.append((c + 3.5, r + 3.5))
        dst.append((u0 + (fx + 4.5 * px) / scale, v0 + (fy + 4.5 * px) / scale))
    src_a, dst_a = np.array(src, np.float64), np.array(dst, np.float64)
    A = cv2.getAffineTransform(src_a.astype(np.float32), dst_a.astype(np.float32)).astype(np.float64)
    H = np.vstack([A, [0.0, 0.0, 1.0]])
    for r, c in _alignment_centres(n):
        # The alignment pattern: a 5 x 5 ring around a dark centre, searched within 1.5 modules.
        pred = H @ np.array([c + 0.5, r + 0.5, 1.0])
        a = np.zeros((7, 7), np.float32)
        a[1:6, 1:6] = 1
        a[2:5, 2:5] = 0
        a[3, 3] = 1
        apx = np.kron(a, np.ones((px, px), np.float32))
        scale = px / step
        reach_a = round(1.5 * step)
        size = round(7 * step) + 2 * reach_a
        u0, v0 = round(pred[0] - 3.5 * step - reach_a), round(pred[1] - 3.5 * step - reach_a)
        h, w = dark.shape
        if u0 < 0 or v0 < 0 or u0 + size > w or v0 + size > h:
            continue
        roi = dark[v0 : v0 + size, u0 : u0 + size]
        if abs(scale - 1.0) > 1e-3:
            roi = cv2.resize(roi, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
        score = cv2.matchTemplate(roi, apx, cv2.TM_CCOEFF_NORMED)
        fx, fy, v = _peak(score)
        if v >= MIN_FINDER_SCORE:
            src_a = np.vstack([src_a, [c + 0.5, r + 0.5]])
            dst_a = np.vstack([dst_a, [u0 + (fx + 3.5 * px) / scale, v0 + (fy + 3.5 * px) / scale]])
            H = cv2.getPerspectiveTransform(src_a.astype(np.float32), dst_a.astype(np.float32)).astype(np.float64)
    return H


def _sample(dark: np.ndarray, H: np.ndarray, n: int) -> np.ndarray:
    """Darkness at every module centre of the symbol plus a 1-module quiet ring, (n + 2, n + 2), averaged
    over the central third of each module."""
    k = np.arange(-1, n + 1, dtype=np.float64) + 0.5
    cc, rr = np.meshgrid(k, k)
    pts = np.stack([cc.ravel(), rr.ravel(), np.ones(cc.size)])
    img = H @ pts
    xy = (img[:2] / img[2]).T.astype(np.float32).reshape(n + 2, n + 2, 2)
    step = float(np.sqrt(abs(np.linalg.det(H[:2, :2]))))
    smooth = cv2.blur(dark, (max(1, round(step / 3)),) * 2)
    return cv2.remap(smooth, xy[..., 0], xy[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _neighbours(x: np.ndarray) -> np.ndarray:
    """(centre, edge sum, corner sum) of every module's 3 x 3 neighbourhood, edge-padded with light."""
    p = np.pad(x, 1)
    edge = p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]
    corner = p[:-2, :-2] + p[:-2, 2:] + p[2:, :-2] + p[2:, 2:]
    return np.stack([np.ones_like(x), x, edge, corner], axis=-1)


def _modules(y: np.ndarray, known: np.ndarray, dark: np.ndarray) -> tuple[np.ndarray, float]:
    """The module grid (True = dark) that best explains the samples `y` under a 3 x 3 blur fitted on the
    known modules; and how well the known modules fit a clean threshold (the symbol size's score)."""
    x = np.where(known, dark, y > 0.5 * (np.median(y[known & dark]) + np.median(y[known & ~dark]))).astype(np.float64)
    # Fit y = a + w0 x + w1 (edge neighbours) + w2 (corner neighbours) on modules whose 3 x 3 is known.
    kp = np.pad(known, 1)
    full = np.ones_like(known)
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            full &= kp[1 + dr : 1 + dr + known.shape[0], 1 + dc : 1 + dc + known.shape[1]]
    feats = _neighbours(dark.astype(np.float64))
    coef, *_ = np.linalg.lstsq(feats[full], y[full], rcond=None)
    if coef[1] <= 0:
        return x.astype(bool), 0.0
    unknown = ~known
    m = x.shape[0]
    for _ in range(6):
        changed = 0
        for pr in range(3):
            for pc in range(3):
                sel = np.zeros_like(known)
                sel[pr::3, pc::3] = True
                sel &= unknown
                if not sel.any():
                    continue
                cost = []
                for v in (0.0, 1.0):
                    trial = x.copy()
                    trial[sel] = v
                    resid = (y - _neighbours(trial) @ coef) ** 2
                    # Each module's cost: the squared residuals of its 3 x 3 neighbourhood.
                    rp = np.pad(resid, 1)
                    c = sum(rp[1 + dr : 1 + dr + m, 1 + dc : 1 + dc + m] for dr in (-1, 0, 1) for dc in (-1, 0, 1))
                    cost.append(c)
                new = (cost[1] < cost[0]).astype(np.float64)
                changed += int(np.sum(new[sel] != x[sel]))
                x[sel] = new[sel]
        if changed == 0:
            break
    thresh = 0.5 * (np.median(y[known & dark]) + np.median(y[known & ~dark]))
    match = float(np.mean((y[known] > thresh) == dark[known]))
    return x.astype(bool), match


def _decode_modules(modules: np.ndarray) -> str | None:
    """Decode a clean module grid (True = dark, without quiet zone) with OpenCV's decoder."""
    px = 8
    img = np.where(np.kron(modules, np.ones((px, px), bool)), 0, 255).astype(np.uint8)
    img = cv2.copyMakeBorder(img, 4 * px, 4 * px, 4 * px, 4 * px, cv2.BORDER_CONSTANT, value=255)
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(img)
    return text or None


def read_qr_grid(gray: np.ndarray, geom: PageGeometry, x_mm: float, y_mm: float, size_mm: float) -> GridRead:
    """Read the QR printed in the template square (x, y, size in page mm) from its module grid."""
    ppm = PX_PER_MODULE * (41 + 2 * QUIET_INSIDE) / size_mm  # enough pixels per module for every size
    ppm = min(ppm, 12.0)
    region = warp_region(gray, geom, x_mm - SLACK_MM, y_mm - SLACK_MM, size_mm + 2 * SLACK_MM,
                         size_mm + 2 * SLACK_MM, ppm)
    dark = _darkness(region, ppm)
    best = GridRead(text=None)
    for n in SIZES:
        H = _locate(dark, SLACK_MM * ppm, size_mm * ppm, n)
        if H is None:
            continue
        y = _sample(dark, H, n)
        known, want = _function_modules(n)
        modules, match = _modules(y, known, want)
        if match > best.function_match:
            best = GridRead(text=None, size=n, function_match=match)
        if match < MIN_FUNCTION_MATCH:
            continue
        text = _decode_modules(modules[1:-1, 1:-1])
        if text is None:
            # The plain threshold, in case the blur model misfits (a shadow edge across the symbol).
            thresh = 0.5 * (np.median(y[known & want]) + np.median(y[known & ~want]))
            text = _decode_modules((y > thresh)[1:-1, 1:-1])
        if text is not None:
            return GridRead(text=text, size=n, function_match=match)
    return best
