"""The officer's review page served by the real kit daemon (`tpskit kit run` as a process: simulated camera and
buttons, the real reader and model), with a real mosquitto and the district service, in a real headless
Chromium: an officer corrects a review field on the number pad and sends, and the district stores (and its
dashboard shows) the correction; a physical button press shows on the open page; a refusal shows the
gate's picture; the page passes the label and contrast basics at 720x1280 and 800x480, and screenshots of
both are saved (test-artifacts/screens/, docs/screens/ with SAVE_SCREENS=1).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from browser import contrast_failures, screenshot, set_viewport, unlabelled
from conftest import TPS_CODES, wait_for
from test_kit_daemon_e2e import kit_daemon, sheets  # noqa: F401 - the module's photos, made once

from tpskit.district.dashboard import Dashboard
from tpskit.envelope import unverified_payload

pytestmark = pytest.mark.broker
TPS = TPS_CODES[0]
PORTRAIT, LANDSCAPE = (720, 1280), (800, 480)


def page_state(driver: Any) -> str | None:
    return driver.execute_script("return document.body.dataset.state || null;")


def wait_page(driver: Any, state: str, timeout: float = 60) -> None:
    wait_for(lambda: page_state(driver) == state, timeout, f"the page showing {state} (shows {page_state(driver)})")


def click(driver: Any, css: str) -> None:
    """Click what `css` finds; found again when the page redrew it meanwhile (a live update)."""
    from selenium.common.exceptions import StaleElementReferenceException

    def clicked() -> bool:
        try:
            driver.find_element("css selector", css).click()
            return True
        except StaleElementReferenceException:
            return False

    wait_for(clicked, 10, f"clicking {css}")


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    req = urllib.request.Request(url + "command", json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_officer_corrects_a_review_field_on_the_number_pad_and_the_district_stores_the_correction(
        rig_factory, tmp_path, sheets, chromium):  # noqa: F811
    rig = rig_factory(1)
    rig.serve_inprocess()
    sheet = sheets["review"]
    with kit_daemon(rig, tmp_path, sheet) as d:
        url = d.status()["page"]
        assert url.startswith("http://127.0.0.1:")
        set_viewport(chromium, *PORTRAIT)
        chromium.get(url)
        wait_page(chromium, "idle")
        d.press("capture")  # the physical button: the open page follows it
        wait_page(chromium, "review")
        pending = d.command("pending")
        in_review = [n for n, f in pending["fields"].items() if f["status"] == "review"]
        assert "paslon_01" in in_review
        # The fields are listed by the labels printed on the sheet, the ones to review highlighted.
        button = chromium.find_element("css selector", "button.field[data-field=paslon_01]")
        assert "Pasangan calon nomor urut 01" in button.text
        assert "is-review" in button.get_attribute("class")
        assert chromium.find_elements("css selector", "#sheet g.m-review[data-field=paslon_01]")
        screenshot(chromium, "kit-review-720x1280")
        # Every doubtful field corrected on the pad, paslon_01 to what the count really was.
        truth = {**{n: sheet.values[n] for n in in_review}, "paslon_01": sheet.values["paslon_01"] - 11}
        read_as = pending["fields"]["paslon_01"]["value"]
        for name in in_review:
            click(chromium, f"button.field[data-field={name}]")
            assert chromium.find_element("id", "editor").is_displayed()
            for digit in str(truth[name]):
                click(chromium, f"#pad button[data-key='{digit}']")
            typed = str(truth[name])
            wait_for(lambda t=typed: chromium.find_element("id", "ed-checks").get_attribute("data-draft") == t,
                     20, "the daemon's checks of the draft")
            if name == "paslon_01":
                # Typed, not saved: the daemon evaluated the draft (suara_sah balances) and stored nothing.
                check = chromium.find_element("css selector", "#ed-checks li[data-check=suara_sah]")
                assert "pass" in check.get_attribute("class")
                assert d.command("pending")["fields"]["paslon_01"]["value"] == read_as
                assert chromium.find_element("id", "ed-ocr").text == str(read_as)
                screenshot(chromium, "kit-numpad-720x1280")
            click(chromium, "#save")
            wait_for(lambda n=name: d.command("pending")["fields"][n]["value"] == truth[n], 20, f"{name} corrected")
        wait_page(chromium, "check")
        corrected = chromium.find_element("css selector", "button.field[data-field=paslon_01]")
        wait_for(lambda: "is-corrected" in corrected.get_attribute("class"), 20, "the corrected field redrawn")
        assert f"OCR: {read_as}" in corrected.text  # the OCR original beside the correction
        confirm = chromium.find_element("id", "confirm")
        wait_for(confirm.is_enabled, 20, "Confirm enabled once every check passes")
        confirm.click()
        wait_page(chromium, "received")
        receipt = chromium.find_element("id", "receipt").text
        assert "Received by the district" in receipt and f"TPS {TPS}" in receipt
        screenshot(chromium, "kit-received-720x1280")
    [row] = rig.stored()
    fields = unverified_payload(row["envelope"])["fields"]
    assert (fields["paslon_01"]["status"], fields["paslon_01"]["value"], fields["paslon_01"]["ocr_value"]) == (
        "corrected", truth["paslon_01"], read_as)
    assert row["status"] == "ok"
    # The district's dashboard shows the result with the officer's correction, OCR original -> final value.
    with Dashboard(rig.district_cfg(), port=0) as dash:
        set_viewport(chromium, 1280, 900)
        chromium.get(f"{dash.url}/result/{row['submission_id']}")
        corrections = chromium.find_element("id", "corrections").text
        assert f"Pasangan calon nomor urut 01: OCR {read_as} → {truth['paslon_01']}" in corrections


def test_confirm_stays_disabled_while_a_check_fails_until_the_officer_marks_the_sheets_arithmetic(
        rig_factory, tmp_path, sheets, chromium):  # noqa: F811
    rig = rig_factory(1)
    rig.serve_inprocess()
    sheet = sheets["review"]
    with kit_daemon(rig, tmp_path, sheet) as d:
        url = d.status()["page"]
        set_viewport(chromium, *LANDSCAPE)
        chromium.get(url)
        wait_page(chromium, "idle")
        d.press("capture")
        wait_page(chromium, "review")
        pending = d.command("pending")
        # The officer enters every doubtful field as written, the slip included: the sums still fail.
        for name, f in pending["fields"].items():
            if f["status"] == "review":
                d.command(f"correct {name} {sheet.values[name]}")
        wait_for(lambda: chromium.find_elements("css selector", "#checks li.fail"), 20, "a failing check shown")
        confirm = chromium.find_element("id", "confirm")
        assert not confirm.is_enabled()
        _, answer = post(url, {"command": "confirm"})
        assert "error" in answer and d.status()["state"] == "review"  # the daemon refuses, not only the page
        screenshot(chromium, "kit-slip-800x480")
        assert unlabelled(chromium) == []
        # The pad works in landscape too, and Cancel stores nothing.
        click(chromium, "button.field[data-field=paslon_02]")
        click(chromium, "#pad button[data-key='7']")
        wait_for(lambda: chromium.find_element("id", "ed-checks").get_attribute("data-draft") == "7", 20, "the draft")
        assert contrast_failures(chromium) == []
        screenshot(chromium, "kit-numpad-800x480")
        click(chromium, "#cancel")
        assert d.command("pending")["fields"]["paslon_02"]["value"] == sheet.values["paslon_02"]
        click(chromium, "#slip")
        wait_for(confirm.is_enabled, 20, "Confirm enabled by the slip mark")
        confirm.click()
        wait_page(chromium, "received")
    [row] = rig.stored()
    payload = unverified_payload(row["envelope"])
    assert payload["officer_slip"] is True and payload["status"] == "review"
    assert [c["id"] for c in payload["checks"] if not c["passed"]]
    with Dashboard(rig.district_cfg(), port=0) as dash:  # the district sees the slip flagged
        set_viewport(chromium, 1280, 900)
        chromium.get(f"{dash.url}/result/{row['submission_id']}")
        assert "officer confirmed" in chromium.find_element("id", "officer-slip").text


def test_a_refused_photo_shows_the_gates_picture_and_a_foreign_origin_cannot_post_commands(
        rig_factory, tmp_path, sheets, chromium):  # noqa: F811
    rig = rig_factory(1)
    with kit_daemon(rig, tmp_path, sheets["covered"], sheets["good"][0]) as d:
        url = d.status()["page"]
        set_viewport(chromium, *PORTRAIT)
        chromium.get(url)
        wait_page(chromium, "idle")
        screenshot(chromium, "kit-idle-720x1280")
        d.press("capture")
        wait_page(chromium, "refused")
        assert "bottom-right corner" in chromium.find_element("id", "msg-en").text
        img = chromium.find_element("id", "refusal-img")
        wait_for(lambda: chromium.execute_script("return arguments[0].naturalWidth", img) > 0, 20, "the picture")
        assert contrast_failures(chromium) == [] and unlabelled(chromium) == []
        screenshot(chromium, "kit-refused-720x1280")
        d.press("capture")
        wait_page(chromium, "check")
        set_viewport(chromium, *LANDSCAPE)
        assert contrast_failures(chromium) == [] and unlabelled(chromium) == []
        screenshot(chromium, "kit-check-800x480")
        status, _ = post(url, {"command": "confirm"}, {"Origin": "http://evil.example"})
        assert status == 403 and d.status()["state"] == "confirm"
        status, _ = post(url, {"command": "correct", "field": "paslon_01", "value": "1\nconfirm"})
        assert status == 400
