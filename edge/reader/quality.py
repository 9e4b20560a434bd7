"""The capture gate's measurements and thresholds.

Once the sheet is found, every decision is taken on the regions that matter, after rectification: the
printed lines of the digit boxes (see `grid.py`), never whole-photo statistics. Bright paper, even paper
clipped at 255, is not glare; a lamp gradient is not darkness; a sharp desk does not make a blurred sheet
sharp.

- too dark: the box with the least light between paper and printed black (`line contrast`, grey levels);
- out of focus: the printed box lines' effective width (`line width`, mm; a crisp 0.35 mm line measures
  about 0.4 mm through the camera), over the blurriest tenth of the boxes;
- glare: a stretch of a box's line that fades against the paper beside it (`visibility` well below the
  sheet's own typical line) where that paper is near saturation, on enough of the box to hide a digit.

Each threshold is set from a measured curve, the boxes' reading accuracy as the condition worsens
(`bench/gate.py`, figures in BENCHMARKS.md), at the severity where reading starts to fail, with a margin.

When no sheet is found, the frame-level measurements below say why in the officer's terms.
"""

from __future__ import annotations

import cv2
import numpy as np

from .grid import SEGMENTS, GridFit

# ------------------------------------------------------------------ on the box grid (bench/gate.py curves)
#: Grey levels between paper and printed black, in the darkest box, below which boxes cannot be read.
MIN_LINE_CONTRAST = 16.0
#: Effective width (mm) of the printed box lines, over the blurriest tenth of the boxes, above which the
#: digits blur beyond reading (bench/gate.py, "focus" and "focus_far", boxes sharpened by the blur their
#: lines show). A finer sweep (defocus 0.38-0.48 mm, 24 photos a level): every photo whose markers and QR
#: are still found reads 99.0-99.2 % of boxes (97.8-98.2 % at 5.5 px/mm) with no silent error, up to lines
#: 1.09-1.11 mm wide; from a defocus of 0.46 mm (1.10-1.17 mm) none is found. At 1.05 the gate refused
#: readable hard photos of a second seed of bench/read.py (1.053-1.066 mm; each read every field right
#: ungated); 1.10 refuses only where nothing could be found a few hundredths further.
MAX_LINE_WIDTH_MM = 1.10
#: A stretch of box line fades (glare) when its darkness is below this fraction of the sheet's typical
#: line (the 75th percentile over every stretch) ...
GLARE_FADED = 0.45
#: ... and the paper beside it is at least this bright (specular light is near saturation).
GLARE_PAPER = 225.0
#: A box is under glare when more than this many of its 4 x SEGMENTS line stretches faded.
GLARE_MAX_FADED = 5
#: A box the grid search could not find may be cut this far (mm) from where its neighbours say it is
#: and still be read; beyond it, the crop would fall off the box: the sheet is not flat enough.
MAX_UNFOUND_OFFSET_MM = 0.7
#: A QR code that will not decode on a sheet whose lines are wider than this is blamed on the focus: its
#: module-grid reading (qr.py) holds to a defocus of about 0.35-0.4 mm (lines 0.94-1.03 mm wide); below
#: this width a QR that fails is covered, smudged or torn.
QR_MAX_LINE_WIDTH_MM = 0.90
#: A QR code that will not decode with more than this fraction of it saturated is under glare.
QR_GLARE_FRACTION = 0.25
#: Full-resolution pixels per mm below this leave too few pixels per digit stroke.
MIN_FULLRES_PX_PER_MM = 3.5

# --------------------------------------------------------------------------- markers (when one is missing)
#: Edge sharpness of the corner markers (see `edge_sharpness`) below this is out of focus.
MIN_SHARPNESS = 0.30
#: Sampling density for the marker sharpness measurement.
GATE_PX_PER_MM = 3.0

# ------------------------------------------------------------------------- the frame (when no sheet found)
#: Brightest 5 % of the frame below this (of 255) means the lamp is off or the lens is covered.
DARK_FRAME_P95 = 70.0
#: Sharpness of the frame's sharpest structure in its least sharp direction (see `frame_sharpness`) below
#: this: out of focus. Blurred and shaken kit forms (bad captures) measure 0.13-0.23, sharp pages that are
#: not the kit's form 0.46-0.71, readable photos of the hardest set 0.35 and up.
MIN_FRAME_SHARPNESS = 0.30
#: Fraction of the frame's tiles holding thin dark strokes (text, ruled lines) above which the frame
#: shows a printed page (see `document_structure`).
MIN_DOCUMENT_TILES = 0.08


