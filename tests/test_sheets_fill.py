"""Consistent random results, and sheets filled in the officers' habits with validation digits only."""

from __future__ import annotations

import numpy as np
import pytest

from tpskit.forms import Template, load_templates
from tpskit.sheets import digits_data, fill
from tpskit.sheets.fill import FilledSheet, fill_sheet, random_result

TPS = "3201012001001"
TEMPLATES = {t.id: t for t in load_templates().values()}


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray]:
    return digits_data.load_validation_digits()


def _holds_everything(t: Template, values: dict[str, int], registered: int | None = None) -> list[str]:
    broken = [c.id for c in t.checks if not c.holds(values)]
    for f in t.fields:
        v = values[f.name]
        if not 0 <= v <= f.capacity or (f.max_value is not None and v > f.max_value):
            broken.append(f"{f.name}={v}")
        if registered is not None and f.max_value is not None and v > registered:
            broken.append(f"{f.name}={v} > registered {registered}")
    return broken


@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
def test_random_result_satisfies_every_check_and_bound_over_many_seeds(template_id):
    t = TEMPLATES[template_id]
    for seed in range(300):
        rng = np.random.default_rng(seed)
        registered = int(rng.integers(100, 300)) if seed % 3 == 0 else None
        values = random_result(t, rng, registered_voters=registered)
        assert set(values) == {f.name for f in t.fields}
        assert not _holds_everything(t, values, registered), (seed, values)


def test_random_results_look_like_polling_stations():
    t = TEMPLATES["c-hasil-ppwp-2024"]
    results = [random_result(t, np.random.default_rng(s)) for s in range(200)]
    assert all(150 <= r["dpt"] <= 300 for r in results)
    turnout = [r["pengguna_total"] / r["pemilih_total"] for r in results]
    assert min(turnout) > 0.5 and max(turnout) <= 1.0
    # Minor categories are often zero; candidates are not split evenly.
    assert sum(r["dptb"] == 0 for r in results) > 40 and sum(r["suara_tidak_sah"] == 0 for r in results) > 40
    uneven = [max(r[f"paslon_0{i}"] for i in (1, 2, 3)) - min(r[f"paslon_0{i}"] for i in (1, 2, 3)) for r in results]
    assert np.median(uneven) > 15


def test_random_result_solves_a_template_it_has_never_seen():
    base = TEMPLATES["c-hasil-kwk-4"].model_dump(by_alias=True)
    box = base["fields"][0]["boxes"][0]
    names = ["total_a", "part_x", "part_y", "part_z", "cap", "used"]
    base["fields"] = [dict(name=n, label=n, section="S", digits=2 if n == "part_z" else 3,
                           boxes=[box] * (2 if n == "part_z" else 3),
                           max_value=400 if n == "cap" else None) for n in names]
    base["checks"] = [
        {"id": "split", "sum": ["part_x", "part_y", "part_z"], "equals": ["total_a"]},
        {"id": "used_le_cap", "sum": ["used"], "at_most": ["cap"]},
        {"id": "total_is_used", "sum": ["total_a"], "equals": ["used"]},
    ]
    t = Template.model_validate(base)
    for seed in range(100):
        values = random_result(t, np.random.default_rng(seed))
        assert not _holds_everything(t, values), values
        assert values["part_z"] <= 99


def _fill(t: Template, split, severity="normal", seed=1) -> FilledSheet:
    rng = np.random.default_rng(seed)
    return fill_sheet(t, TPS, random_result(t, rng), rng, split, severity)


def test_fill_sheet_draws_only_the_validation_digits_it_is_given(split, monkeypatch):
    drawn = []
    real = fill.draw_glyph

    def spy(page, box, glyph, rng, style, **kw):
        if glyph.kind == "digit":
            drawn.append(glyph)
        return real(page, box, glyph, rng, style, **kw)

    monkeypatch.setattr(fill, "draw_glyph", spy)
    sheet = _fill(TEMPLATES["c-hasil-ppwp-2024"], split)
    assert drawn
    for g in drawn:  # the very arrays of the validation split, not copies of anything else
        assert np.shares_memory(g.image, split[0])
    recorded = [b for f in sheet.truth["fields"].values() for b in f["boxes"] if b["mark"] == "digit"]
    assert len(recorded) == len(drawn)
    for b, g in zip(recorded, drawn, strict=True):
        assert split[1][b["val_index"]] == b["digit"] == g.label
        assert np.array_equal(g.image, split[0][b["val_index"]])


