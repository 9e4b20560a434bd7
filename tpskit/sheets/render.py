"""Render a blank tally sheet from its template: markers, QR, digit boxes, bubbles and printed labels.

The page is drawn in millimetres scaled by `px_per_mm`, so the same code gives the printable PDF
(300 dpi) and the 8 px/mm page the sheet generator writes on. Geometry follows the template exactly:
a box's printed line has its outer edge on the template rectangle, a marker's black square is the
template square, and the QR symbol fills the template square with a 2-module quiet zone inside it
(another 2 modules of white are kept outside, where the template prints nothing), so a reader that
crops exactly the template square still finds a quiet zone.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
import segno
from PIL import Image, ImageDraw, ImageFont

from tpskit.forms import Template, valid_tps

PT_MM = 25.4 / 72.0
BOX_LINE_MM = 0.35
BUBBLE_LINE_MM = 0.18
QR_QUIET_INSIDE = 2  # modules of quiet zone drawn inside the template square
QR_QUIET_OUTSIDE = 2  # further modules kept white around it
INK = 0  # printed black
BUBBLE_DIGIT_GREY = 110  # small digits inside bubbles are printed grey so a pen mark stands out
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel geometry
_ONE = 1 << _SHIFT


def page_size_px(template: Template, px_per_mm: float) -> tuple[int, int]:
    """(width, height) in pixels of the page at this scale."""
    return round(template.page.width_mm * px_per_mm), round(template.page.height_mm * px_per_mm)


def aruco_dictionary(name: str) -> cv2.aruco.Dictionary:
    """The OpenCV predefined dictionary a template names (`DICT_4X4_50`)."""
    code = getattr(cv2.aruco, name, None)
    if not isinstance(code, int):
        raise ValueError(f"unknown ArUco dictionary {name!r}")
    return cv2.aruco.getPredefinedDictionary(code)


@lru_cache(maxsize=64)
def _marker_cells(dictionary: str, marker_id: int) -> np.ndarray:
    """The marker's cells (with its one-cell black border), 255 = white, one pixel per cell."""
    d = aruco_dictionary(dictionary)
    n = d.markerSize + 2
    img = cv2.aruco.generateImageMarker(d, marker_id, n, borderBits=1)
    img.setflags(write=False)
    return img


def _fill_rect_mm(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, ppm: float,
                  value: int) -> None:
    pts = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64) * ppm * _ONE
    cv2.fillPoly(img, [np.round(pts).astype(np.int32)], int(value), cv2.LINE_AA, _SHIFT)


def _draw_marker(img: np.ndarray, dictionary: str, marker_id: int, x: float, y: float, size: float,
                 quiet: float, ppm: float) -> None:
    _fill_rect_mm(img, x - quiet, y - quiet, x + size + quiet, y + size + quiet, ppm, 255)
    cells = _marker_cells(dictionary, marker_id)
    _paint_cells(img, cells == 0, x, y, size / cells.shape[0], ppm)


def _paint_cells(img: np.ndarray, dark: np.ndarray, x: float, y: float, step: float, ppm: float) -> None:
    """Paint a grid of square cells with edges on whole pixels, so that adjacent dark cells leave no seam."""
    rows, cols = dark.shape
    ex = np.round((x + np.arange(cols + 1) * step) * ppm).astype(int)
    ey = np.round((y + np.arange(rows + 1) * step) * ppm).astype(int)
    for r, c in zip(*np.nonzero(dark), strict=True):
        img[ey[r]:ey[r + 1], ex[c]:ex[c + 1]] = INK


def qr_matrix(text: str) -> np.ndarray:
    """QR modules as a bool array (True = dark), without quiet zone."""
    qr = segno.make(text, micro=False, error="m", boost_error=True)
    return np.array([[bool(v) for v in row] for row in qr.matrix], dtype=bool)


def _draw_qr(img: np.ndarray, text: str, x: float, y: float, size: float, ppm: float) -> None:
    modules = qr_matrix(text)
    n = modules.shape[0] + 2 * QR_QUIET_INSIDE
    step = size / n
    out = QR_QUIET_OUTSIDE * step
    _fill_rect_mm(img, x - out, y - out, x + size + out, y + size + out, ppm, 255)
    q = QR_QUIET_INSIDE
    _paint_cells(img, modules, x + q * step, y + q * step, step, ppm)


