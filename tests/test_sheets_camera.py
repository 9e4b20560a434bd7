"""The simulated document camera, and the bad captures the reader's quality gate must refuse."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from tpskit.forms import load_templates
from tpskit.sheets import digits_data
from tpskit.sheets.bad_captures import BAD_CAPTURES, CORNERS, covered_corner
from tpskit.sheets.camera import CONDITIONS, FRAME_SIZE, RANGES, SENSORS, photograph, sample_shot, shoot
from tpskit.sheets.fill import FilledSheet, fill_sheet, random_result

TPS = "3201012001001"
T = load_templates()["PPWP"]
DICT = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, T.markers.dictionary))


@pytest.fixture(scope="module")
def sheet() -> FilledSheet:
    rng = np.random.default_rng(42)
    return fill_sheet(T, TPS, random_result(T, rng), rng, digits_data.load_validation_digits(), "normal")


def _decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a decodable JPEG"
    return img


def _markers(img: np.ndarray, scale: float = 0.25) -> dict[int, np.ndarray]:
    """Marker corners in full-frame pixels, detected on a downscaled copy (as the reader does)."""
    small = cv2.resize(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), None, fx=scale, fy=scale,
                       interpolation=cv2.INTER_AREA)
    corners, ids, _ = cv2.aruco.ArucoDetector(DICT).detectMarkers(small)
    if ids is None:
        return {}
    return {int(i): c.reshape(4, 2) / scale for c, i in zip(corners, ids.ravel(), strict=True)}


def _rectified_qr(img: np.ndarray, ppm: float = 5.0) -> str | None:
    found = _markers(img)
    if len(found) != 4:
        return None
    src = np.float32([found[m.id][0] for m in T.markers.items])
    dst = np.float32([[m.x_mm * ppm, m.y_mm * ppm] for m in T.markers.items])
    hom = cv2.getPerspectiveTransform(src, dst)
    page = cv2.warpPerspective(img, hom, (round(T.page.width_mm * ppm), round(T.page.height_mm * ppm)))
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(cv2.cvtColor(page, cv2.COLOR_BGR2GRAY))
    return text or None


@pytest.mark.parametrize("severity", ["clean", "normal", "hard"])
def test_photograph_returns_a_decodable_jpeg_of_a_kit_sensor_or_the_requested_size(sheet, severity):
    rng = np.random.default_rng(7)
    img = _decode(photograph(sheet.page, rng, severity))
    sizes = {(w, h) for w, h in SENSORS.values()} | {(h, w) for w, h in SENSORS.values()}
    assert (img.shape[1], img.shape[0]) in sizes
    if severity == "clean":
        assert img.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
    small = _decode(photograph(sheet.page, rng, severity, size=(1280, 960)))
    assert small.shape == (960, 1280, 3)


def _marker_error_px(photo, found: dict[int, np.ndarray], scale: float = 1.0) -> float:
    """Largest distance between each marker's top-left corner in the photo and where the truth puts it."""
    errs = []
    for m in T.markers.items:
        expected = photo.to_frame(np.array([[m.x_mm, m.y_mm]]) * 8.0)[0] * scale
        errs.append(np.linalg.norm(found[m.id][0] - expected))
    return max(errs)


@pytest.mark.parametrize("quarter_turns", [0, 1, 2, 3])
def test_truth_projection_puts_the_markers_where_the_photo_shows_them(sheet, quarter_turns):
    rng = np.random.default_rng(quarter_turns)
    shot = replace(sample_shot(rng, "normal", (2028, 1520)), quarter_turns=quarter_turns, curl_mm=0.0, fold_mm=0.0)
    photo = shoot(sheet.page, shot, rng)
    found = _markers(_decode(photo.jpeg), scale=0.5)
    assert sorted(found) == [0, 1, 2, 3]
    assert _marker_error_px(photo, found) < 4.0
    # Flat: the projection is the homography.
    pts = np.array([[100.0, 200.0], [1500.0, 2300.0]])
    assert np.allclose(photo.to_frame(pts), cv2.perspectiveTransform(pts.reshape(-1, 1, 2), photo.homography)
                       .reshape(-1, 2), atol=1e-6)


