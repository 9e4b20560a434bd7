"""The 24 field-like captures (another camera simulation than ours: portrait 12 MP, the sheet filling the
frame, bright or clipped paper, lamp gradients): a person reads every one of them, so must the kit.

Photos and truth are committed copies (tests/data/field-captures/README.md); nothing here reads ../shared.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tpskit.edge.reader.digit_model import load_digit_model
from tpskit.edge.reader.pipeline import ReadOptions, read_sheet
from tpskit.forms import load_templates

CAPTURES = Path(__file__).parent / "data" / "field-captures"
TRUTH = json.loads((CAPTURES / "truth.json").read_text())


@pytest.fixture(scope="module")
def reader():
    templates, model = load_templates(), load_digit_model()
    return lambda entry: read_sheet((CAPTURES / entry["file"]).read_bytes(), templates, model,
                                    ReadOptions(expected_tps=entry["tps"]), photo=entry["file"])


def test_the_committed_copies_are_the_24_captures_of_both_severities_and_templates():
    assert len(TRUTH) == 24 and all((CAPTURES / e["file"]).stat().st_size > 100_000 for e in TRUTH)
    assert {e["severity"] for e in TRUTH} == {"normal", "hard"}
    assert {e["template"] for e in TRUTH} == {"c-hasil-ppwp-2024", "c-hasil-kwk-4"}


@pytest.mark.parametrize("entry", TRUTH, ids=[e["file"] for e in TRUTH])
def test_field_capture_is_read_without_refusal_and_nothing_wrong_is_reported_ok(entry, reader):
    r = reader(entry)
    assert r.status != "rejected", (r.reason, r.gate)
    assert (r.template, r.tps) == (entry["template"], entry["tps"])
    wrong_but_ok = {n: (f.value, entry["values"][n]) for n, f in r.fields.items()
                    if f.status != "review" and f.value != entry["values"][n]}
    assert not wrong_but_ok
    # Whatever is unsure waits for the officer, and it is never most of the sheet.
    assert sum(f.value == entry["values"][n] for n, f in r.fields.items()) >= len(r.fields) - 3