@pytest.mark.parametrize("template_id", sorted(TEMPLATES))
def test_truth_boxes_spell_each_value_right_aligned_with_leading_habits(split, template_id):
    t = TEMPLATES[template_id]
    for seed in range(4):
        sheet = _fill(t, split, seed=seed)
        assert sheet.page.dtype == np.float32 and sheet.page.min() >= 0 and sheet.page.max() <= 1
        for f in t.fields:
            entry = sheet.truth["fields"][f.name]
            boxes = entry["boxes"]
            assert len(boxes) == f.digits
            digits = "".join(str(b["digit"]) for b in boxes if b["mark"] == "digit")
            assert int(digits) == entry["value"] == sheet.values[f.name]
            marks = [b["mark"] for b in boxes]
            first_digit = marks.index("digit")
            assert all(m != "digit" for m in marks[:first_digit])  # empty marks only lead
            assert marks[-1] == "digit"  # zero is written as 0 in the last box


def test_bubbles_are_blackened_where_the_truth_says(split):
    t = TEMPLATES["c-hasil-ppwp-2024"]
    sheet = _fill(t, split, severity="hard", seed=5)
    ppm = sheet.px_per_mm
    gray = sheet.page.mean(axis=2)
    filled_means, empty_means = [], []
    slips = set()
    for f in t.fields:
        if f.bubbles is None:
            assert "bubbles" not in sheet.truth["fields"][f.name]
            continue
        rows = sheet.truth["fields"][f.name]["bubbles"]
        assert len(rows) == f.digits
        for row, centres, box in zip(rows, f.bubbles.rows, sheet.truth["fields"][f.name]["boxes"], strict=True):
            assert row["written"] == box["digit"]
            slips.add(row["slip"])
            if row["written"] is None:
                assert row["filled"] == []
            elif row["slip"] is None:
                assert row["filled"] == [row["written"]]
            for d, (cx, cy) in enumerate(centres):
                r = int(f.bubbles.d_mm * ppm * 0.25)
                x, y = round(cx * ppm), round(cy * ppm)
                m = float(gray[y - r:y + r, x - r:x + r].mean())
                if d in row["filled"] and d not in row["partial"]:
                    filled_means.append(m)
                elif d not in row["filled"]:
                    empty_means.append(m)
    assert filled_means and empty_means
    assert max(filled_means) < min(empty_means) - 0.1


def test_bubble_slips_follow_severity():
    rng = np.random.default_rng(0)
    clean = [fill._bubble_row(3, 0.0, rng)["slip"] for _ in range(2000)]
    hard = [fill._bubble_row(3, 1.0, rng)["slip"] for _ in range(2000)]
    assert {"forgotten", "wrong", "extra"}.isdisjoint(clean)
    assert {"partial", "forgotten", "wrong", "extra"} <= set(hard)
    assert sum(s is not None for s in hard) > 3 * sum(s is not None for s in clean)


def test_form_fill_writes_numbered_photos_with_their_truth(tmp_path):
    import json

    import cv2

    from tpskit.cli import main

    out = tmp_path / "sheets"
    assert main(["form", "fill", "KWK", "--tps", TPS, "--count", "2", "--severity", "clean", "--seed", "3",
                 "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["0000.jpg", "0000.truth.json", "0001.jpg", "0001.truth.json"]
    t = TEMPLATES["c-hasil-kwk-4"]
    for i in range(2):
        truth = json.loads((out / f"{i:04d}.truth.json").read_text())
        assert truth["template"] == t.id and truth["tps"] == TPS and truth["reason"] is None
        assert all(c.holds(truth["values"]) for c in t.checks)
        img = cv2.imread(str(out / f"{i:04d}.jpg"))
        assert img.shape == (3040, 4056, 3)
    again = tmp_path / "again"
    assert main(["form", "fill", "KWK", "--tps", TPS, "--count", "1", "--severity", "clean", "--seed", "3",
                 "-o", str(again)]) == 0
    assert (again / "0000.truth.json").read_text() == (out / "0000.truth.json").read_text()  # reproducible