def test_a_curled_folded_sheet_tilted_20_degrees_lands_where_its_projection_says(sheet):
    rng = np.random.default_rng(8)
    shot = replace(sample_shot(rng, "clean", (2028, 1520)), tilt_deg=20.0, curl_mm=15.0, curl_edge=1,
                   curl_width_mm=90.0, fold_mm=4.0, fold_angle_deg=10.0)
    photo = shoot(sheet.page, shot, rng)
    found = _markers(_decode(photo.jpeg), scale=0.5)
    assert sorted(found) == [0, 1, 2, 3]
    # The curl moves the curled edge's markers away from where the flat sheet's homography puts them, and
    # the photo shows them where the curled projection says.
    m = T.markers.by_corner("top-right")
    flat = cv2.perspectiveTransform(np.array([[[m.x_mm * 8.0, m.y_mm * 8.0]]]), photo.homography)[0, 0]
    curled = photo.to_frame(np.array([[m.x_mm * 8.0, m.y_mm * 8.0]]))[0]
    assert np.linalg.norm(curled - flat) > 5.0
    assert np.linalg.norm(found[m.id][0] - curled) < 2.5 < np.linalg.norm(found[m.id][0] - flat)


def test_a_snug_sheet_has_a_marker_within_a_millimetre_of_the_frame_edge(sheet):
    rng = np.random.default_rng(9)
    for side in range(4):
        shot = replace(sample_shot(rng, "clean", (1520, 2028)), quarter_turns=0, fill=0.97, snug_mm=0.5,
                       snug_side=side)
        photo = shoot(sheet.page, shot, rng, markers_mm=sheet.markers_mm)
        pts = photo.to_frame(sheet.markers_mm * 8.0)
        ppm = photo.projection.px_per_mm_at(105, 148)
        gap = [pts[:, 0].min(), 1519 - pts[:, 0].max(), pts[:, 1].min(), 2027 - pts[:, 1].max()][side]
        assert 0.3 * ppm < gap < 0.7 * ppm


def test_severities_scale_the_degradations():
    rng = np.random.default_rng(0)
    shots = {s: [sample_shot(rng, s) for _ in range(60)] for s in ("clean", "normal", "hard")}
    for attr in ("blur_sigma", "noise_sigma", "gradient", "tilt_deg", "curl_mm", "hard_shadow_depth"):
        means = [np.mean([getattr(x, attr) for x in shots[s]]) for s in ("clean", "normal", "hard")]
        assert means[0] <= means[1] < means[2], attr
    assert np.mean([x.quality for x in shots["hard"]]) < np.mean([x.quality for x in shots["clean"]])
    turns = {x.quarter_turns for s in shots.values() for x in s}
    assert {1, 3} <= turns  # the sheet comes both ways up, including upside down
    assert {x.size for x in shots["hard"]} == {*SENSORS.values(), *((h, w) for w, h in SENSORS.values())}
    assert max(x.exposure for x in shots["hard"]) > 1.0  # paper clipped at 255


def test_one_condition_alone_leaves_every_other_one_clean():
    rng = np.random.default_rng(1)
    for cond in CONDITIONS:
        alone = [sample_shot(rng, "hard", only=cond) for _ in range(20)]
        lo, hi = RANGES["light"]["clean"]["exposure"]
        if cond not in ("light", "shadow", "paper"):
            assert all(lo <= x.exposure <= hi for x in alone), cond
        if cond != "tilt":
            assert all(x.tilt_deg <= 2.0 for x in alone), cond
        if cond != "curl":
            assert all(x.curl_mm == 0 and x.fold_mm == 0 for x in alone), cond
    assert any(x.curl_mm > 0 or x.fold_mm > 0 for x in (sample_shot(rng, "hard", only="curl") for _ in range(10)))
    with pytest.raises(ValueError, match="condition"):
        sample_shot(rng, "hard", only="weather")


