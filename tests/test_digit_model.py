"""The committed digit model: loads on the kit's runtime, is int8 end to end and belongs to its card."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest

from tpskit.edge.reader import digit_model
from tpskit.edge.reader.digit_model import CLASSES, EMPTY, load_digit_model, model_version
from tpskit.edge.reader.normalise import batch_to_model_input
from tpskit.models import DIGITS_CARD, DIGITS_MODEL
from tpskit.sheets import box_dataset
from tpskit.sheets.handwriting import Glyph


@pytest.fixture(scope="module")
def model() -> digit_model.LiteRTDigitModel:
    return load_digit_model()


@pytest.fixture(scope="module")
def card() -> dict:
    return json.loads(DIGITS_CARD.read_text())


@pytest.fixture(scope="module")
def normal_boxes() -> tuple[np.ndarray, np.ndarray]:
    return box_dataset.validation_boxes("normal")


def test_committed_model_is_int8_end_to_end_and_small(model):
    assert model.input_dtype == np.int8 and model.output_dtype == np.int8
    assert DIGITS_MODEL.stat().st_size <= 400 * 1024


def test_model_file_is_the_one_its_card_describes(card):
    data = DIGITS_MODEL.read_bytes()
    assert card["sha256"] == hashlib.sha256(data).hexdigest()
    assert card["size_bytes"] == len(data)
    assert card["classes"] == list(CLASSES)
    assert card["data"]["sha256"] == "0217e13bd0668deb198aa7d305edbf0331eb89f8a6e7dd226e03d1aa3a9bd4ef"
    assert model_version() == "digits-" + card["sha256"][:12]


def test_int8_accuracy_on_rebuilt_validation_boxes_matches_the_card(model, card, normal_boxes):
    x, y = normal_boxes
    assert len(y) == card["validation"]["normal"]["n"]
    probs = model.predict(x)
    assert probs.shape == (len(y), len(CLASSES)) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    acc = float((probs.argmax(axis=1) == y).mean()) * 100
    assert abs(acc - card["validation"]["normal"]["int8_accuracy_pct"]) <= 0.3


def test_misread_boxes_keep_the_true_digit_as_likely_as_the_card_says(model, card, normal_boxes):
    # The reader's checks can only repair a misread box if the true digit keeps some probability.
    x, y = normal_boxes
    probs = model.predict(x)
    wrong = probs.argmax(axis=1) != y
    p_true = probs[np.arange(len(y)), y]
    tail = card["validation"]["normal"]["int8_tail"]
    assert int((wrong & (p_true < 1e-3)).sum()) <= round(tail["errors_p_true_below_1e-3"] * tail["errors"]) + 1
    assert int((wrong & (probs.max(axis=1) > 0.999)).sum()) <= tail["wrong_with_p_above_0.999"] + 1


def test_accuracy_on_writers_never_trained_on_matches_the_card(model, card):
    # Officer-style handwriting from held-out writers and constructions (tpskit.sheets.officer_digits).
    x, y = box_dataset.held_out_officer_boxes("normal")
    held_out = card["officers"]["held_out"]["normal"]
    assert len(y) == held_out["n"]
    probs = model.predict(x)
    acc = float((probs.argmax(axis=1) == y).mean()) * 100
    assert abs(acc - held_out["int8_accuracy_pct"]) <= 0.3
    wrong = probs.argmax(axis=1) != y
    assert int((wrong & (probs.max(axis=1) > 0.999)).sum()) <= held_out["int8_tail"]["wrong_with_p_above_0.999"] + 1


@pytest.mark.parametrize("kind", ["blank", "dash", "x"])
def test_empty_box_is_read_as_empty_never_as_one(model, kind):
    rng = np.random.default_rng(99)
    crops = [box_dataset.render_box(Glyph.empty(kind), rng, "normal") for _ in range(40)]
    pred = model.predict(batch_to_model_input(crops)).argmax(axis=1)
    assert not (pred == 1).any()
    assert (pred == EMPTY).mean() >= 0.95


def test_batches_of_changing_size_give_the_same_answers(model):
    x, _ = box_dataset.validation_boxes("clean", copies=1)
    x = x[:60]
    whole = model.predict(x)
    parts = np.concatenate([model.predict(x[:7]), model.predict(x[7:64]), model.predict(x[:0])])
    np.testing.assert_allclose(whole, parts, atol=1e-6)


def test_missing_runtime_names_both_packages(monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", None)
    with pytest.raises(digit_model.DigitModelError, match=r"ai-edge-litert.*tflite-runtime"):
        load_digit_model()


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(digit_model.DigitModelError, match="not found"):
        load_digit_model(tmp_path / "none.tflite")