def small_copy(gray: np.ndarray, long_side: int = 512) -> np.ndarray:
    """A copy about `long_side` wide, by a whole factor (INTER_AREA's fast path)."""
    h, w = gray.shape
    k = max(1, round(max(h, w) / long_side))
    return cv2.resize(gray, (max(1, w // k), max(1, h // k)), interpolation=cv2.INTER_AREA)


# --------------------------------------------------------------------------------------------- box grid
def _faded(grid: GridFit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(visibility, paper, faded) per box and line stretch, (boxes, 4 * SEGMENTS)."""
    vis = np.array([b.visibility for b in grid.boxes()])
    paper = np.array([b.paper for b in grid.boxes()])
    assert vis.shape[1] == 4 * SEGMENTS
    ref = float(np.percentile(vis, 75))
    return vis, paper, (vis < GLARE_FADED * ref) & (paper >= GLARE_PAPER)


def glare_stretches(grid: GridFit) -> np.ndarray:
    """Per box (in template order), how many of its line stretches faded under near-saturated light."""
    return _faded(grid)[2].sum(axis=1)


def darkest_box_contrast(grid: GridFit) -> tuple[float, int]:
    """The lowest line contrast over the boxes (grey levels between paper and printed line, median over
    the box's line stretches that glare did not fade), and the index of that box."""
    vis, paper, faded = _faded(grid)
    lost = np.array([not b.found for b in grid.boxes()])
    if lost.mean() < 0.5:  # a box not found was measured where it is not: no evidence of light
        faded = faded | lost[:, None]
    c = np.where(faded, np.nan, vis * paper)
    with np.errstate(all="ignore"):
        per_box = np.where(faded.all(axis=1), np.inf, np.nanmedian(np.where(faded.all(axis=1)[:, None], 0.0, c),
                                                                   axis=1))
    i = int(np.argmin(per_box))
    return float(per_box[i]), i


def blurriest_line_width(grid: GridFit) -> float:
    """Line width (mm) of the blurriest tenth of the boxes found (90th percentile over boxes)."""
    boxes = grid.boxes()
    w = np.array([b.width_mm for b in boxes if b.found or grid.found_fraction < 0.5])
    w = w[np.isfinite(w)]
    return float(np.percentile(w, 90)) if len(w) else float("inf")


def unfound_offset_mm(grid: GridFit) -> float:
    """How far a box whose lines were not found may be from where it is cut: the largest disagreement
    among the found boxes around it (grid.py, `_place_unfound`); 0 when every box was found."""
    return max((b.uncertainty_mm for b in grid.boxes() if not b.found), default=0.0)


# -------------------------------------------------------------------------------------------- markers
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


# ---------------------------------------------------------------------------------------------- frame
def frame_too_dark(small: np.ndarray) -> bool:
    return float(np.percentile(small, 95)) < DARK_FRAME_P95


def frame_very_dark(small: np.ndarray) -> bool:
    """So dark that paper cannot be told from desk (the lamp is off, the lens is covered)."""
    return float(np.percentile(small, 95)) < DARK_FRAME_P95 / 2


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


def _strokes(gray: np.ndarray) -> np.ndarray:
    """Thin dark strokes (print, handwriting, ruled lines): black-hat response above a contrast floor."""
    k = cv2.getStructuringElement(cv2.MORPH_RECT, (7, 7))
    hat = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, k)
    return hat >= 28


def document_structure(gray: np.ndarray, long_side: int = 1024) -> float:
    """Fraction of the frame's tiles (32 px at `long_side`) holding thin dark strokes: text and ruled lines
    make a page; a desk, a pen and a phone do not."""
    small = small_copy(gray, long_side)
    strokes = _strokes(small)
    t = 32
    h, w = (strokes.shape[0] // t) * t, (strokes.shape[1] // t) * t
    if h == 0 or w == 0:
        return 0.0
    tiles = strokes[:h, :w].reshape(h // t, t, w // t, t).mean(axis=(1, 3))
    return float((tiles > 0.01).mean())


def frame_sharpness(gray: np.ndarray, long_side: int = 2048) -> float:
    """Sharpness of the frame's sharpest structure in its least sharp direction (used when no marker was
    found): per tile holding strokes or edges, the steepest edges relative to the tile's contrast along
    each of four directions, the weakest direction kept; then the 90th percentile over the tiles.

    Motion blur smears one direction only: edges across it stay steep, so the plain gradient magnitude
    called a shaken photo sharp (it was then "not the kit's form"); along the motion every edge is soft.
    Measured at about the working image's size (on a copy a few times smaller, a blur of 0.45 mm shrinks
    under a pixel and looks as sharp as print), one band of tiles at a time: whole-frame gradient images
    in four directions would cost the kit 60 MB at once."""
    small = small_copy(gray, long_side)
    t = 64
    h, w = (small.shape[0] // t) * t, (small.shape[1] // t) * t
    if h == 0 or w == 0:
        return 0.0
    dirs = [(float(np.cos(a)), float(np.sin(a))) for a in np.radians([0.0, 45.0, 90.0, 135.0])]

    def tiles(a: np.ndarray) -> np.ndarray:  # (t, w) band -> (w // t, t * t), one row per tile
        return a[:, :w].reshape(t, w // t, t).transpose(1, 0, 2).reshape(w // t, t * t)

    values: list[np.ndarray] = []
    for y in range(0, h, t):
        y0, y1 = max(0, y - 1), min(small.shape[0], y + t + 1)  # a row either side: exact gradients
        band = small[y0:y1].astype(np.float32)
        inner = slice(y - y0, y - y0 + t)
        lo, hi = np.percentile(tiles(band[inner]), [5, 95], axis=1)
        contrast = hi - lo
        keep = contrast >= 30.0
        if not keep.any():
            continue
        gx = cv2.Sobel(band, cv2.CV_32F, 1, 0, ksize=3)[inner] / 8.0
        gy = cv2.Sobel(band, cv2.CV_32F, 0, 1, ksize=3)[inner] / 8.0
        ratios = [np.percentile(tiles(np.abs(gx * c + gy * s))[keep], 99, axis=1) / contrast[keep] for c, s in dirs]
        values.append(np.min(ratios, axis=0))
    if not values:
        return 0.0
    return float(np.percentile(np.concatenate(values), 90))
