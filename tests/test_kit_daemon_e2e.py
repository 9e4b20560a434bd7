"""`tpskit kit run` end to end: simulated camera and buttons, the real reader and model, a real mosquitto and
the district service. The daemon runs as a process, driven through its sockets as the demo drives it.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TPS_CODES, wait_for
from kit_daemon_rig import DaemonProc, SheetPhoto, cleanup, make_sheet, photo_folder, read_photo, short_dir, simulate

from tpskit.edge.outbox import Outbox
from tpskit.envelope import unverified_payload

pytestmark = pytest.mark.broker
TPS = TPS_CODES[0]


@pytest.fixture(scope="module")
def sheets() -> dict[str, Any]:
    """Photos made once: good sheets, a hand over a corner, and a sheet the reader sends to review."""
    review = None
    for seed in (1, 3, 5, 7, 9, 11):
        # The officer wrote paslon_01 eleven too high, so the vote sums no longer balance.
        candidate = make_sheet(TPS, seed, bump={"paslon_01": 11})
        if read_photo(candidate.jpeg, TPS).status == "review":
            review = candidate
            break
    assert review is not None, "no inconsistent sheet read as review"
    return {"good": [make_sheet(TPS, s) for s in (21, 22)], "covered": make_sheet(TPS, 23, bad="marker_missing"),
            "review": review}


@contextlib.contextmanager
def kit_daemon(rig: Any, tmp_path: Path, *photos: SheetPhoto, auto_send_ok: bool = False) -> Iterator[DaemonProc]:
    kit = rig.kit(0)
    socks = short_dir()
    sim = simulate(kit.config_path, photo_folder(tmp_path / "photos", *photos), socks, auto_send_ok=auto_send_ok)
    d = DaemonProc(sim, tmp_path / "kit.log")
    try:
        yield d.start()
    finally:
        d.stop()
        cleanup(socks)


def outbox_rows(rig: Any) -> list[Any]:
    with Outbox(rig.kit(0).config().outbox_path) as box:
        return box.rows()


def press_twice_at_once(d: DaemonProc, button: str) -> None:
    """Two presses in one burst: the second arrives while the first capture is still running."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(d.kit.controls_socket))
        s.sendall(f"press {button}\npress {button}\n".encode())
        replies = b""
        while replies.count(b"\n") < 2:
            replies += s.recv(1024)
    assert replies.split() == [b"ok", b"ok"]


def stored_values(rig: Any) -> list[dict[str, Any]]:
    return [json.loads(r["values_json"]) for r in rig.stored()]


# ------------------------------------------------------------------------------------------ flows
def test_press_then_confirm_lights_green_with_the_receipt_and_a_press_while_busy_only_beeps(
        rig_factory, tmp_path, sheets):
    rig = rig_factory(1)
    rig.serve_inprocess()
    good = sheets["good"][0]
    with kit_daemon(rig, tmp_path, good) as d:
        press_twice_at_once(d, "capture")
        d.wait_state("confirm")
        assert len(d.events("kit.capture")) == 1
        assert [e["why"] for e in d.events("kit.busy_press")] == ["busy"]
        signals = d.signals()
        assert signals.index("busy_beep") < signals.index("confirm_needed")
        pending = d.command("pending")
        assert {n: f["value"] for n, f in pending["fields"].items()} == good.values
        assert rig.stored() == []  # nothing leaves the kit before the confirm press
        d.press("confirm")
        d.wait_state("acknowledged")
        assert d.signals()[-1] == "acknowledged"
        assert "district received and confirmed" in d.messages()[-1]
    [row] = outbox_rows(rig)
    assert (row.state, row.ack_status) == ("acknowledged", "accepted") and row.receipt
    assert stored_values(rig) == [good.values]


def test_auto_send_ok_sends_an_all_ok_sheet_on_the_capture_press_alone(rig_factory, tmp_path, sheets):
    rig = rig_factory(1)
    rig.serve_inprocess()
    with kit_daemon(rig, tmp_path, sheets["good"][1], auto_send_ok=True) as d:
        d.press("capture")
        d.wait_state("acknowledged")
        assert "confirm_needed" not in d.signals()
    assert stored_values(rig) == [sheets["good"][1].values]


