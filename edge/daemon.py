"""`tpskit kit run`: the kit daemon. Button -> camera -> reader -> officer -> signer -> outbox -> district.

One thread owns the state (edge/states.py) and every light, beep and screen message: the main loop. It
reads one inbox fed by the buttons, by the worker running the slow job of the moment (capture + read, or
sign + queue), by the delivery loop (sent / acknowledged) and by the local control socket (`pending`,
`correct FIELD VALUE`, `status`). So a press while a job runs is answered at once with the busy beep, and a
broker outage never blocks the officer: delivery runs behind, from the outbox, on its own thread.

The main loop also feeds the systemd watchdog, but only while the current job is within its time limit:
a camera or reader that hangs stops the feeding and systemd restarts the daemon (the outbox and the
pending reading on disk make that safe). Repeated failures (camera, reader, signing) within a window put
the kit on the red light for the technician instead of looping.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tpskit.edge import texts
from tpskit.edge.config import KitConfig
from tpskit.edge.control import REPLY_TIMEOUT_S, ControlServer
from tpskit.edge.pending import Pending, PendingStore
from tpskit.edge.readiness import Problem, startup_problems
from tpskit.edge.reading import CorrectionError, Reading
from tpskit.edge.states import BUSY, PENDING, STATE_SIGNAL, KitState, capture_allowed, check_transition
from tpskit.events import Event, log_event, register
from tpskit.firmware.camera import Camera, CameraError, make_camera
from tpskit.firmware.controls import Button, ButtonEvent, Controls, Screen, Signal, make_controls, make_screen
from tpskit.forms import Template
from tpskit.officer import OfficerMessage
from tpskit.systemd import SystemdNotifier
from tpskit.web.sse import Version

log = logging.getLogger("tpskit.kit.daemon")
S = KitState

register(
    Event("kit.started", "info", "The kit daemon started: kit id, TPS, camera and controls backends."),
    Event("kit.state", "info", "The kit changed state (idle, capturing, reading, confirm, review, signing, "
                               "queued, sent, acknowledged, rejected, fault)."),
    Event("kit.busy_press", "info", "A button press arrived while the kit was busy (or had nothing to confirm) "
                                    "and was ignored with a short beep."),
    Event("kit.capture", "action", "A photo was taken for reading; capture time and photo hash."),
    Event("kit.read", "info", "A capture was read; status ok or review, fields needing review, timings."),
    Event("kit.refused", "warning", "A capture was refused by the quality gate; reason and officer message."),
    Event("kit.camera_failed", "error", "The camera could not deliver a photo; kind and message."),
    Event("kit.reader_failed", "error", "The reader raised instead of returning a result (a bug or a bad model)."),
    Event("kit.corrected", "action", "The officer corrected a field; OCR original and new value."),
    Event("kit.discarded", "info", "A pending reading was dropped because the officer captured again."),
    Event("kit.signed", "action", "A confirmed reading was signed and stored in the outbox; timings from the press."),
    Event("kit.sign_failed", "error", "Signing or storing a confirmed reading failed; the reading still waits."),
    Event("kit.restored", "info", "After a restart: a pending reading or queued results were found on disk."),
    Event("kit.not_ready", "error", "The kit refuses to capture (clock, key/certificate, TPS); the message says "
                                    "what to fix."),
    Event("kit.ready", "info", "The kit is ready to capture."),
    Event("kit.fault", "error", "The kit stopped on the red light (repeated failures or a startup problem)."),
    Event("kit.offline", "warning", "Results wait in the outbox and the broker is unreachable."),
    Event("kit.online", "info", "The broker is reachable again; waiting results are being sent."),
    Event("kit.receipt", "action", "The officer was shown the district's receipt (green light); time from press."),
    Event("kit.district_refused", "warning", "The district refused the result just sent; reason shown."),
    Event("kit.stuck", "error", "A job overran job_timeout_s; the systemd watchdog is no longer fed."),
    Event("kit.control", "info", "A command arrived on the daemon's control socket."),
    Event("kit.stopping", "info", "The kit daemon is stopping."),
    Event("kit.page", "info", "The officer's review page is served (its address, loopback only)."),
    Event("kit.page_failed", "error", "The review page could not be served (its port is taken?); the buttons and "
                                      "lights still work."),
    Event("kit.slip", "action", "The officer marked (or unmarked) the sheet's failing checks as written that way."),
)


# ------------------------------------------------------------------------------------------- reader
@dataclass
class Reader:
    """The reader with its templates and model loaded once; `read` is the pure pipeline."""

    templates: Mapping[str, Template]
    model: Any
    model_version: str
    expected_tps: str
    registered_voters: int | None

    def read(self, jpeg: bytes, debug: Callable[[str, Any], None] | None = None) -> Any:
        """The reader's result; `debug` receives the reader's drawings (the review page's picture)."""
        from tpskit.edge.reader.pipeline import ReadOptions, read_sheet

        opts = ReadOptions(expected_tps=self.expected_tps, registered_voters=self.registered_voters, debug=debug)
        return read_sheet(jpeg, self.templates, self.model, opts, photo="capture.jpg")

    def template(self, template_id: str) -> Template:
        return next(t for t in self.templates.values() if t.id == template_id)


@dataclass(frozen=True)
class Picture:
    """A JPEG for the review page: `sheet` (the rectified page, `px_per_mm` to place the fields on it) or
    `refused` (the gate's picture of what to fix)."""

    kind: str
    jpeg: bytes
    width: int
    height: int
    px_per_mm: float | None = None


def picture_of(drawn: Mapping[str, Any], templates: Mapping[str, Template], result: Any) -> Picture | None:
    """What the review page shows of a capture, from the reader's drawings: the rectified sheet (the page
    part of its drawing) or, for a refusal, the photo as the gate saw it with what to fix marked (covered
    corner, glare, out of frame)."""
    import cv2

    from tpskit.edge.reader.debug import DEBUG_PX_PER_MM

    if "sheet" in drawn:
        t = next((t for t in templates.values() if t.id == result.template), None)
        img = drawn["sheet"]
        if t is not None:  # the page only: the drawing's right margin holds the technician's notes
            img = img[:, :round(t.page.width_mm * DEBUG_PX_PER_MM)]
        kind, ppm = "sheet", DEBUG_PX_PER_MM
    elif "refused" in drawn:
        img, kind, ppm = drawn["refused"], "refused", None
    else:
        return None
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 80])
    return Picture(kind, buf.tobytes(), img.shape[1], img.shape[0], ppm) if ok else None


