"""The kit state machine in-process, with test fakes for the reader and a camera that waits to be released.

No broker runs here, so every queued result also shows what a broker outage does: the officer is never
blocked and the offline light comes on. The end-to-end flows with the real reader, mosquitto and the
district service are in test_kit_daemon_e2e.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import PPWP, fake_jpeg, make_reading, reading_of, wait_for
from kit_daemon_rig import cleanup, short_dir, simulate

from tpskit.edge.config import load_kit_config
from tpskit.edge.control import control
from tpskit.edge.daemon import KitDaemon, Reader
from tpskit.edge.outbox import Outbox
from tpskit.edge.pending import Pending, PendingStore
from tpskit.edge.reader.types import CheckResult, FieldReading, ReadingResult
from tpskit.edge.states import IllegalTransition, KitState, check_transition
from tpskit.envelope import sha256_hex, unverified_payload
from tpskit.firmware.camera import SimulatedCamera
from tpskit.firmware.controls import Signal
from tpskit.forms import load_templates
from tpskit.officer import OfficerMessage

TPS = "3201012001001"


# ------------------------------------------------------------------------------------------ fakes
def result_from(reading: dict[str, Any]) -> ReadingResult:
    fields = {n: FieldReading(n, f["value"], f["confidence"], f["status"]) for n, f in reading["fields"].items()}
    return ReadingResult(photo="capture.jpg", template=reading["template"], form_code=reading["form_code"],
                         tps=reading["tps"], status=reading["status"], fields=fields,
                         checks=[CheckResult(c["id"], c["passed"]) for c in reading["checks"]])


def review_reading() -> dict[str, Any]:
    """paslon_01 unsure (read 60, really 61?) and the vote total check failing with it."""
    r = make_reading(TPS, (60, 50, 40))
    r["fields"]["paslon_01"].update(value=59, confidence=0.61, status="review")
    r["status"] = "review"
    r["checks"] = [{**c, "passed": c["passed"] and c["id"] != "suara_sah"} for c in r["checks"]]
    return r


REFUSED = ReadingResult(photo="capture.jpg", template=None, form_code=None, tps=None, status="rejected",
                        reason="marker_missing",
                        message=OfficerMessage("refused.marker_missing", "Tanda sudut kanan bawah tidak terlihat.",
                                               "The bottom-right corner mark is not visible."))


class FakeReader(Reader):
    """Returns the queued results in order (a test fake: the real reader runs in the e2e tests)."""

    def __init__(self, *results: ReadingResult) -> None:
        super().__init__(templates=load_templates(), model=None, model_version="digits-test",
                         expected_tps=TPS, registered_voters=250)
        self.results = list(results)

    def read(self, jpeg: bytes, debug: Any = None) -> ReadingResult:
        return self.results.pop(0)


class GatedCamera(SimulatedCamera):
    """The simulated camera that holds each capture until the test releases it."""

    def __init__(self, cfg: Any) -> None:
        super().__init__(cfg)
        self.release = threading.Event()
        self.entered = threading.Event()

    def capture_jpeg(self) -> bytes:
        self.entered.set()
        assert self.release.wait(30)
        return super().capture_jpeg()


# ------------------------------------------------------------------------------------------ fixtures
@pytest.fixture
def kit_file(tmp_path: Path) -> Iterator[Path]:
    """A provisioned kit (district CA, key, certificate; no broker running) with simulated hardware."""
    from tpskit.provisioning.district import bench_kit, district_init

    csv = tmp_path / "tps.csv"
    csv.write_text(f"tps,registered_voters\n{TPS},250\n")
    d = district_init(tmp_path / "district", csv, district_id="kab-test", broker_port=1, bind="127.0.0.1")
    issued = bench_kit(d.root, "kit-01", TPS, tmp_path / "kit")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(4):
        (photos / f"{i}.jpg").write_bytes(fake_jpeg(f"sheet-{i}"))
    socks = short_dir()
    cfg_path = issued.folder / "kit.toml"
    with open(cfg_path, "a") as f:
        f.write("\n[delivery]\nretry_initial_s = 5.0\n")
    simulate(cfg_path, photos, socks, extra="max_failures = 3")
    yield cfg_path
    cleanup(socks)


@contextlib.contextmanager
def running(cfg_path: Path, reader: Reader, *, camera: Any = None, **over: Any) -> Iterator[KitDaemon]:
    cfg = load_kit_config(cfg_path)
    if over:
        cfg = cfg.model_copy(update={"daemon": cfg.daemon.model_copy(update=over)})
    d = KitDaemon(cfg, reader=reader, camera=camera or SimulatedCamera(cfg.camera))
    stop = threading.Event()
    d.start()
    t = threading.Thread(target=d.run, args=(stop,), daemon=True)
    t.start()
    try:
        yield d
    finally:
        stop.set()
        t.join(10)
        d.close()


def press(d: KitDaemon, button: str) -> None:
    d.controls.press(button)  # type: ignore[attr-defined]


def wait_state(d: KitDaemon, state: KitState, timeout: float = 15) -> None:
    wait_for(lambda: d.state == state, timeout, f"state {state} (now {d.state})")


def envelopes(cfg_path: Path) -> list[dict[str, Any]]:
    cfg = load_kit_config(cfg_path)
    with Outbox(cfg.outbox_path) as box:
        return [unverified_payload(r.envelope) for r in box.rows()]  # type: ignore[misc]


# ------------------------------------------------------------------------------------------ tests
def test_a_transition_outside_the_table_is_refused():
    check_transition(KitState.READING, KitState.CONFIRM)
    with pytest.raises(IllegalTransition):
        check_transition(KitState.IDLE, KitState.SIGNING)


def test_press_while_capturing_is_ignored_with_a_busy_beep(kit_file):
    cfg = load_kit_config(kit_file)
    camera = GatedCamera(cfg.camera)
    with running(kit_file, FakeReader(result_from(make_reading(TPS))), camera=camera) as d:
        press(d, "capture")
        assert camera.entered.wait(10)
        wait_state(d, KitState.CAPTURING)
        press(d, "capture")
        press(d, "confirm")
        wait_for(lambda: d.controls.signals().count(Signal.BUSY_BEEP) == 2, 10, "two busy beeps")
        camera.release.set()
        wait_state(d, KitState.CONFIRM)
        assert camera.captures == 1
        assert d.controls.signals()[-1] == Signal.CONFIRM_NEEDED
    assert envelopes(kit_file) == []  # nothing is signed without the confirm press


def test_confirm_signs_and_queues_while_the_broker_is_down_and_shows_offline(kit_file):
    with running(kit_file, FakeReader(result_from(make_reading(TPS)), result_from(make_reading(TPS)))) as d:
        press(d, "capture")
        wait_state(d, KitState.CONFIRM)
        press(d, "confirm")
        wait_state(d, KitState.QUEUED)
        wait_for(lambda: Signal.OFFLINE in d.controls.signals(), 15, "the offline light")
        assert "no network" in d.message.text
        # The officer is not blocked: the next sheet can be captured while the first waits.
        press(d, "capture")
        wait_state(d, KitState.CONFIRM)
    [env] = envelopes(kit_file)
    assert env["status"] == "ok" and env["fields"]["paslon_01"]["value"] == 60


def test_fields_in_review_go_with_their_review_flag_never_as_ok(kit_file):
    with running(kit_file, FakeReader(result_from(review_reading()))) as d:
        press(d, "capture")
        wait_state(d, KitState.REVIEW)
        assert d.controls.signals()[-1] == Signal.REVIEW_NEEDED
        assert "Pasangan calon nomor urut 01" in d.message.text and "paslon_01" not in d.message.text
        shown = control(d.cfg.daemon.control_socket, "status")["officer"]  # what a touch page reads
        assert (shown["key"], shown["level"]) == ("review", "action") and "Pasangan calon" in shown["en"]
        control(d.cfg.daemon.control_socket, "slip on")  # the sheet's own sums fail: marked as written
        press(d, "confirm")
        wait_state(d, KitState.QUEUED)
    [env] = envelopes(kit_file)
    assert env["status"] == "review" and env["officer_slip"] is True
    assert env["fields"]["paslon_01"]["status"] == "review"
    assert env["fields"]["paslon_01"].get("ocr_value") is None


def test_the_confirm_button_cannot_send_a_sheet_whose_checks_fail_until_the_officer_marks_them(kit_file):
    with running(kit_file, FakeReader(result_from(review_reading()))) as d:
        press(d, "capture")
        wait_state(d, KitState.REVIEW)
        press(d, "confirm")
        wait_for(lambda: Signal.BUSY_BEEP in d.controls.signals(), 10, "the refusing beep")
        assert d.state == KitState.REVIEW and envelopes(kit_file) == []
        assert d.controls.signals()[-1] == Signal.REVIEW_NEEDED  # still the review light, not sending
        control(d.cfg.daemon.control_socket, "slip on")
        press(d, "confirm")
        wait_state(d, KitState.QUEUED)
    [env] = envelopes(kit_file)
    assert env["officer_slip"] is True


def test_a_correction_reruns_the_checks_and_the_envelope_keeps_the_ocr_original(kit_file):
    with running(kit_file, FakeReader(result_from(review_reading()))) as d:
        press(d, "capture")
        wait_state(d, KitState.REVIEW)
        sock = d.cfg.daemon.control_socket
        assert control(sock, "pending")["fields"]["paslon_01"]["value"] == 59
        assert "error" in control(sock, "correct paslon_01 9999")  # above what three boxes hold
        answer = control(sock, "correct paslon_01 60")
        assert answer["status"] == "ok"
        assert all(c["passed"] for c in answer["reading"]["checks"])
        wait_state(d, KitState.CONFIRM)
        press(d, "confirm")
        wait_state(d, KitState.QUEUED)
    [env] = envelopes(kit_file)
    assert env["status"] == "ok"
    assert env["fields"]["paslon_01"] == {"value": 60, "status": "corrected", "confidence": 0.61, "ocr_value": 59}


def test_refused_capture_shows_the_refused_pattern_and_the_officer_message(kit_file):
    with running(kit_file, FakeReader(REFUSED, result_from(make_reading(TPS)))) as d:
        press(d, "capture")
        wait_state(d, KitState.REJECTED)
        assert d.controls.signals()[-1] == Signal.REFUSED
        assert "bottom-right corner" in d.message.text and "kanan bawah" in d.message.text
        press(d, "capture")  # fixed: the next press reads again
        wait_state(d, KitState.CONFIRM)


def test_auto_send_lets_an_all_ok_sheet_go_without_the_confirm_press(kit_file):
    with running(kit_file, FakeReader(result_from(make_reading(TPS)), result_from(review_reading())),
                 auto_send_ok=True) as d:
        press(d, "capture")
        wait_state(d, KitState.QUEUED)
        press(d, "capture")
        wait_state(d, KitState.REVIEW)  # a sheet in review always waits for the officer
    assert [e["status"] for e in envelopes(kit_file)] == ["ok"]


def test_repeated_camera_failures_stop_on_the_red_light_instead_of_looping(kit_file):
    cfg = load_kit_config(kit_file)
    camera = SimulatedCamera(cfg.camera)
    camera.fail_next("busy", 3)
    with running(kit_file, FakeReader(), camera=camera) as d:
        for n in range(1, 3):
            press(d, "capture")
            wait_for(lambda n=n: d.controls.signals().count(Signal.REFUSED) == n, 10, f"refusal {n}")
        press(d, "capture")
        wait_state(d, KitState.FAULT)
        assert d.controls.signals()[-1] == Signal.FAULT
        press(d, "capture")
        wait_for(lambda: d.controls.signals()[-1] == Signal.BUSY_BEEP, 10, "the press ignored")
        assert d.state == KitState.FAULT and camera.captures == 0


def test_an_implausible_clock_refuses_to_capture_and_says_why(kit_file):
    cfg = load_kit_config(kit_file)
    d = KitDaemon(cfg, reader=FakeReader(), camera=SimulatedCamera(cfg.camera),
                  now=lambda: dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
    try:
        d.start()
        assert d.state == KitState.FAULT
        assert "clock" in d.message.text and "NTP" in d.message.text
        d.handle(_press_event("capture"))
        assert d.state == KitState.FAULT and d.camera.captures == 0  # type: ignore[attr-defined]
    finally:
        d.close()


def _press_event(button: str) -> Any:
    import time

    from tpskit.firmware.controls import Button, ButtonEvent

    return ButtonEvent(Button(button), time.monotonic())


def test_killed_after_signing_but_before_forgetting_the_reading_does_not_sign_it_twice(kit_file):
    """The disk as a SIGKILL between the outbox commit and clearing the pending reading leaves it."""
    from tpskit.edge.submit import sign_and_queue

    cfg = load_kit_config(kit_file)
    photo = fake_jpeg("signed-then-killed")
    reading = reading_of(TPS)
    sign_and_queue(cfg, reading, photo)
    PendingStore(cfg.kit.data_dir).save(Pending(reading, photo, dt.datetime.now(dt.UTC)))
    with running(kit_file, FakeReader()) as d:
        assert d.state == KitState.QUEUED and d.pending is None
        press(d, "confirm")  # nothing left to confirm
        wait_for(lambda: d.controls.signals()[-1] == Signal.BUSY_BEEP, 10, "the press ignored")
    assert [e["evidence_sha256"] for e in envelopes(kit_file)] == [sha256_hex(photo)]
    assert PendingStore(cfg.kit.data_dir).load() is None


def test_a_reading_waiting_for_confirm_survives_a_restart(kit_file):
    with running(kit_file, FakeReader(result_from(make_reading(TPS)))) as d:
        press(d, "capture")
        wait_state(d, KitState.CONFIRM)
    with running(kit_file, FakeReader()) as d:
        assert d.state == KitState.CONFIRM
        press(d, "confirm")
        wait_state(d, KitState.QUEUED)
    [env] = envelopes(kit_file)
    assert env["template_id"] == PPWP


def test_ready_and_watchdog_are_sent_and_a_stuck_capture_stops_the_feeding(kit_file, tmp_path):
    import socket

    from tpskit.systemd import SystemdNotifier

    sock_path = short_dir() / "notify.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(sock_path))
    listener.settimeout(5)
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"})
    cfg = load_kit_config(kit_file)
    camera = GatedCamera(cfg.camera)
    cfg = cfg.model_copy(update={"daemon": cfg.daemon.model_copy(update={"job_timeout_s": 0.5})})
    d = KitDaemon(cfg, reader=FakeReader(), camera=camera, notifier=notifier)
    stop = threading.Event()
    received: list[str] = []
    try:
        d.start()
        t = threading.Thread(target=d.run, args=(stop,), daemon=True)
        t.start()
        wait_for(lambda: received.append(listener.recv(1024).decode()) or "WATCHDOG=1" in received, 10,
                 "a watchdog feed")
        assert any(m.startswith("READY=1") for m in received)
        press(d, "capture")
        assert camera.entered.wait(10)
        wait_for(lambda: d._stuck, 10, "the job to be declared stuck")
        listener.setblocking(False)  # forget what was fed before
        with contextlib.suppress(BlockingIOError):
            while True:
                listener.recv(1024)
        listener.settimeout(0.6)  # three feed intervals (0.2 s): no feed may arrive now
        late = []
        with contextlib.suppress(TimeoutError):
            while True:
                late.append(listener.recv(1024).decode())
        assert "WATCHDOG=1" not in late
    finally:
        camera.release.set()
        stop.set()
        d.close()
        listener.close()
        cleanup(sock_path.parent)


def test_a_correction_in_non_ascii_digits_or_thousands_of_digits_is_refused_not_a_daemon_crash(kit_file):
    # '²'.isdigit() is True but int('²') raises; int() of > 4300 digits raises too: on the main loop
    # either would kill the daemon.
    with running(kit_file, FakeReader(result_from(review_reading()))) as d:
        press(d, "capture")
        wait_state(d, KitState.REVIEW)
        for raw in ("²", "٣", "9" * 5000):
            assert "error" in d.correct("paslon_01", raw)
        assert d.pending is not None and d.pending.reading.fields["paslon_01"].value == 59
        assert control(d.cfg.daemon.control_socket, "correct paslon_01 60")["status"] == "ok"


def test_a_corrupt_pending_file_is_ignored_and_the_kit_starts_ready(kit_file):
    import json

    cfg = load_kit_config(kit_file)
    store = PendingStore(cfg.kit.data_dir)
    photo = fake_jpeg("pending")
    good = {"reading": make_reading(TPS), "captured_at": "2025-12-01T08:00:00+00:00",
            "photo_sha256": sha256_hex(photo)}
    store.save(Pending(reading_of(TPS), photo, dt.datetime.now(dt.UTC)))
    assert store.load() is not None
    for bad in (None, [], {**good, "reading": None}, {**good, "reading": {"fields": []}},
                {**good, "reading": {**good["reading"], "fields": {"dpt": "many"}}},
                {k: v for k, v in good.items() if k != "reading"}, {**good, "captured_at": "yesterday"},
                {**good, "captured_at": None}):
        store.json_path.write_text(json.dumps(bad))
        assert store.load() is None, bad
    with running(kit_file, FakeReader()) as d:
        assert d.state == KitState.IDLE and d.pending is None


def test_a_database_error_while_signing_returns_to_confirm_instead_of_staying_busy(kit_file):
    import sqlite3

    with running(kit_file, FakeReader(result_from(make_reading(TPS)))) as d:
        press(d, "capture")
        wait_state(d, KitState.CONFIRM)
        real_add = d.outbox.add

        def full_disk(sign: Any) -> Any:
            raise sqlite3.OperationalError("database or disk is full")

        d.outbox.add = full_disk
        working = d.controls.signals().count(Signal.WORKING)
        press(d, "confirm")
        wait_for(lambda: d.controls.signals().count(Signal.WORKING) > working, 10, "signing to start")
        wait_state(d, KitState.CONFIRM)
        assert "could not be signed" in d.message.text and d.pending is not None
        d.outbox.add = real_add
        press(d, "confirm")
        wait_state(d, KitState.QUEUED)
    assert len(envelopes(kit_file)) == 1


def test_an_error_after_the_outbox_commit_counts_as_signed_so_confirm_cannot_sign_it_twice(kit_file):
    from tpskit.edge.outbox import Outbox as RealOutbox

    with running(kit_file, FakeReader(result_from(make_reading(TPS)))) as d:
        press(d, "capture")
        wait_state(d, KitState.CONFIRM)

        def add_then_fail(sign: Any) -> Any:
            RealOutbox.add(d.outbox, sign)
            raise OSError("I/O error reading the row back")

        d.outbox.add = add_then_fail
        press(d, "confirm")
        wait_state(d, KitState.QUEUED)
        assert d.pending is None
        press(d, "confirm")
        wait_for(lambda: d.controls.signals()[-1] == Signal.BUSY_BEEP, 10, "nothing left to confirm")
    assert len(envelopes(kit_file)) == 1
