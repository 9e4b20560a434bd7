"""Blank forms: markers, QR, boxes where the template says, and the `tpskit form render` command."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

from tpskit.cli import main
from tpskit.forms import load_templates
from tpskit.sheets.render import BOX_LINE_MM, render_blank, stamp_qr

TPS = "3201012001001"
TEMPLATES = sorted(load_templates().values(), key=lambda t: t.id)


def _gray(page: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(page * 255, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.id)
def test_blank_markers_are_detected_with_their_ids_at_their_template_positions(template):
    ppm = 8.0
    page = render_blank(template, TPS, ppm)
    assert page.dtype == np.float32 and page.shape == (round(297 * ppm), round(210 * ppm), 3)
    d = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, template.markers.dictionary))
    corners, ids, _ = cv2.aruco.ArucoDetector(d).detectMarkers(_gray(page))
    assert ids is not None
    found = {int(i): c.reshape(4, 2) / ppm for c, i in zip(corners, ids.ravel(), strict=True)}
    assert sorted(found) == sorted(m.id for m in template.markers.items)
    s = template.markers.size_mm
    for m in template.markers.items:
        expected = np.array([[m.x_mm, m.y_mm], [m.x_mm + s, m.y_mm], [m.x_mm + s, m.y_mm + s], [m.x_mm, m.y_mm + s]])
        assert np.abs(found[m.id] - expected).max() < 0.3, (m.id, found[m.id], expected)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: t.id)
@pytest.mark.parametrize("ppm", [4.0, 5.0, 6.0])
def test_blank_qr_decodes_to_the_template_payload_from_the_page_and_from_its_square(template, ppm):
    gray = _gray(render_blank(template, TPS, ppm))
    q = template.qr
    square = gray[round(q.y_mm * ppm):round((q.y_mm + q.size_mm) * ppm),
                  round(q.x_mm * ppm):round((q.x_mm + q.size_mm) * ppm)]
    for img in (gray, square):
        text, _, _ = cv2.QRCodeDetector().detectAndDecode(img)
        assert text == template.qr_text(TPS) == f"TPSFORM/1;form={template.form_code};tps={TPS}"


def test_box_lines_have_their_outer_edge_on_the_template_rectangle():
    t = TEMPLATES[0]
    ppm = 10.0
    gray = _gray(render_blank(t, TPS, ppm))
    b = t.fields[0].boxes[0]
    row = gray[round((b.y_mm + b.h_mm / 2) * ppm)]
    x0 = round(b.x_mm * ppm)
    assert row[x0 - 2] > 200 and row[x0 + 1] < 80  # paper just outside, the line just inside
    inner = round((b.x_mm + BOX_LINE_MM) * ppm) + 2
    assert row[inner] > 200  # and white again inside the line


def test_stamped_qr_names_the_other_tps():
    t = TEMPLATES[0]
    page = render_blank(t, TPS, 8.0)
    stamp_qr(page, t, "3201012001002", 8.0)
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(_gray(page))
    assert text.endswith("tps=3201012001002")


def test_render_refuses_a_tps_code_that_is_not_13_digits():
    with pytest.raises(ValueError, match="13 digits"):
        render_blank(TEMPLATES[0], "32010120010", 4.0)


def test_form_render_writes_a_true_scale_a4_pdf(tmp_path):
    out = tmp_path / "blank.pdf"
    assert main(["form", "render", "PPWP", "--tps", TPS, "-o", str(out)]) == 0
    data = out.read_bytes()
    assert data.startswith(b"%PDF")
    box = re.search(rb"/MediaBox \[ *0 0 ([\d.]+) ([\d.]+) *\]", data)
    assert box is not None
    w_mm, h_mm = (float(v) * 25.4 / 72 for v in box.groups())
    assert abs(w_mm - 210) < 0.3 and abs(h_mm - 297) < 0.3


def test_form_render_writes_a_png_with_its_dpi(tmp_path):
    from PIL import Image

    out = tmp_path / "blank.png"
    assert main(["form", "render", "c-hasil-kwk-4", "--tps", TPS, "-o", str(out), "--dpi", "150"]) == 0
    with Image.open(out) as im:
        assert im.size == (round(210 * 150 / 25.4), round(297 * 150 / 25.4))
        assert round(im.info["dpi"][0]) == 150
        text, _, _ = cv2.QRCodeDetector().detectAndDecode(np.asarray(im.convert("L")))
    assert text == f"TPSFORM/1;form=KWK;tps={TPS}"


def test_form_render_refuses_a_bad_tps_code_with_exit_2_and_says_why(tmp_path, capsys):
    out = tmp_path / "blank.pdf"
    assert main(["form", "render", "PPWP", "--tps", "32010A2001001", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not a TPS code" in err and "13 digits" in err
    assert not out.exists()


def test_form_render_names_the_installed_templates_when_the_template_is_unknown(tmp_path, capsys):
    assert main(["form", "render", "PPXX", "--tps", TPS, "-o", str(tmp_path / "b.pdf")]) == 2
    assert "c-hasil-ppwp-2024" in capsys.readouterr().err
