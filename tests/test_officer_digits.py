"""Officers' digit styles: each named shape is really drawn, writers are reproducible, the split holds."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tpskit.sheets import officer_digits as od

FAMILIES = ("a", "b")


def _draw(name: str, family: str, seed: int = 0, **kw) -> np.ndarray:
    kw.setdefault("pen_rel", 0.05)
    return od.draw_style(name, family, od.Shape(), np.random.default_rng(seed), **kw)


def _holes(img: np.ndarray) -> list[tuple[float, float]]:
    """Centres (x, y as fractions of the ink's bounding box) of the enclosed paper regions."""
    m = (img > 110).astype(np.uint8)
    ys, xs = np.nonzero(m)
    contours, hier = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    out = []
    for c, h in zip(contours, hier[0] if hier is not None else [], strict=False):
        if h[3] >= 0 and cv2.contourArea(c) >= 4:
            cx, cy = c[:, 0, 0].mean(), c[:, 0, 1].mean()
            out.append(((cx - xs.min()) / (xs.max() - xs.min() + 1), (cy - ys.min()) / (ys.max() - ys.min() + 1)))
    return out


def _extent(img: np.ndarray, y0: float, y1: float) -> tuple[int, int]:
    """Leftmost and rightmost ink column within a band of the ink's height (fractions)."""
    ys, xs = np.nonzero(img > 110)
    top, h = ys.min(), ys.max() - ys.min() + 1
    band = (ys >= top + y0 * h) & (ys <= top + y1 * h)
    return int(xs[band].min()), int(xs[band].max())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", list(od.STYLES))
def test_every_named_style_draws_a_digit_sized_image(name, family):
    img = _draw(name, family)
    assert img.shape == (od.SIZE, od.SIZE) and img.dtype == np.uint8
    ys, _xs = np.nonzero(img > 110)
    assert 0.6 * od.SIZE <= ys.max() - ys.min() + 1 <= 0.8 * od.SIZE  # MNIST-like framing
    assert len(ys) > 60


@pytest.mark.parametrize("family", FAMILIES)
def test_flagged_one_has_a_long_flag_and_a_stick_one_has_none(family):
    h = 0.72 * od.SIZE
    for name, has_flag in (("1-stick", False), ("1-flagged", True), ("1-flagged-foot", True)):
        img = _draw(name, family)
        top_left, _ = _extent(img, 0.0, 0.3)
        mid_left, _ = _extent(img, 0.45, 0.8)
        # A flag reaches left of the stem by a fifth of the height or more; a stick does not.
        assert (mid_left - top_left > 0.2 * h) == has_flag, name


@pytest.mark.parametrize("family", FAMILIES)
def test_footed_one_has_a_foot_on_both_sides_of_the_stem(family):
    plain, footed = _draw("1-flagged", family), _draw("1-flagged-foot", family)
    lo, hi = _extent(footed, 0.95, 1.0)
    mid_lo, mid_hi = _extent(footed, 0.6, 0.85)
    assert lo < mid_lo - 4 and hi > mid_hi + 4
    plo, phi = _extent(plain, 0.95, 1.0)
    assert phi - plo < hi - lo - 8


@pytest.mark.parametrize("family", FAMILIES)
def test_looped_two_has_a_loop_at_the_bottom_and_a_plain_two_none(family):
    assert _holes(_draw("2-plain", family)) == []
    loops = _holes(_draw("2-looped", family))
    assert len(loops) == 1 and loops[0][1] > 0.6  # in the bottom part of the digit


@pytest.mark.parametrize("family", FAMILIES)
def test_fours_are_closed_or_open_as_named(family):
    assert len(_holes(_draw("4-closed", family))) == 1
    assert _holes(_draw("4-open", family)) == []
    one_stroke = _draw("4-open-one-stroke", family)
    assert _holes(one_stroke) == []
    # Written in one stroke, it still has a stem running below the cup, like a 9.
    lo, _hi = _extent(one_stroke, 0.85, 1.0)
    assert lo > 0.4 * od.SIZE * 0.72 * od.Shape().w


@pytest.mark.parametrize("family", FAMILIES)
def test_crossed_seven_has_a_bar_through_its_stem(family):
    def widest_mid_run(img: np.ndarray) -> int:
        ys, _ = np.nonzero(img > 110)
        top, h = ys.min(), ys.max() - ys.min() + 1
        rows = img[top + int(0.4 * h) : top + int(0.6 * h)] > 110
        return int(rows.sum(axis=1).max())

    assert widest_mid_run(_draw("7-crossed", family)) > 2 * widest_mid_run(_draw("7-plain", family))


def test_felt_tip_ink_fills_the_small_loops_of_an_eight():
    tight = od.Shape(loop=0.55)
    biro = od.draw_style("8-loops", "a", tight, np.random.default_rng(0), pen_rel=0.05)
    felt = od.draw_style("8-loops", "a", tight, np.random.default_rng(0), pen_rel=0.16, bleed_rel=0.1)
    assert len(_holes(biro)) == 2
    assert _holes(felt) == []


def test_a_writer_is_reproducible_from_its_seed():
    a, b = od.held_out_hand(17), od.held_out_hand(17)
    assert a == b
    xa, ya = a.digits(2)
    xb, yb = b.digits(2)
    assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
    assert list(ya) == [d for d in range(10) for _ in range(2)]
    assert not np.array_equal(xa, od.held_out_hand(18).digits(2)[0])
    rng1, rng2 = np.random.default_rng(3), np.random.default_rng(3)
    assert a.ink_style(rng1, "normal") == b.ink_style(rng2, "normal")


def test_held_out_writers_never_appear_among_training_writers():
    train = [od.training_hand(s) for s in range(300)]
    held = [od.held_out_hand(s) for s in range(300)]
    assert {h.family for h in train} == {"a"} and {h.family for h in held} == {"b"}
    key = lambda h: (h.shape, h.slant, h.pen_mm, h.styles)  # noqa: E731
    assert not {key(h) for h in train} & {key(h) for h in held}
    # Even a training writer that happens to pick the same styles draws them with the other construction.
    t, h = od.training_hand(0), od.held_out_hand(0)
    assert not np.array_equal(t.digits(1)[0], h.digits(1)[0])


def test_writers_cover_every_named_style_and_both_pens():
    hands = [od.held_out_hand(s) for s in range(200)]
    used = {name for h in hands for name in h.styles}
    assert used == set(od.STYLES)
    felt = sum(h.felt_tip for h in hands)
    assert 30 < felt < 100
    assert all(h.pen_mm >= 0.8 for h in hands if h.felt_tip)


def test_officer_ink_style_keeps_the_drawn_pen_and_adds_no_mnist_habits():
    style = od.held_out_hand(3).ink_style(np.random.default_rng(0), "hard")
    assert style.keep_pen and not (style.one_flag or style.one_foot or style.seven_crossed or style.four_open)
    assert style.pen_mm == od.held_out_hand(3).pen_mm


def test_unknown_style_or_part_is_refused():
    with pytest.raises(ValueError, match="unknown style"):
        _draw("2-curly", "a")
    with pytest.raises(ValueError, match="part"):
        od.hand(1, "test")  # type: ignore[arg-type]


def test_sheet_filled_by_a_held_out_officer_uses_their_pen_and_digits():
    from tpskit.forms import load_templates
    from tpskit.sheets.fill import fill_sheet, random_result

    t = load_templates()[sorted(load_templates())[0]]
    h = od.held_out_hand(5)
    rng = np.random.default_rng(1)
    digits = h.digits(3)
    sheet = fill_sheet(t, "3201012001001", random_result(t, rng), rng, digits, "normal",
                       style=h.ink_style(rng, "normal"))
    idx = [b["val_index"] for f in sheet.truth["fields"].values() for b in f["boxes"] if b["mark"] == "digit"]
    assert idx and all(digits[1][i] == b for i, b in zip(idx, [
        b["digit"] for f in sheet.truth["fields"].values() for b in f["boxes"] if b["mark"] == "digit"], strict=True))