def load_reader(cfg: KitConfig) -> Reader:
    from tpskit.edge.reader.digit_model import load_digit_model, model_version
    from tpskit.forms import load_templates

    return Reader(load_templates(), load_digit_model(), model_version(), cfg.kit.tps, cfg.kit.registered_voters)


# ------------------------------------------------------------------------------------------- inbox messages
@dataclass(frozen=True)
class _Phase:
    state: KitState


@dataclass(frozen=True)
class _ReadDone:
    result: Any  # the reader's ReadingResult
    reading: Reading | None  # None when the reader refused the photo
    picture: Picture | None  # for the review page
    photo: bytes
    captured_at: dt.datetime
    capture_ms: float
    read_ms: float


@dataclass(frozen=True)
class _JobFailed:
    kind: str  # camera | reader | sign
    message: str
    officer: OfficerMessage


@dataclass(frozen=True)
class _Signed:
    submission_id: str
    seq: int
    sign_ms: float


@dataclass(frozen=True)
class _Delivery:
    submission_id: str
    state: str


@dataclass(frozen=True)
class _Command:
    line: str
    reply: queue.Queue[str]


# ------------------------------------------------------------------------------------------- the daemon
class KitDaemon:
    """The state machine and its I/O. `start()`, then `run(stop)` on the main thread, then `close()`.

    Hardware, reader and clock can be passed in (tests); by default they come from the configuration.
    """

    TICK_S = 0.25

    def __init__(self, cfg: KitConfig, *, camera: Camera | None = None, controls: Controls | None = None,
                 screen: Screen | None = None, reader: Reader | None = None,
                 notifier: SystemdNotifier | None = None,
                 now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self.cfg = cfg
        self.now = now
        self.controls = controls or make_controls(cfg.controls)
        self.screen = screen or make_screen(cfg.controls, self.controls)
        self.camera = camera or make_camera(cfg.camera)
        self.reader = reader
        self.notifier = notifier or SystemdNotifier()
        self.state = S.IDLE
        self.pending: Pending | None = None
        self.pending_store = PendingStore(cfg.kit.data_dir)
        self.problems: list[Problem] = []
        self.message: OfficerMessage | None = None
        self.current_submission: str | None = None
        self.outbox: Any = None
        self.delivery: Any = None
        self._inbox: queue.Queue[Any] = queue.Queue()
        self._job: threading.Thread | None = None
        self._job_started: float | None = None
        self._stuck = False
        self._failures: collections.deque[float] = collections.deque()
        self._permanent_fault = False
        self._press_at: float | None = None  # monotonic time of the press that started the current path
        self._offline_since: float | None = None
        self._offline_shown = False
        self._before_offline: OfficerMessage | None = None
        self._last_recheck = 0.0
        self._last_feed = 0.0
        self._delivery_seen: dict[str, str] = {}
        self.attempts = 0  # capture jobs finished (read, refused or failed): lets a driver see a new outcome
        #: Bumped by the main loop whenever what the review page shows may have changed (its live updates).
        self.changes = Version()
        #: What the review page shows of the last capture: the rectified sheet or the refusal's picture.
        self.picture: Picture | None = None
        self.page: Any = None  # the review page's server (edge/page.py), when [screen] is enabled
        self._control = ControlServer(cfg.daemon.control_socket, self._answer)
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> KitDaemon:
        cfg = self.cfg
        self.controls.signal(Signal.STARTING)
        log_event(log, "kit.started", kit=cfg.kit.id, tps=cfg.kit.tps, camera=cfg.camera.backend,
                  controls=cfg.controls.backend, auto_send_ok=cfg.daemon.auto_send_ok, pid=os.getpid())
        self._start_thread(self._forward_presses, "kit-presses")
        self._threads.append(self._control.open())
        from tpskit.edge.outbox import Outbox, OutboxTooNew

        try:
            self.outbox = Outbox(cfg.outbox_path)
        except OutboxTooNew:
            self.outbox = None  # untouched; startup_problems names it, with the fix, and the kit stays not ready
        self.problems = startup_problems(cfg, self.now())
        if self.reader is None:
            try:
                self.reader = load_reader(cfg)
            except Exception as e:  # missing or corrupt model file: the technician must see it
                self.problems.append(Problem("reader", f"the digit model cannot be loaded ({e}). Fix: reinstall "
                                                       "tpskit (the model ships in tpskit/models)"))
        if self.outbox is not None and not any(p.key.startswith("identity") for p in self.problems):
            self._start_delivery()
        with contextlib.suppress(CameraError):
            self.camera.start()  # a camera error here shows at the first press, with its message
        self._restore()
        if cfg.screen.enabled:
            self._start_page()
        self.notifier.ready(f"state {self.state}")
        return self

    def _start_page(self) -> None:
        from tpskit.edge.page import start_page

        try:
            self.page = start_page(self)
        except OSError as e:  # the port is taken: the lights, the buttons and the control socket still work
            log_event(log, "kit.page_failed", message=str(e))
            return
        log_event(log, "kit.page", url=self.page.url)

    def _start_delivery(self) -> None:
        from tpskit.edge.deliver import Delivery

        self.delivery = Delivery(self.cfg, self.outbox,
                                 on_change=lambda sid, st: self._inbox.put(_Delivery(sid, st)))
        self.delivery.start()

    def _restore(self) -> None:
        """After a restart: a reading that waited for Confirm waits again, unless it was already signed."""
        if self.problems:
            self._not_ready()
            return
        pending = self.pending_store.load()
        if pending is not None:
            signed = [r.submission_id for r in self.outbox.rows() if r.evidence_sha256 == pending.photo_sha256]
            if signed:
                log_event(log, "kit.restored", what="pending_already_signed", submission=signed[0])
                self.pending_store.clear()
                pending = None
            else:
                self.pending = pending
                self.picture = self._restored_picture(pending)
                log_event(log, "kit.restored", what="pending_reading", status=pending.reading.status)
                self._show_pending()
                return
        counts = self.outbox.counts()
        waiting = counts["queued"] + counts["sent"]
        if waiting:
            log_event(log, "kit.restored", what="outbox", waiting=waiting)
            waiting_rows = [r for r in self.outbox.rows() if r.state in ("queued", "sent")]
            self.current_submission = waiting_rows[-1].submission_id if waiting_rows else None
            self._enter(S.QUEUED, texts.QUEUED())
            return
        self._enter(S.IDLE, texts.READY())
        log_event(log, "kit.ready", kit=self.cfg.kit.id)

    def _restored_picture(self, pending: Pending) -> Picture | None:
        got = self.pending_store.load_picture()
        if got is None or got[1].get("photo_sha256") != pending.photo_sha256:
            return None  # none, or drawn from another capture
        jpeg, meta = got
        try:
            return Picture(str(meta["kind"]), jpeg, int(meta["width"]), int(meta["height"]),
                           float(meta["px_per_mm"]) if meta.get("px_per_mm") else None)
        except (KeyError, TypeError, ValueError):
            return None

    def close(self) -> None:
        log_event(log, "kit.stopping", state=str(self.state))
        self.notifier.stopping()
        self._control.close()
        self.changes.closing = True
        if self.page is not None:
            self.page.stop()
        if self._job is not None:
            self._job.join(10)
        if self.delivery is not None:
            self.delivery.stop()
        if self.outbox is not None:
            self.outbox.close()
        with contextlib.suppress(Exception):
            self.camera.close()
        self.controls.close()

    def _start_thread(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # ------------------------------------------------------------------ the main loop
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                msg = self._inbox.get(timeout=self.TICK_S)
            except queue.Empty:
                msg = None
            if msg is not None:
                self.handle(msg)
            self._housekeeping()

    def handle(self, msg: Any) -> None:
        if isinstance(msg, ButtonEvent):
            self._on_press(msg)
        elif isinstance(msg, _Phase):
            self._enter(msg.state)
        elif isinstance(msg, _ReadDone):
            self._on_read(msg)
        elif isinstance(msg, _JobFailed):
            self._on_job_failed(msg)
        elif isinstance(msg, _Signed):
            self._on_signed(msg)
        elif isinstance(msg, _Delivery):
            self._on_delivery(msg)
        elif isinstance(msg, _Command):
            msg.reply.put(self._on_command(msg.line))
            return  # a command that changed something bumped `changes` itself; a question changes nothing
        self.changes.bump()

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._job is not None and not self._job.is_alive():
            self._job, self._job_started = None, None
        overran = self._job_started is not None and now - self._job_started > self.cfg.daemon.job_timeout_s
        if overran and not self._stuck:
            self._stuck = True
            log_event(log, "kit.stuck", state=str(self.state), seconds=round(now - self._job_started, 1))
        feed_every = self.notifier.feed_every_s()
        if not overran and feed_every is not None and now - self._last_feed >= min(feed_every, 1.0):
            self._last_feed = now
            self.notifier.watchdog()
        self._check_offline(now)
        # A clock that was wrong may have been fixed by time sync: look again every 30 s.
        if self.state == S.FAULT and not self._permanent_fault and now - self._last_recheck > 30:
            self._last_recheck = now
            self.problems = startup_problems(self.cfg, self.now())
            if not self.problems:
                if self.delivery is None:
                    self._start_delivery()
                self._restore()

    def _check_offline(self, now: float) -> None:
        # Only while the kit rests after sending: never over a refusal, a reading to confirm, or a fault.
        if self.delivery is None or self.state not in (S.IDLE, S.QUEUED, S.SENT, S.ACKNOWLEDGED):
            return
        up = self.delivery.link.connected.is_set()
        if up:
            self._offline_since = None
            if self._offline_shown:
                self._offline_shown = False
                log_event(log, "kit.online")
                self._show(self._before_offline)
                self.controls.signal(STATE_SIGNAL[self.state])
            return
        if self._offline_since is None:
            self._offline_since = now
        if self._offline_shown or now - self._offline_since < self.cfg.daemon.offline_after_s:
            return
        counts = self.outbox.counts()
        waiting = counts["queued"] + counts["sent"]
        if waiting:
            self._offline_shown = True
            self._before_offline = self.message
            log_event(log, "kit.offline", waiting=waiting, why=self.delivery.link.last_error)
            # The words before the light: whoever sees the offline light (the officer, the status
            # socket, a test) finds the message that explains it already there.
            self._show(texts.OFFLINE())
            self.controls.signal(Signal.OFFLINE)
            self.changes.bump()

    # ------------------------------------------------------------------ state and officer feedback
    def _enter(self, new: KitState, message: OfficerMessage | None = None, **fields: Any) -> None:
        if new != self.state:
            check_transition(self.state, new)
        # The message first, then the state and the light: whoever sees the new state (the status socket,
        # the control thread, a test) finds its message already there, never the previous one.
        if message is not None:
            self._show(message)
        if new != self.state:
            log_event(log, "kit.state", old=str(self.state), new=str(new), **fields)
            self.state = new
        self._offline_shown = False
        self.controls.signal(STATE_SIGNAL[new])
        self.notifier.status(f"{new}")

    def _show(self, message: OfficerMessage | None) -> None:
        if message is None:
            return
        self.message = message
        self.screen.show(message)

    def _busy_beep(self, ev: ButtonEvent, why: str) -> None:
        log_event(log, "kit.busy_press", button=ev.button.value, state=str(self.state), why=why)
        self.controls.signal(Signal.BUSY_BEEP)

    def _not_ready(self) -> None:
        self._enter(S.FAULT, texts.NOT_READY(problems="; ".join(p.message for p in self.problems)))
        for p in self.problems:
            log_event(log, "kit.not_ready", setting=p.key, message=p.message, transient=p.transient)
        self._permanent_fault = not all(p.transient for p in self.problems)

    def _failure(self, kind: str) -> bool:
        """Count an internal failure; True when the kit has now stopped on the red light."""
        now = time.monotonic()
        self._failures.append(now)
        while self._failures and now - self._failures[0] > self.cfg.daemon.failure_window_s:
            self._failures.popleft()
        if len(self._failures) < self.cfg.daemon.max_failures:
            return False
        self._permanent_fault = True
        log_event(log, "kit.fault", kind=kind, failures=len(self._failures),
                  window_s=self.cfg.daemon.failure_window_s)
        self._enter(S.FAULT, texts.REPEATED_FAILURES(count=len(self._failures), kind=kind))
        return True

    # ------------------------------------------------------------------ presses
    def _on_press(self, ev: ButtonEvent) -> None:
        if self.state in BUSY:
            return self._busy_beep(ev, "busy")
        if self.state == S.FAULT:
            self._busy_beep(ev, "fault")
            return self._show(self.message)
        if ev.button == Button.CAPTURE and capture_allowed(self.state):
            if self.pending is not None:
                log_event(log, "kit.discarded", status=self.pending.reading.status)
                self.pending = None
                self.pending_store.clear()
            self._press_at = ev.at
            self.picture = None
            self._enter(S.CAPTURING, texts.WORKING())
            return self._run_job(self._capture_job)
        if ev.button == Button.CONFIRM and self.state in PENDING and self.pending is not None:
            if not self.pending.reading.confirmable():
                # The page's rule, so the button cannot bypass it: a failing check is corrected, or marked on
                # the screen as the sheet's own arithmetic, before anything is signed.
                self._busy_beep(ev, "a check fails")
                return self._show_pending()
            self._press_at = ev.at
            return self._start_signing()
        return self._busy_beep(ev, "nothing to confirm")

    def _run_job(self, target: Callable[[], None]) -> None:
        self._job_started = time.monotonic()
        self._stuck = False
        self._job = threading.Thread(target=target, name="kit-job", daemon=True)
        self._job.start()

    # ------------------------------------------------------------------ capture + read (worker thread)
    def _capture_job(self) -> None:
        t0 = time.perf_counter()
        try:
            jpeg = self.camera.capture_jpeg()
        except CameraError as e:
            self._inbox.put(_JobFailed("camera", str(e), texts.CAMERA_FAILED(detail=e.message)))
            return
        except Exception as e:
            self._inbox.put(_JobFailed("camera", repr(e), texts.FAULT()))
            return
        captured_at = self.now()
        t1 = time.perf_counter()
        self._inbox.put(_Phase(S.READING))
        try:
            assert self.reader is not None
            drawn: dict[str, Any] = {}
            result = self.reader.read(jpeg, debug=drawn.__setitem__ if self.cfg.screen.enabled else None)
            picture = picture_of(drawn, self.reader.templates, result) if drawn else None
            reading = None if result.status == "rejected" else Reading.from_result(result, self.reader.model_version)
        except Exception as e:  # ReadingError too: the reader returned what cannot be confirmed (a defect)
            self._inbox.put(_JobFailed("reader", repr(e), texts.READER_FAILED()))
            return
        t2 = time.perf_counter()
        self._inbox.put(_ReadDone(result, reading, picture, jpeg, captured_at, (t1 - t0) * 1000, (t2 - t1) * 1000))

    def _on_job_failed(self, msg: _JobFailed) -> None:
        if msg.kind != "sign":
            self.attempts += 1
        event = {"camera": "kit.camera_failed", "reader": "kit.reader_failed", "sign": "kit.sign_failed"}
        log_event(log, event[msg.kind], message=msg.message)
        if self._failure(msg.kind):
            return
        if msg.kind == "sign" and self.pending is not None:
            self._show_pending(msg.officer)
            return
        self._enter(S.REJECTED, msg.officer, reason=msg.kind)

    def _on_read(self, msg: _ReadDone) -> None:
        from tpskit.envelope import sha256_hex

        r = msg.result
        self.attempts += 1
        self.picture = msg.picture
        photo_sha = sha256_hex(msg.photo)
        log_event(log, "kit.capture", captured_at=msg.captured_at.isoformat(), photo_sha256=photo_sha,
                  bytes=len(msg.photo), capture_ms=round(msg.capture_ms, 1))
        reading = msg.reading
        if reading is None:
            officer = r.message
            log_event(log, "kit.refused", reason=r.reason, message_id=officer.id if officer else None,
                      message_en=officer.en if officer else None, photo_sha256=photo_sha)
            self._enter(S.REJECTED, officer or texts.PHOTO_REFUSED(), reason=r.reason)
            return
        log_event(log, "kit.read", status=reading.status, template=reading.template,
                  review_fields=reading.needs_review(),
                  capture_ms=round(msg.capture_ms, 1), read_ms=round(msg.read_ms, 1))
        self.pending = Pending(reading, msg.photo, msg.captured_at)
        self.pending_store.save(self.pending)  # on disk before the officer is asked anything
        if msg.picture is not None:
            with contextlib.suppress(OSError):
                self.pending_store.save_picture(msg.picture.jpeg, {
                    "kind": msg.picture.kind, "width": msg.picture.width, "height": msg.picture.height,
                    "px_per_mm": msg.picture.px_per_mm, "photo_sha256": photo_sha})
        if reading.status == "ok" and self.cfg.daemon.auto_send_ok:
            self._start_signing()
            return
        self._show_pending()

    def _show_pending(self, message: OfficerMessage | None = None) -> None:
        assert self.pending is not None
        reading = self.pending.reading
        if reading.status == "ok":
            self._enter(S.CONFIRM, message or texts.CONFIRM())
        else:
            self._enter(S.REVIEW, message or self._review_message(reading))

    def _review_message(self, reading: Reading) -> OfficerMessage:
        """The review message, naming the fields to check as the form prints them."""
        names = reading.needs_review()
        try:
            assert self.reader is not None
            template = self.reader.template(reading.template)
            fields = template.field_map
            from tpskit.edge.screen_view import check_text

            failing = [check_text(c.sum, c.rhs, c.relation, fields) for c in template.checks
                       if c.id in reading.failing_checks()]
            return texts.review((fields[n].label for n in names), failing)
        except (AssertionError, StopIteration, KeyError):  # no template to name them by: the ids are still true
            return texts.review(names, reading.failing_checks())

    # ------------------------------------------------------------------ sign + queue (worker thread)
    def _start_signing(self) -> None:
        self._enter(S.SIGNING, texts.WORKING())
        pending = self.pending
        assert pending is not None
        self._run_job(lambda: self._sign_job(pending))

    def _sign_job(self, pending: Pending) -> None:
        from tpskit.edge.submit import sign_and_queue

        t0 = time.perf_counter()
        try:
            row = sign_and_queue(self.cfg, pending.reading, pending.photo, outbox=self.outbox,
                                 captured_at=pending.captured_at,
                                 model_version=self.reader.model_version if self.reader else None)
        except Exception as e:
            # SubmitError, KeyFileError, OSError, and a full disk or locked database (sqlite3.Error): either way
            # the reading still waits and the officer is told, instead of the kit staying busy. Unless the
            # error came after the commit: then the result is stored, and confirming again would sign it twice.
            with contextlib.suppress(Exception):
                stored = [r for r in self.outbox.rows() if r.evidence_sha256 == pending.photo_sha256]
                if stored:
                    self._inbox.put(_Signed(stored[0].submission_id, stored[0].seq,
                                            (time.perf_counter() - t0) * 1000))
                    return
            self._inbox.put(_JobFailed("sign", str(e), texts.SIGN_FAILED(error=e)))
            return
        self._inbox.put(_Signed(row.submission_id, row.seq, (time.perf_counter() - t0) * 1000))

    def _on_signed(self, msg: _Signed) -> None:
        self.pending = None
        self.pending_store.clear()
        self.current_submission = msg.submission_id
        since = (time.monotonic() - self._press_at) * 1000 if self._press_at is not None else None
        log_event(log, "kit.signed", submission=msg.submission_id, seq=msg.seq, sign_ms=round(msg.sign_ms, 1),
                  press_to_queued_ms=round(since, 1) if since is not None else None)
        self._enter(S.QUEUED, texts.QUEUED(), submission=msg.submission_id)
        early = self._delivery_seen.pop(msg.submission_id, None)
        if early is not None:
            if early != "sent":
                self._on_delivery(_Delivery(msg.submission_id, "sent"))
            self._on_delivery(_Delivery(msg.submission_id, early))
        if self.delivery is not None:
            self.delivery.notify()

    # ------------------------------------------------------------------ delivery (from its thread)
    def _on_delivery(self, msg: _Delivery) -> None:
        # The delivery thread may see a row before the signing job has reported it: remember every answer.
        if self._delivery_seen.get(msg.submission_id) in ("acknowledged", "rejected"):
            return
        self._delivery_seen[msg.submission_id] = msg.state
        if msg.submission_id != self.current_submission or self.state not in (S.QUEUED, S.SENT):
            return  # an older result, or the officer has moved on: the outbox keeps its receipt anyway
        if msg.state == "sent":
            self._enter(S.SENT, submission=msg.submission_id)
        elif msg.state == "acknowledged":
            since = (time.monotonic() - self._press_at) * 1000 if self._press_at is not None else None
            log_event(log, "kit.receipt", submission=msg.submission_id,
                      press_to_ack_ms=round(since, 1) if since is not None else None)
            self._enter(S.ACKNOWLEDGED, texts.ACKNOWLEDGED(), submission=msg.submission_id)
        elif msg.state == "rejected":
            row = self.outbox.get(msg.submission_id)
            why = row.ack_reason if row else None
            log_event(log, "kit.district_refused", submission=msg.submission_id, why=why)
            self._enter(S.REJECTED, texts.DISTRICT_REFUSED(why=why), submission=msg.submission_id)

    # ------------------------------------------------------------------ the control socket
    def _answer(self, line: str) -> str:
        """On the control socket's thread: hand the command to the main loop and wait for its answer."""
        reply: queue.Queue[str] = queue.Queue()
        self._inbox.put(_Command(line, reply))
        return reply.get(timeout=REPLY_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        return {"state": str(self.state), "kit": self.cfg.kit.id, "tps": self.cfg.kit.tps,
                "message": self.message.text if self.message else None,
                "officer": self.message.to_dict() if self.message else None,  # key, id, en, level: for a page
                "pending": self.pending is not None, "submission": self.current_submission,
                "attempts": self.attempts,
                "outbox": self.outbox.counts() if self.outbox else None,
                "problems": [{"key": p.key, "message": p.message} for p in self.problems],
                "page": self.page.url + "/" if self.page is not None else None}

    def _on_command(self, line: str) -> str:
        words = line.split()
        log_event(log, "kit.control", command=words[0] if words else "")
        if words == ["status"]:
            return json.dumps(self.status())
        if words == ["pending"]:
            return json.dumps(self.pending.reading.to_dict() if self.pending else None)
        if len(words) == 3 and words[0] == "correct":
            return json.dumps(self._changing(self.correct(words[1], words[2])))
        if words == ["view"]:
            from tpskit.edge.screen_view import view

            return json.dumps(view(self))
        if len(words) == 3 and words[0] == "check":
            return json.dumps(self.check(words[1], words[2]))
        if len(words) == 2 and words[0] == "slip" and words[1] in ("on", "off"):
            return json.dumps(self._changing(self.mark_slip(words[1] == "on")))
        if words == ["confirm"]:
            return json.dumps(self._changing(self.confirm()))
        return json.dumps({"error": f"unknown command {line!r}; commands: status | pending | correct FIELD VALUE | "
                                    "check FIELD VALUE | slip on|off | confirm | view"})

    def _changing(self, answer: dict[str, Any]) -> dict[str, Any]:
        if "error" not in answer:
            self.changes.bump()
        return answer

    def _draft(self, name: str, raw: str) -> Reading | dict[str, Any]:
        """The pending reading with one field set to the officer's value (not stored), or the error."""
        if self.state not in PENDING or self.pending is None or self.reader is None:
            return {"error": f"nothing to correct (the kit is {self.state})"}
        # ASCII digits only ('²' passes isdigit() but not int()), and few enough for int(): on the main loop
        # a ValueError here would stop the daemon.
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
            return {"error": f"{raw!r} is not a whole number from 0 to 999999999"}
        reading = self.pending.reading
        try:
            template = self.reader.template(reading.template)
            return reading.corrected(template, name, int(raw), self.cfg.kit.registered_voters)
        except StopIteration:
            return {"error": f"form {reading.template!r} is not installed on this kit"}
        except CorrectionError as e:
            return {"error": str(e)}

    def check(self, name: str, raw: str) -> dict[str, Any]:
        """The form's checks over the pending reading as if `name` were `raw`; nothing is stored (the page
        asks this as the officer types)."""
        new = self._draft(name, raw)
        if isinstance(new, dict):
            return new
        return {"ok": True, "status": new.status, "checks": [c.model_dump() for c in new.checks]}

    def mark_slip(self, on: bool) -> dict[str, Any]:
        if self.state not in PENDING or self.pending is None:
            return {"error": f"nothing to mark (the kit is {self.state})"}
        reading = self.pending.reading
        if on and not reading.failing_checks():
            return {"error": "every check passes: there is no slip to mark"}
        new = reading.with_slip(on)
        log_event(log, "kit.slip", on=new.officer_slip, failing=reading.failing_checks())
        self.pending = Pending(new, self.pending.photo, self.pending.captured_at)
        self.pending_store.save(self.pending)
        return {"ok": True, "officer_slip": new.officer_slip}

    def confirm(self) -> dict[str, Any]:
        """The page's Confirm: as the Confirm button, but only when every check passes or the officer marked
        the sheet's arithmetic as written that way."""
        if self.state not in PENDING or self.pending is None:
            return {"error": f"nothing to confirm (the kit is {self.state})"}
        if not self.pending.reading.confirmable():
            return {"error": "a check fails: correct the value, or mark the sheet's arithmetic as written that way"}
        self._press_at = time.monotonic()
        self._start_signing()
        return {"ok": True}

    def correct(self, name: str, raw: str) -> dict[str, Any]:
        """Apply the officer's value for one field of the pending reading (from a screen or touch page)."""
        new = self._draft(name, raw)
        if isinstance(new, dict):
            return new
        f = new.fields[name]
        log_event(log, "kit.corrected", field=name, ocr_value=f.ocr_value, value=f.value, status=new.status)
        self.pending = Pending(new, self.pending.photo, self.pending.captured_at)
        self.pending_store.save(self.pending)
        self._show_pending()
        return {"ok": True, "status": new.status, "reading": new.to_dict()}

    # ------------------------------------------------------------------ presses arrive on their own thread
    def _forward_presses(self) -> None:
        while True:
            ev = self.controls.events.get()
            self._inbox.put(ev)


def run_daemon(cfg: KitConfig, stop: threading.Event) -> int:
    """What `tpskit kit run` does: start, loop until `stop`, close. Returns the exit status."""
    try:
        daemon = KitDaemon(cfg)
    except (RuntimeError, OSError) as e:  # no GPIO access, socket folder not writable: the technician's job
        log_event(log, "kit.fault", kind="hardware", message=str(e))
        SystemdNotifier().status(f"fault: {e}")
        return 1  # systemd restarts, then tpskit-kit-fault.service holds the red light
    try:
        daemon.start()
        daemon.run(stop)
    finally:
        daemon.close()
    return 0