def test_covered_corner_is_refused_with_the_refused_pattern_and_the_officer_message(rig_factory, tmp_path, sheets):
    rig = rig_factory(1)
    with kit_daemon(rig, tmp_path, sheets["covered"], sheets["good"][0]) as d:
        d.press("capture")
        d.wait_state("rejected")
        assert d.signals()[-1] == "refused"
        msg = d.messages()[-1]
        assert "kanan bawah" in msg and "bottom-right corner" in msg
        [refused] = d.events("kit.refused")
        assert refused["reason"] == "marker_missing"
        lights = d.command("status")
        assert lights["state"] == "rejected"
        d.press("capture")  # the hand moved away: the next capture is read
        d.wait_state("confirm")
    assert outbox_rows(rig) == []


def test_review_flow_correction_survives_a_kill_and_the_envelope_keeps_the_ocr_original(
        rig_factory, tmp_path, sheets):
    rig = rig_factory(1)
    rig.serve_inprocess()
    sheet = sheets["review"]
    true_paslon_01 = sheet.values["paslon_01"] - 11  # what the count really was
    with kit_daemon(rig, tmp_path, sheet) as d:
        d.press("capture")
        d.wait_state("review")
        assert d.signals()[-1] == "review_needed"
        pending = d.command("pending")
        in_review = sorted(n for n, f in pending["fields"].items() if f["status"] == "review")
        assert "paslon_01" in in_review
        read_as = pending["fields"]["paslon_01"]["value"]
        answer = d.command(f"correct paslon_01 {true_paslon_01}")
        assert answer["reading"]["fields"]["paslon_01"]["ocr_value"] == read_as
        d.kill()  # SIGKILL in review, after one correction
        d.start()
        d.wait_state("review")
        assert d.command("pending")["fields"]["paslon_01"]["value"] == true_paslon_01
        assert d.command("view")["picture"]["kind"] == "sheet"  # the review page still draws the sheet
        # The officer checks every other doubtful field against the sheet and enters what is written.
        for name in in_review:
            if name != "paslon_01":
                answer = d.command(f"correct {name} {sheet.values[name]}")
        assert answer["status"] == "ok", answer
        d.wait_state("confirm")
        d.press("confirm")
        d.wait_state("acknowledged")
    [row] = rig.stored()
    fields = unverified_payload(row["envelope"])["fields"]
    assert fields["paslon_01"]["status"] == "corrected"
    assert (fields["paslon_01"]["value"], fields["paslon_01"]["ocr_value"]) == (true_paslon_01, read_as)
    assert row["status"] == "ok"


# ------------------------------------------------------------------------------------------ SIGKILL in each state
def _drive_to(d: DaemonProc, rig: Any, state: str) -> None:
    d.press("capture")
    if state == "capturing":
        return  # killed at once, while the photo is taken or read
    d.wait_state("confirm")
    if state == "confirm":
        return
    d.press("confirm")
    d.wait_state(state)


@pytest.mark.parametrize("state", ["capturing", "confirm", "queued", "sent", "acknowledged"])
def test_daemon_killed_in_each_state_loses_nothing_and_sends_nothing_twice(rig_factory, tmp_path, sheets, state):
    rig = rig_factory(1)
    if state != "sent":
        rig.serve_inprocess()  # "sent": the broker confirmed, but no district service answers yet
    if state == "queued":
        rig.broker.stop()  # signed and stored, but no broker to publish to
    good = sheets["good"][0]
    with kit_daemon(rig, tmp_path, good) as d:
        _drive_to(d, rig, state)
        d.kill()
        before = [(r.submission_id, r.state) for r in outbox_rows(rig)]
        if state == "queued":
            rig.broker.start()
        if state == "sent":
            rig.serve_inprocess()
        d.start()
        if state == "capturing":
            # Nothing was confirmed: the kit is ready again (or shows the reading it had saved).
            assert d.wait_state("idle", "confirm")["state"] in ("idle", "confirm")
            assert outbox_rows(rig) == [] and rig.stored() == []
            return
        if state == "confirm":
            d.wait_state("confirm")
            d.press("confirm")
        d.wait_state("acknowledged", "idle")
        wait_for(lambda: [r.state for r in outbox_rows(rig)] == ["acknowledged"], 60, "the receipt")
    rows = outbox_rows(rig)
    if before:
        assert [r.submission_id for r in rows] == [sid for sid, _ in before]
    stored = rig.stored()
    assert len(stored) == 1 and stored[0]["submission_id"] == rows[0].submission_id
    assert stored_values(rig) == [good.values]
