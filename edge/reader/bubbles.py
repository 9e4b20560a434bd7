"""Answer bubbles: which bubble of each row the officer blackened (one, none, or several).

Each printed bubble carries its digit in grey, so a blank bubble is not white: a row's own median is
its baseline and a bubble counts as filled when it is clearly darker than that. A bubble filled only
partly still counts; a faint smudge does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tpskit.forms import Bubbles

#: Sampling density of the bubble area.
BUBBLE_PX_PER_MM = 6.0
#: Darkness above the row's baseline that counts as a pen mark (fraction of the inner disk). Measured on
#: generated sheets: a blank bubble stays below 0.095, a fully blackened one above 0.22, a partly filled
#: one anywhere from 0 to 0.3.
FILLED_ABOVE_BASELINE = 0.11
#: Between this and FILLED a mark may or may not be there: the row is no evidence either way.
FAINT_ABOVE_BASELINE = 0.05
#: Disk sampled inside each bubble, as a fraction of its radius (stays clear of the printed outline).
INNER_RADIUS = 0.72


@dataclass(frozen=True)
class BubbleRow:
    #: Digits whose bubble is filled.
    filled: tuple[int, ...]
    #: Darkness above baseline per digit 0..9.
    scores: tuple[float, ...]

    @property
    def faint(self) -> bool:
        """Nothing clearly filled, but a mark that might be a light, partial fill."""
        return not self.filled and max(self.scores) > FAINT_ABOVE_BASELINE

    @property
    def reading(self) -> int | str | None:
        """The digit, None for an empty row, "several", or "faint" (no evidence either way)."""
        if len(self.filled) == 1:
            return self.filled[0]
        if self.faint:
            return "faint"
        return None if not self.filled else "several"


def bubble_region(b: Bubbles) -> tuple[float, float, float, float]:
    """The page rectangle (x, y, w, h in mm) holding all bubbles of a field, with a small margin."""
    pts = np.array([c for row in b.rows for c in row], np.float64)
    r = b.d_mm / 2 + 0.8
    x0, y0 = pts.min(axis=0) - r
    x1, y1 = pts.max(axis=0) + r
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def read_bubbles(region: np.ndarray, b: Bubbles, origin_mm: tuple[float, float]) -> list[BubbleRow]:
    """Read every row from the rectified bubble region (gray, at BUBBLE_PX_PER_MM, origin in mm)."""
    g = region.astype(np.float32)
    paper = max(float(np.percentile(g, 90)), 1.0)
    dark = np.clip(1.0 - g / paper, 0.0, 1.0)
    ppm = BUBBLE_PX_PER_MM
    r_in = b.d_mm / 2 * INNER_RADIUS * ppm
    k = int(np.ceil(r_in))
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    disk = (xx**2 + yy**2) <= r_in**2
    rows: list[BubbleRow] = []
    for row in b.rows:
        scores = []
        for cx, cy in row:
            u = (cx - origin_mm[0]) * ppm - 0.5
            v = (cy - origin_mm[1]) * ppm - 0.5
            patch = cv2.getRectSubPix(dark, (2 * k + 1, 2 * k + 1), (float(u), float(v)))
            scores.append(float(patch[disk].mean()))
        s = np.array(scores)
        base = float(np.median(s))
        above = s - base
        filled = tuple(int(d) for d in np.flatnonzero(above > FILLED_ABOVE_BASELINE))
        rows.append(BubbleRow(filled=filled, scores=tuple(round(float(a), 3) for a in above)))
    return rows
