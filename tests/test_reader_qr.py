"""The sheet's QR read from its module grid (edge/reader/qr.py): through blur that defeats a general QR
detector, and never into a payload the symbol does not carry."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tpskit.edge.reader.geometry import PageGeometry
from tpskit.edge.reader.qr import QUIET_INSIDE, read_qr_grid
from tpskit.forms import load_templates
from tpskit.sheets import render
from tpskit.sheets.bad_captures import _cover_qr

TPS = "3201012001001"


def _page(tps: str, ppm: float = 8.0) -> tuple[np.ndarray, object]:
    t = load_templates()["KWK"]
    page = render.render_blank(t, tps, ppm)
    gray = cv2.cvtColor(np.clip(page * 255, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
    return gray, t


def _camera(gray: np.ndarray, ppm: float, to_ppm: float, blur_mm: float, motion_mm: float = 0.0) -> np.ndarray:
    """The page as a camera at `to_ppm` px/mm sees it: defocus and motion blur (mm), then resampled."""
    out = cv2.GaussianBlur(gray, (0, 0), blur_mm * ppm) if blur_mm > 0 else gray
    if motion_mm > 0:
        n = max(3, round(motion_mm * ppm) | 1)
        k = np.zeros((n, n), np.float32)
        k[np.arange(n), np.arange(n)] = 1.0 / n  # diagonal
        out = cv2.filter2D(out, -1, k)
    return cv2.resize(out, None, fx=to_ppm / ppm, fy=to_ppm / ppm, interpolation=cv2.INTER_AREA)


def _geom(ppm: float) -> PageGeometry:
    # Page mm -> image pixels, pixel centres at integer coordinates.
    return PageGeometry(H=np.array([[ppm, 0.0, -0.5], [0.0, ppm, -0.5], [0.0, 0.0, 1.0]]), error_mm=0.0, px_per_mm=ppm)


def test_the_print_contract_of_the_quiet_zone_is_the_renderers():
    assert QUIET_INSIDE == render.QR_QUIET_INSIDE


@pytest.mark.parametrize("blur_mm, motion_mm", [(0.32, 0.0), (0.25, 0.6)])
def test_a_qr_blurred_past_opencvs_detector_is_read_from_its_module_grid(blur_mm, motion_mm):
    gray, t = _page(TPS)
    photo = _camera(gray, 8.0, 3.0, blur_mm, motion_mm)  # a sheet at 6 px/mm decoded at half size
    q = t.qr
    pad = 2.0
    crop = photo[round((q.y_mm - pad) * 3):round((q.y_mm + q.size_mm + pad) * 3),
                 round((q.x_mm - pad) * 3):round((q.x_mm + q.size_mm + pad) * 3)]
    assert not cv2.QRCodeDetector().detectAndDecode(crop)[0]  # what the reader had before
    got = read_qr_grid(photo, _geom(3.0), q.x_mm, q.y_mm, q.size_mm)
    assert got.text == t.qr_text(TPS) and got.size == 29


def test_a_qr_of_another_tps_reads_as_that_tps_never_as_the_kits():
    other = "3201012001002"
    gray, t = _page(other)
    photo = _camera(gray, 8.0, 3.0, 0.3)
    assert read_qr_grid(photo, _geom(3.0), t.qr.x_mm, t.qr.y_mm, t.qr.size_mm).text == t.qr_text(other)


def test_a_qr_under_a_sticky_note_is_not_read():
    t = load_templates()["KWK"]
    page = render.render_blank(t, TPS, 8.0)
    _cover_qr(page, t, 8.0, np.random.default_rng(3), "sticky")
    gray = cv2.cvtColor(np.clip(page * 255, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
    assert read_qr_grid(gray, _geom(8.0), t.qr.x_mm, t.qr.y_mm, t.qr.size_mm).text is None
