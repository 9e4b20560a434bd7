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


#: Rings of the finder pattern and of the alignment pattern, in module units within their windows (the
#: finder's 9 x 9 window includes its light separator): (start, end, +1 dark / -1 light) squares whose sum
#: is the pattern.
_FINDER = (9, ((1, 8, 1), (2, 7, -1), (3, 6, 1)))
_ALIGN = (7, ((1, 6, 1), (2, 5, -1), (3, 4, 1)))


def _darkness(region: np.ndarray, px_per_mm: float) -> np.ndarray:
    """1 - grey / local paper; the paper is the brightest level within ~6 mm (the quiet zone and light
    modules are never farther), found on a copy four times smaller and smoothed (it varies slowly)."""
    h, w = region.shape
    small = cv2.resize(region, (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA)
    k = max(3, round(6.0 * px_per_mm / 4) | 1)
    paper = cv2.dilate(small, cv2.getStructuringElement(cv2.MORPH_RECT, (k, k)))
    paper = cv2.blur(paper, (k, k))
    paper = cv2.resize(paper, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float32)
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




def _pattern_search(S: np.ndarray, S2: np.ndarray, x0: float, y0: float, step: float, reach: int,
                    pattern: tuple[int, tuple[tuple[int, int, int], ...]]) -> tuple[float, float, float]:
    """Normalised correlation of a square ring pattern (`_FINDER`, `_ALIGN`) whose window has its top-left
    near (x0, y0), in an image with integral images S (values) and S2 (squares), over shifts within `reach`
    pixels: the window's best top-left (sub-pixel) and its score. Box sums from the integral images only,
    no convolution (OpenCV's matchTemplate sets up DFT buffers worth 10 MB of the kit's memory on first use)."""
    size, rings = pattern
    d = np.arange(-reach, reach + 1)
    ys = (round(y0) + d)[:, None]
    xs = (round(x0) + d)[None, :]
    h, w = S.shape[0] - 1, S.shape[1] - 1
    span = round(size * step)
    if ys.min() < 0 or xs.min() < 0 or ys.max() + span > h or xs.max() + span > w:
        return x0, y0, -1.0

    def box(a: float, b: float, T: np.ndarray = S) -> np.ndarray:
        ea, eb = round(a * step), round(b * step)
        return T[ys + eb, xs + eb] - T[ys + ea, xs + eb] - T[ys + eb, xs + ea] + T[ys + ea, xs + ea]

    # The pattern as nested +1/-1 squares: 1 on its dark modules, 0 on its light ones.
    ti = sum(sign * box(a, b) for a, b, sign in rings)
    n = float(span * span)
    t_sum = float(sum(sign * (round(b * step) - round(a * step)) ** 2 for a, b, sign in rings))
    i_sum = box(0, size)
    i2_sum = box(0, size, S2)
    cov = ti - t_sum * i_sum / n
    var_t = t_sum - t_sum * t_sum / n
    var_i = np.maximum(i2_sum - i_sum * i_sum / n, 1e-9)
    score = (cov / np.sqrt(var_t * var_i)).astype(np.float32)
    fx, fy, v = _peak(score)
    return float(xs[0, 0] + fx), float(ys[0, 0] + fy), v


def _locate(S: np.ndarray, S2: np.ndarray, origin_px: float, square_px: float, n: int) -> np.ndarray | None:
    """Homography from module coordinates (col, row; module centres at k + 0.5) to darkness-image pixels,
    from the three finder patterns found near where the print contract puts them (and the alignment
    pattern). S, S2: integral images of the darkness and of its square."""
    step = square_px / (n + 2 * QUIET_INSIDE)
    reach = round(FINDER_REACH_MODULES * step)
    src, dst = [], []
    for r, c in ((0, 0), (0, n - 7), (n - 7, 0)):
        # Predicted top-left of the 9 x 9 window (separator included).
        x0 = origin_px + (QUIET_INSIDE + c - 1) * step
        y0 = origin_px + (QUIET_INSIDE + r - 1) * step
        fx, fy, v = _pattern_search(S, S2, x0, y0, step, reach, _FINDER)
        if v < MIN_FINDER_SCORE:
            return None
        src.append((c + 3.5, r + 3.5))
        dst.append((fx + 4.5 * step, fy + 4.5 * step))
    src_a, dst_a = np.array(src, np.float64), np.array(dst, np.float64)
    A = cv2.getAffineTransform(src_a.astype(np.float32), dst_a.astype(np.float32)).astype(np.float64)
    H = np.vstack([A, [0.0, 0.0, 1.0]])
    for r, c in _alignment_centres(n):
        # The alignment pattern (a 5 x 5 ring around a dark centre, in a 7 x 7 window), within 1.5 modules.
        pred = H @ np.array([c + 0.5, r + 0.5, 1.0])
        fx, fy, v = _pattern_search(S, S2, pred[0] - 3.5 * step, pred[1] - 3.5 * step, step, round(1.5 * step),
                                    _ALIGN)
        if v >= MIN_FINDER_SCORE:
            src_a = np.vstack([src_a, [c + 0.5, r + 0.5]])
            dst_a = np.vstack([dst_a, [fx + 3.5 * step, fy + 3.5 * step]])
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
    S = cv2.integral(dark, sdepth=cv2.CV_64F)
    S2 = cv2.integral(dark * dark, sdepth=cv2.CV_64F)
    best = GridRead(text=None)
    for n in SIZES:
        H = _locate(S, S2, SLACK_MM * ppm, size_mm * ppm, n)
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