def _draw_box(img: np.ndarray, x: float, y: float, w: float, h: float, ppm: float) -> None:
    _fill_rect_mm(img, x, y, x + w, y + h, ppm, INK)
    t = BOX_LINE_MM
    _fill_rect_mm(img, x + t, y + t, x + w - t, y + h - t, ppm, 255)


def _font(size_px: float) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(6.0, size_px))


def check_tps(tps: str) -> None:
    if not valid_tps(tps):
        raise ValueError(f"TPS code must be 13 digits (10-digit village code + 3-digit TPS number), "
                         f"got {tps!r}")


def render_blank(template: Template, tps: str, px_per_mm: float = 8.0) -> np.ndarray:
    """The blank sheet of one TPS as a float32 BGR image in [0, 1] (white paper, black print)."""
    check_tps(tps)
    return _render_gray(template, tps, px_per_mm).astype(np.float32)[..., None].repeat(3, axis=2) / 255.0


def render_blank_gray(template: Template, tps: str, px_per_mm: float = 8.0) -> np.ndarray:
    """The blank sheet as uint8 grey (255 = paper): what the printer gets."""
    check_tps(tps)
    return _render_gray(template, tps, px_per_mm)


def _render_gray(template: Template, tps: str, ppm: float) -> np.ndarray:
    w, h = page_size_px(template, ppm)
    img = np.full((h, w), 255, np.uint8)

    for f in template.fields:
        for b in f.boxes:
            _draw_box(img, b.x_mm, b.y_mm, b.w_mm, b.h_mm, ppm)
        if f.bubbles is not None:
            r_px = f.bubbles.d_mm / 2 * ppm
            thick = max(1, round(BUBBLE_LINE_MM * ppm))
            for row in f.bubbles.rows:
                for cx, cy in row:
                    c = (round(cx * ppm * _ONE), round(cy * ppm * _ONE))
                    cv2.circle(img, c, round((r_px - thick / 2) * _ONE), INK, thick, cv2.LINE_AA, _SHIFT)

    m = template.markers
    for item in m.items:
        _draw_marker(img, m.dictionary, item.id, item.x_mm, item.y_mm, m.size_mm, m.quiet_zone_mm, ppm)
    q = template.qr
    _draw_qr(img, template.qr_text(tps), q.x_mm, q.y_mm, q.size_mm, ppm)

    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    for t in template.texts:
        size = t.size_pt * PT_MM * ppm
        draw.text((t.x_mm * ppm, t.y_mm * ppm), t.text, fill=INK, font=_font(size), anchor="la",
                  stroke_width=max(1, round(size * 0.035)) if t.bold else 0, stroke_fill=INK)
    # The TPS code in plain digits under the QR, for the officer (outside the QR's quiet zone).
    caption = 1.8 * ppm
    qr_bottom = q.y_mm + q.size_mm + 2.4
    draw.text(((q.x_mm + q.size_mm / 2) * ppm, qr_bottom * ppm), f"TPS {tps}", fill=INK, font=_font(caption),
              anchor="ma")
    for f in template.fields:
        if f.bubbles is None:
            continue
        size = f.bubbles.d_mm * 0.62 * ppm
        font = _font(size)
        for row in f.bubbles.rows:
            for digit, (cx, cy) in enumerate(row):
                draw.text((cx * ppm, cy * ppm), str(digit), fill=BUBBLE_DIGIT_GREY, font=font, anchor="mm")
    return np.asarray(pil).copy()


def stamp_qr(page: np.ndarray, template: Template, tps: str, px_per_mm: float) -> None:
    """Replace the QR code printed on a (float32 BGR) page by the one of another TPS, in place."""
    check_tps(tps)
    q = template.qr
    margin = q.size_mm * QR_QUIET_OUTSIDE / (qr_matrix(template.qr_text(tps)).shape[0] + 2 * QR_QUIET_INSIDE)
    x0, y0 = math.floor((q.x_mm - margin) * px_per_mm), math.floor((q.y_mm - margin) * px_per_mm)
    x1 = math.ceil((q.x_mm + q.size_mm + margin) * px_per_mm)
    y1 = math.ceil((q.y_mm + q.size_mm + margin) * px_per_mm)
    w, h = page_size_px(template, px_per_mm)
    patch = np.full((h, w), 255, np.uint8)
    _draw_qr(patch, template.qr_text(tps), q.x_mm, q.y_mm, q.size_mm, px_per_mm)
    page[y0:y1, x0:x1] = (patch[y0:y1, x0:x1].astype(np.float32) / 255.0)[..., None]