def test_every_bad_capture_is_a_photo_of_a_kit_sensor_except_the_unreadable_file(sheet):
    assert set(BAD_CAPTURES) == {"marker_missing", "out_of_focus", "too_dark", "glare", "no_sheet",
                                 "sheet_too_small", "qr_unreadable", "wrong_tps", "blank_sheet",
                                 "sheet_out_of_frame", "not_a_kit_form", "unreadable_file"}
    sizes = {*SENSORS.values(), *((h, w) for w, h in SENSORS.values())}
    for reason, make in BAD_CAPTURES.items():
        if reason == "unreadable_file":
            continue
        img = _decode(make(sheet, np.random.default_rng(1)))
        assert (img.shape[1], img.shape[0]) in sizes, reason


@pytest.mark.parametrize("corner", CORNERS)
def test_covered_corner_hides_exactly_that_marker(sheet, corner):
    img = _decode(covered_corner(sheet, np.random.default_rng(3), corner, severity="clean"))
    hidden = T.markers.by_corner(corner).id
    assert sorted(_markers(img)) == sorted(m.id for m in T.markers.items if m.id != hidden)


def test_qr_of_an_unreadable_capture_does_not_decode_and_a_wrong_tps_names_another(sheet):
    rng = np.random.default_rng(4)
    good = _decode(photograph(sheet.page, rng, "clean"))
    assert _rectified_qr(good) == T.qr_text(TPS)
    for seed in range(3):
        img = _decode(BAD_CAPTURES["qr_unreadable"](sheet, np.random.default_rng(seed), severity="clean"))
        assert len(_markers(img)) == 4 and _rectified_qr(img) is None
    other = _rectified_qr(_decode(BAD_CAPTURES["wrong_tps"](sheet, rng, severity="clean")))
    assert other is not None and other.startswith("TPSFORM/1;form=PPWP;tps=") and not other.endswith(TPS)


def test_photometric_failures_are_what_they_say(sheet):
    rng = np.random.default_rng(5)
    normal = cv2.cvtColor(_decode(photograph(sheet.page, rng, "normal")), cv2.COLOR_BGR2GRAY)
    dark = cv2.cvtColor(_decode(BAD_CAPTURES["too_dark"](sheet, rng)), cv2.COLOR_BGR2GRAY)
    blurred = cv2.cvtColor(_decode(BAD_CAPTURES["out_of_focus"](sheet, rng)), cv2.COLOR_BGR2GRAY)
    assert np.percentile(dark, 99) < 0.4 * np.percentile(normal, 99)

    def sharpness(g: np.ndarray) -> float:
        return float(cv2.Laplacian(cv2.resize(g, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                                   cv2.CV_32F).var())

    assert sharpness(blurred) < 0.2 * sharpness(normal)
    glare = cv2.cvtColor(_decode(BAD_CAPTURES["glare"](sheet, rng)), cv2.COLOR_BGR2GRAY)
    assert (glare >= 250).mean() > 0.01
    assert not _markers(_decode(BAD_CAPTURES["no_sheet"](sheet, rng)))


def test_sheet_too_small_covers_a_few_percent_of_the_frame(sheet):
    img = _decode(BAD_CAPTURES["sheet_too_small"](sheet, np.random.default_rng(6), severity="clean"))
    found = _markers(img, scale=1.0)
    assert sorted(found) == [0, 1, 2, 3]
    quad = np.float32([found[m.id].mean(axis=0) for m in T.markers.items])
    # Marker centres span (186-8) x (273-8) mm of the 210 x 297 mm sheet.
    sheet_area = cv2.contourArea(quad) * (210 * 297) / (178 * 265)
    assert sheet_area < 0.08 * img.shape[0] * img.shape[1]
