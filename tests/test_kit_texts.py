"""The officer's catalogue (edge/texts.py): every message has a key, both languages and a level, its
placeholders are filled, and the whole table is plain data with lights and buzzer for a page to serve."""

from __future__ import annotations

import json

import pytest

from tpskit.edge import texts
from tpskit.firmware.controls import SIGNALS, Signal
from tpskit.officer import OfficerMessage


def test_every_entry_has_a_unique_key_and_both_languages():
    keys = [row["key"] for row in texts.catalogue()]
    assert len(keys) == len(set(keys)) == len(texts.ENTRIES)
    for t in texts.ENTRIES.values():
        assert t.id.strip() and t.en.strip() and t.level in ("info", "action", "error"), t.key


def test_placeholders_are_the_same_in_both_languages_except_the_technicians_english_detail():
    import string

    for t in texts.ENTRIES.values():
        names = [{n for _, n, _, _ in string.Formatter().parse(x) if n} for x in (t.id, t.en)]
        if t.key == "camera_failed":  # the camera's diagnosis is for the technician, in English
            assert names == [set(), {"detail"}]
        elif t.key.startswith("refused."):  # corners and sides are named in each language
            assert {n.removesuffix("_id") for n in names[0]} == names[1], t.key
        else:
            assert names[0] == names[1], t.key


def test_the_catalogue_is_json_with_the_lights_and_buzzer_of_each_signal():
    rows = json.loads(json.dumps(texts.catalogue()))
    ready = next(r for r in rows if r["key"] == "ready")
    assert ready["signal"] == "ready" and ready["lights"] == {"green": "on", "amber": "off", "red": "off"}
    assert ready["buzzer"]["pattern"] == str(SIGNALS[Signal.READY].beep)
    review = next(r for r in rows if r["key"] == "review")
    assert review["params"] == ["fields"] and review["level"] == "action"
    assert next(r for r in rows if r["key"] == "sign_failed")["signal"] is None  # the state's own light


def test_a_message_made_from_an_entry_carries_its_key_and_fills_both_languages():
    m = texts.review(["Pasangan calon nomor urut 01", "Jumlah seluruh suara sah"])
    assert isinstance(m, OfficerMessage) and m.key == "review" and m.level == "action"
    assert "(Pasangan calon nomor urut 01, Jumlah seluruh suara sah)" in m.id
    assert "(Pasangan calon nomor urut 01, Jumlah seluruh suara sah)" in m.en
    assert m.text == f"{m.id}\n{m.en}"


def test_a_refusal_names_the_corner_in_each_language():
    m = texts.refusal("marker_missing", corner="bottom-right")
    assert m.key == "refused.marker_missing" and "kanan bawah" in m.id and "bottom-right" in m.en


def test_an_unknown_refusal_reason_has_no_text():
    with pytest.raises(KeyError):
        texts.refusal("not_a_reason")
