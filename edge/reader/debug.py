"""Debug images: the rectified sheet with every box, its reading and confidence drawn on it.

Only built when the caller passes a debug sink; the reading itself never depends on it.
"""

from __future__ import annotations

import cv2
import numpy as np

from tpskit.forms import Template

from .geometry import PageGeometry, warp_region
from .types import ReadingResult

DEBUG_PX_PER_MM = 4.0
_COLOURS = {"ok": (40, 160, 40), "resolved_by_checks": (200, 120, 0), "review": (0, 0, 230)}


def draw_reading(gray: np.ndarray, geom: PageGeometry, t: Template, result: ReadingResult) -> np.ndarray:
    """BGR image of the rectified page; green ok, blue resolved by checks, red review."""
    ppm = DEBUG_PX_PER_MM
    page = warp_region(gray, geom, 0, 0, t.page.width_mm, t.page.height_mm, ppm)
    img = cv2.cvtColor(page, cv2.COLOR_GRAY2BGR)
    for f in t.fields:
        fr = result.fields.get(f.name)
        if fr is None:
            continue
        colour = _COLOURS[fr.status]
        for b, br in zip(f.boxes, fr.boxes, strict=True):
            p0 = (round(b.x_mm * ppm), round(b.y_mm * ppm))
            p1 = (round((b.x_mm + b.w_mm) * ppm), round((b.y_mm + b.h_mm) * ppm))
            cv2.rectangle(img, p0, p1, colour, 1)
            label = "-" if br.digit is None else str(br.digit)
            cv2.putText(img, f"{label}:{br.p:.2f}", (p0[0], p1[1] + 9), cv2.FONT_HERSHEY_PLAIN, 0.7, colour, 1)
        last = f.boxes[-1]
        text = f"{fr.value if fr.value is not None else '?'} {fr.status[:3]} {fr.confidence:.3f}"
        cv2.putText(img, text, (round((last.x_mm + last.w_mm + 1) * ppm), round((last.y_mm + last.h_mm / 2) * ppm)),
                    cv2.FONT_HERSHEY_PLAIN, 0.8, colour, 1)
    y = 12
    for c in result.checks:
        cv2.putText(img, f"{c.id}: {'pass' if c.passed else 'FAIL'}", (4, img.shape[0] - 6 - y),
                    cv2.FONT_HERSHEY_PLAIN, 0.8, (40, 160, 40) if c.passed else (0, 0, 230), 1)
        y += 11
    return img
