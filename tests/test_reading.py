"""The typed reading from the reader to the signer (edge/reading.py): the officer's correction keeps the
OCR original and re-runs the checks, the JSON form round-trips, and what cannot be signed is refused."""

from __future__ import annotations

import pydantic
import pytest
from conftest import PPWP, make_reading, reading_of

from tpskit.edge.reader.types import CheckResult, FieldReading, ReadingResult
from tpskit.edge.reading import CorrectionError, Reading, ReadingError
from tpskit.forms import load_templates

TPS = "3201012001001"
TEMPLATE = next(t for t in load_templates().values() if t.id == PPWP)


def _review() -> Reading:
    r = make_reading(TPS, (60, 50, 40))
    r["fields"]["paslon_01"].update(value=59, confidence=0.61, status="review")
    r["status"] = "review"
    return Reading.from_dict(r).rechecked(TEMPLATE)


def test_a_correction_keeps_the_ocr_original_and_the_checks_decide_the_status():
    before = _review()
    assert before.status == "review" and before.needs_review() == ["paslon_01"]
    assert not next(c for c in before.checks if c.id == "suara_sah").passed
    after = before.corrected(TEMPLATE, "paslon_01", 60, 250)
    assert after.fields["paslon_01"].model_dump() == {"value": 60, "status": "corrected", "confidence": 0.61,
                                                      "ocr_value": 59}
    assert after.status == "ok" and after.needs_review() == [] and all(c.passed for c in after.checks)
    assert before.fields["paslon_01"].value == 59  # a correction is a new reading; the old one is untouched


def test_a_second_correction_keeps_the_first_ocr_original_and_a_wrong_one_sends_it_back_to_review():
    once = _review().corrected(TEMPLATE, "paslon_01", 61, 250)
    assert once.status == "review"  # 61 breaks the sum of valid votes
    twice = once.corrected(TEMPLATE, "paslon_01", 60, 250)
    assert (twice.fields["paslon_01"].value, twice.fields["paslon_01"].ocr_value, twice.status) == (60, 59, "ok")


@pytest.mark.parametrize(("name", "value", "why"), [("nope", 1, "no field 'nope'"),
                                                      ("paslon_01", 1000, "from 0 to 999"),
                                                      ("paslon_01", -1, "from 0 to 999")])
def test_a_correction_outside_the_form_or_its_bounds_is_refused(name, value, why):
    with pytest.raises(CorrectionError, match=why):
        _review().corrected(TEMPLATE, name, value, 250)


def test_the_json_form_round_trips_and_ignores_the_readers_diagnostics():
    raw = make_reading(TPS)
    raw["fields"]["dpt"]["boxes"] = [{"digit": 2, "p": 0.99, "alt": None, "alt_p": 0.0}]
    reading = Reading.from_dict({**raw, "timings_ms": {"total": 1.0}, "gate": {"glare": 0.0}})
    assert Reading.from_dict(reading.to_dict()) == reading
    assert "boxes" not in reading.to_dict()["fields"]["dpt"] and "original" not in reading.to_dict()["fields"]["dpt"]


def test_a_reading_is_frozen():
    with pytest.raises(pydantic.ValidationError):
        reading_of(TPS).status = "review"  # type: ignore[misc]


@pytest.mark.parametrize(("change", "why"), [({"status": "rejected"}, "status 'rejected' cannot be signed"),
                                            ({"tps": None}, "tps"),
                                            ({"fields": {"dpt": {"value": "many"}}}, "fields.dpt.value")])
def test_what_cannot_be_signed_is_refused_with_where(change, why):
    with pytest.raises(ReadingError, match=why):
        Reading.from_dict({**make_reading(TPS), **change})


def test_from_the_readers_result_with_the_model_that_read_it():
    fields = {"dpt": FieldReading("dpt", 200, 0.99, "ok"),
              "paslon_01": FieldReading("paslon_01", 61, 0.7, "resolved_by_checks", ocr_value=67)}
    result = ReadingResult(photo="x.jpg", template=PPWP, form_code="PPWP", tps=TPS, status="review",
                           fields=fields, checks=[CheckResult("suara_sah", False)])
    reading = Reading.from_result(result, "digits-7")
    assert (reading.model, reading.status, reading.checks[0].passed) == ("digits-7", "review", False)
    assert reading.fields["paslon_01"].ocr_value == 67  # what the digits said, shown, not signed


def _slip() -> Reading:
    """Every field read, but the sheet's valid votes were written one too high: suara_sah fails."""
    r = make_reading(TPS, (60, 50, 40))
    r["fields"]["suara_sah"]["value"] = 151
    r["status"] = "review"
    return Reading.from_dict(r).rechecked(TEMPLATE)


def test_the_officer_slip_mark_is_needed_to_confirm_a_failing_check_and_falls_when_the_checks_pass():
    slip = _slip()
    assert "suara_sah" in slip.failing_checks()
    assert not slip.confirmable()
    marked = slip.with_slip(True)
    assert marked.officer_slip and marked.confirmable()
    assert not _review().corrected(TEMPLATE, "paslon_01", 60, 250).with_slip(True).officer_slip  # nothing fails
    fixed = marked.corrected(TEMPLATE, "suara_sah", 150, 250)
    assert fixed.status == "ok" and not fixed.officer_slip


def test_the_signed_payload_carries_the_officer_slip_and_the_district_refuses_a_slip_without_a_failing_check():
    from tpskit.edge.submit import build_payload
    from tpskit.envelope import recheck_arithmetic

    kw = {"kit_id": "kit-a", "tps": TPS, "seq": 1, "submission_id": "5d0e8b2a-0000-4000-8000-000000000001",
          "evidence_sha256": "0" * 64, "evidence_bytes": 10}
    signed = build_payload(_slip().with_slip(True), **kw)
    assert signed.officer_slip and signed.status == "review" and recheck_arithmetic(signed, TEMPLATE) == []
    assert not build_payload(_slip(), **kw).officer_slip
    forged = build_payload(reading_of(TPS, status="review"), **kw).model_copy(update={"officer_slip": True})
    assert any("officer_slip" in p for p in recheck_arithmetic(forged, TEMPLATE))
