"""The digit data split, the ballpoint drawing and the reader/model normalisation contract."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from tpskit.edge.reader.normalise import BOX_PX_PER_MM, MODEL_SIZE, batch_to_model_input, box_to_model_input
from tpskit.sheets import digits_data
from tpskit.sheets.handwriting import EMPTY_KINDS, Glyph, InkStyle, draw_glyph, random_style

P = BOX_PX_PER_MM


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray]:
    return digits_data.load_validation_digits()


def _box_photo(glyph: Glyph, style: InkStyle, shift_mm=(0.0, 0.0), line_mm=0.4, seed=0) -> np.ndarray:
    """A 9.5 x 11 mm printed box with `glyph` written in it, cropped like the reader (shifted)."""
    rng = np.random.default_rng(seed)
    page = np.full((int(20 * P), int(20 * P), 3), 0.93, np.float32)
    x, y, w, h = 5 * P, 4 * P, 9.5 * P, 11 * P
    cv2.rectangle(page, (int(x), int(y)), (int(x + w) - 1, int(y + h) - 1), (0.1, 0.1, 0.1),
                  max(1, round(line_mm * P)))
    draw_glyph(page, (x, y, w, h), glyph, rng, style, px_per_mm=P)
    gray = cv2.cvtColor((page * 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
    sx, sy = round(shift_mm[0] * P), round(shift_mm[1] * P)
    return gray[int(y) + sy : int(y + h) + sy, int(x) + sx : int(x + w) + sx]


def test_shipped_validation_digits_are_the_checksummed_stratified_thousand(split):
    images, labels = split
    assert images.shape == (1000, 28, 28) and images.dtype == np.uint8 and labels.shape == (1000,)
    assert np.array_equal(np.bincount(labels, minlength=10) >= 85, np.ones(10, bool))
    assert digits_data.file_sha256(digits_data.VALIDATION_FILE) == digits_data.VALIDATION_SHA256


def test_refuses_validation_digits_with_wrong_checksum(tmp_path):
    bad = tmp_path / "digits.npz"
    shutil.copy(digits_data.VALIDATION_FILE, bad)
    with open(bad, "r+b") as f:
        f.seek(-10, 2)
        f.write(b"0123456789")
    with pytest.raises(digits_data.DigitsDataError, match="sha256"):
        digits_data.load_validation_digits(bad)


def test_missing_validation_digits_name_the_file_to_restore(tmp_path):
    with pytest.raises(digits_data.DigitsDataError, match="ships with the repository"):
        digits_data.load_validation_digits(tmp_path / "nope.npz")


def test_blank_glyph_leaves_the_page_untouched():
    page = np.ones((80, 80, 3), np.float32)
    draw_glyph(page, (10, 10, 57, 66), Glyph.empty("blank"), np.random.default_rng(0), InkStyle())
    assert np.all(page == 1.0)


def test_blue_ballpoint_digit_darkens_the_box_in_blue(split):
    page = np.ones((100, 100, 3), np.float32)
    draw_glyph(page, (20, 15, 57, 66), Glyph.digit(split[0][0], split[1][0]),
               np.random.default_rng(0), InkStyle(ink_bgr=(0.7, 0.3, 0.1)))
    inked = page.min(axis=2) < 0.6
    assert inked.sum() > 50
    assert inked[15:81, 20:77].sum() > 0.9 * inked.sum()  # drawn where the box is
    b, g, r = (page[inked][:, i].mean() for i in range(3))
    assert b > g > r  # multiplicative blue ink keeps the blue channel brightest


@pytest.mark.parametrize("kind", EMPTY_KINDS[1:])
def test_empty_box_marks_draw_strokes(kind):
    page = np.ones((100, 100, 3), np.float32)
    draw_glyph(page, (20, 15, 57, 66), Glyph.empty(kind), np.random.default_rng(1), InkStyle())
    assert (page.min(axis=2) < 0.6).sum() > 20


def test_random_styles_cover_blue_and_black_pens():
    rng = np.random.default_rng(0)
    styles = [random_style(rng, "normal") for _ in range(200)]
    blue = sum(s.ink_bgr[0] > s.ink_bgr[2] + 0.2 for s in styles)
    assert 50 < blue < 180
    assert all(0.5 <= s.scale <= 0.95 for s in styles)


@pytest.mark.parametrize("shift_mm", [(0.0, 0.0), (0.7, 0.7), (-0.7, 0.4), (0.3, -0.7)])
@pytest.mark.parametrize("line_mm", [0.2, 0.6])
def test_empty_box_normalises_to_no_ink_despite_shifted_lines(shift_mm, line_mm):
    ink = box_to_model_input(_box_photo(Glyph.empty("blank"), InkStyle(), shift_mm, line_mm))
    assert ink.shape == (MODEL_SIZE, MODEL_SIZE) and ink.dtype == np.uint8
    assert (ink > 64).sum() <= 6


def test_blue_and_black_digits_both_come_out_as_strong_ink(split):
    glyph = Glyph.digit(split[0][0], split[1][0])
    blue = box_to_model_input(_box_photo(glyph, InkStyle(ink_bgr=(0.75, 0.45, 0.25), density=0.7)))
    black = box_to_model_input(_box_photo(glyph, InkStyle(ink_bgr=(0.1, 0.1, 0.1))))
    for ink in (blue, black):
        assert ink.max() == 255 and (ink > 128).sum() > 30
    assert abs(int((blue > 128).sum()) - int((black > 128).sum())) < 25


def test_digit_touching_the_line_keeps_its_strokes(split):
    glyph = Glyph.digit(split[0][0], split[1][0])
    centred = box_to_model_input(_box_photo(glyph, InkStyle(scale=0.8)))
    touching = box_to_model_input(_box_photo(glyph, InkStyle(scale=0.8, offset=(0.0, 0.12))))
    assert (touching > 128).sum() > 0.7 * (centred > 128).sum()


def test_batch_matches_single_box_normalisation(split):
    crops = [_box_photo(Glyph.digit(split[0][i], split[1][i]), InkStyle(), seed=i)
             for i in range(5)]
    crops.append(cv2.resize(crops[0], (66, 78)))  # the larger box size in the same batch
    crops.append(crops[1].astype(np.float32) / 255.0)  # float crops are accepted too
    batch = batch_to_model_input(crops)
    assert batch.shape == (7, MODEL_SIZE, MODEL_SIZE) and batch.dtype == np.uint8
    for crop, ink in zip(crops, batch, strict=True):
        assert np.array_equal(box_to_model_input(crop), ink)
