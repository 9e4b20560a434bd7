"""The district dashboard, served by the district's code over a real broker and database, in a real headless
Chromium: its counts match the database after a burst of results and refusals, it updates live when a result
arrives, a result page shows the evidence photo reread by the kit's reader with the signed numbers drawn on
the rectified sheet, the downloads carry the same tables, and the pages pass the keyboard, label and
contrast basics. Screenshots are saved under test-artifacts/screens/."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import urllib.request

import pytest
from browser import attr_of, contrast_failures, screenshot, set_viewport, tab_stops, text_of, texts_of, unlabelled
from conftest import PPWP, TPS_CODES, RawKit, make_reading, wait_for
from district_burst import EXPECTED, burst_district, send

from tpskit.district.dashboard import Dashboard

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def district(tmp_path_factory):
    with burst_district(tmp_path_factory.mktemp("dashboard")) as burst:
        dash = Dashboard(burst.rig.district_cfg(), port=0).start()
        try:
            yield burst, dash
        finally:
            dash.stop()


def _get(dash, path: str) -> bytes:
    with urllib.request.urlopen(dash.url + path, timeout=30) as r:
        assert r.status == 200
        return r.read()


def _db(burst) -> sqlite3.Connection:
    return sqlite3.connect(burst.rig.district_cfg().database.url[len("sqlite:///"):])


def _db_counts(burst) -> dict[str, int]:
    """Straight from the tables: TPS with an accepted result, TPS with only refusals, the rest."""
    with _db(burst) as con:
        reported = {t for (t,) in con.execute("SELECT DISTINCT tps FROM results")}
        refused = {topic.split("/")[1] for (topic,) in con.execute("SELECT topic FROM rejections")} - reported
        n_refusals = con.execute("SELECT COUNT(*) FROM rejections").fetchone()[0]
    return {"reported": len(reported), "refused": len(refused),
            "not_reported": len(TPS_CODES) - len(reported) - len(refused), "refusals": n_refusals}


def _page_counts(chromium) -> dict[str, int]:
    return {el.get_attribute("data-status"): int(el.text)
            for el in chromium.find_elements("css selector", ".summary strong[data-status]")}


def test_dashboard_counts_match_the_database_after_a_burst_of_results_and_refusals(district, chromium):
    burst, dash = district
    set_viewport(chromium, 1280, 900)
    chromium.get(dash.url + "/")
    counts = _page_counts(chromium)
    db = _db_counts(burst)
    assert counts["refused"] == db["refused"] and counts["not_reported"] == db["not_reported"]
    assert sum(counts[s] for s in ("ok", "corrected", "slip", "review", "revoked")) == db["reported"]
    rows = {tr.get_attribute("data-tps"): tr.get_attribute("data-status")
            for tr in chromium.find_elements("css selector", "#tps-table tbody tr")}
    assert rows == {t: EXPECTED.get(t, "not_reported") for t in TPS_CODES}
    # The refused TPS says why, in words.
    refused_row = chromium.find_element("css selector", f'tr[data-tps="{TPS_CODES[2]}"]').text
    assert "signature" in refused_row or "another TPS" in refused_row
    chromium.get(dash.url + "/refusals")
    assert len(chromium.find_elements("css selector", "#refusals tbody tr")) == db["refusals"]
    screenshot(chromium, "dashboard-refusals")


def test_downloads_carry_the_same_tables_as_csv_and_json(district):
    burst, dash = district
    status = json.loads(_get(dash, "/download/status.json"))
    assert {r["tps"]: r["status"] for r in status} == {t: EXPECTED.get(t, "not_reported") for t in TPS_CODES}
    as_csv = list(csv.DictReader(io.StringIO(_get(dash, "/download/status.csv").decode())))
    assert [(r["tps"], r["status"]) for r in as_csv] == [(r["tps"], r["status"]) for r in status]
    refusals = json.loads(_get(dash, "/download/refusals.json"))
    assert len(refusals) == _db_counts(burst)["refusals"] and all(r["reason_words"] for r in refusals)
    tally = json.loads(_get(dash, "/download/tally.json?level=tps"))
    by_tps = {r["code"]: r for r in tally}
    # Counted TPS carry their votes; in review and unreported ones carry none, never zeros.
    assert by_tps[TPS_CODES[0]]["paslon_01"] == burst.votes[TPS_CODES[0]][0]
    assert by_tps[TPS_CODES[4]]["state"] == "review" and by_tps[TPS_CODES[4]]["paslon_01"] is None
    assert by_tps[TPS_CODES[8]]["state"] == "not_reported" and by_tps[TPS_CODES[8]]["paslon_01"] is None
    areas = json.loads(_get(dash, "/download/areas.json"))
    assert sum(a["tps_total"] for a in areas if a["level"] == "kecamatan") == len(TPS_CODES)
    history = json.loads(_get(dash, f"/download/history.json?tps={TPS_CODES[0]}"))
    assert [h["state"] for h in history].count("current") == 1
    assert {h["submission_id"] for h in history if h["state"] == "superseded"} == set(burst.superseded_sids)


def test_tally_page_shows_unreported_and_in_review_tps_as_such_never_as_zero(district, chromium):
    _, dash = district
    chromium.get(dash.url + "/tally?level=tps")
    row = chromium.find_element("css selector", f'#tally tr[data-code="{TPS_CODES[8]}"]')
    assert row.get_attribute("data-state") == "not_reported" and "not reported" in row.text
    review = chromium.find_element("css selector", f'#tally tr[data-code="{TPS_CODES[4]}"]')
    assert "in review" in review.text
    headers = [th.text for th in chromium.find_elements("css selector", "#tally thead th")]
    assert "Pasangan calon nomor urut 01" in headers  # the printed label, not paslon_01
    chromium.get(dash.url + "/tally?level=kecamatan")
    screenshot(chromium, "dashboard-tally")


def test_pages_have_labels_contrast_and_a_visible_keyboard_focus(district, chromium):
    burst, dash = district
    for path in ("/", "/tally", "/refusals", f"/tps/{TPS_CODES[0]}", f"/result/{burst.corrected_sid}"):
        chromium.get(dash.url + path)
        assert unlabelled(chromium) == [], path
        assert contrast_failures(chromium) == [], path
    chromium.get(dash.url + "/")
    stops = tab_stops(chromium, 8)
    assert stops[0]["text"] == "Skip to content"
    assert {s["tag"] for s in stops} >= {"A", "SELECT"}
    assert all(s["marked"] for s in stops), stops


def test_a_new_result_reaches_an_open_dashboard_without_reloading(district, chromium):
    burst, dash = district
    set_viewport(chromium, 1280, 900)
    chromium.get(dash.url + "/")
    wait_for(lambda: chromium.find_element("id", "live-status").text.startswith("live"), 15, "the event stream")
    live = chromium.find_element("id", "live")
    before = live.get_attribute("data-version")
    chromium.execute_script("window.__same_page = true")
    kit = RawKit(burst.rig.kit(5 if len(burst.rig.kits) > 5 else 4))
    try:
        tps = kit.cfg.kit.tps
        sid = send(kit, make_reading(tps, (40, 41, 42)), 10, "live")
        assert kit.wait_ack(sid).status == "accepted"
    finally:
        kit.close()
    wait_for(lambda: live.get_attribute("data-version") != before
             and attr_of(chromium, f'tr[data-tps="{tps}"]', "data-status") == "ok", 15,
             "the page to show the new result")
    assert chromium.execute_script("return window.__same_page === true")  # updated in place, not reloaded
    screenshot(chromium, "dashboard")


def _sheet_reading(tps: str, seed: int) -> tuple[dict, bytes]:
    """A photographed, filled PPWP sheet and the reading of exactly its values."""
    from tpskit.demo import make_photo
    from tpskit.forms import load_templates

    jpeg, values = make_photo("PPWP", tps, seed)
    template = next(t for t in load_templates().values() if t.id == PPWP)
    reading = {"photo": "sheet.jpg", "template": PPWP, "form_code": "PPWP", "tps": tps, "status": "ok",
               "fields": {n: {"value": v, "confidence": 0.999, "status": "ok"} for n, v in values.items()},
               "checks": [{"id": c.id, "passed": c.holds(values)} for c in template.checks]}
    reading["fields"]["paslon_02"].update(status="corrected", ocr_value=(values["paslon_02"] + 1) % 10)
    return reading, jpeg


def test_result_page_draws_the_signed_numbers_on_the_reread_sheet_with_signature_history_and_corrections(
        district, chromium):
    burst, dash = district
    kit = RawKit(burst.rig.kit(0))
    try:
        reading, jpeg = _sheet_reading(kit.cfg.kit.tps, seed=7)
        sid, compact = kit.signed(reading, jpeg, seq=20)
        kit.send(sid, compact, jpeg)
        assert kit.wait_ack(sid).status == "accepted"
    finally:
        kit.close()
    set_viewport(chromium, 1280, 1000)
    chromium.get(f"{dash.url}/result/{sid}")
    # The reader runs as a subprocess; the page updates itself when it is done.
    # Each read is one script: the page may refresh itself between a find and a read.
    wait_for(lambda: texts_of(chromium, "svg.overlay text")
             or "could not be reread" in (text_of(chromium, "#sheet") or ""), 120, "the reread")
    marks = texts_of(chromium, "svg.overlay text")
    assert marks, text_of(chromium, "#sheet")
    assert sorted(int(m) for m in marks) == sorted(f["value"] for f in reading["fields"].values())
    assert texts_of(chromium, "svg.overlay rect.ov-corrected") != []
    signature = text_of(chromium, "#signature") or ""
    assert "valid" in signature and "kit-01" in signature
    corrections = text_of(chromium, "#corrections") or ""
    assert "Pasangan calon nomor urut 02" in corrections and "→" in corrections
    assert "current" in (text_of(chromium, "#state") or "")
    wait_for(lambda: chromium.execute_script("const i = document.querySelector('img.photo');"
                                             "return i && i.complete && i.naturalWidth > 0"), 15, "the photo shown")
    screenshot(chromium, "dashboard-result", full_page=True)
    # The TPS page lists it as current and every earlier one as superseded.
    chromium.get(f"{dash.url}/tps/{kit.cfg.kit.tps}")
    states = [tr.get_attribute("data-state") for tr in chromium.find_elements("css selector", "#history tbody tr")]
    assert states[0] == "current" and set(states[1:]) == {"superseded"} and len(states) == 6
