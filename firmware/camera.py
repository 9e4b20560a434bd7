"""The camera: the one module that owns it. A real picamera2 backend and a simulated one behind one interface.

`make_camera(cfg)` picks the backend named in `[camera] backend`. Callers see JPEG bytes, a `CameraStatus`
and `CameraError(kind, message)` whose message an officer or technician can act on. picamera2 (and its
libcamera bindings) are imported only inside `Picamera2Camera`, so the module loads on any machine.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from tpskit.events import Event, log_event, register

from .config import CameraConfig

log = logging.getLogger("tpskit.firmware.camera")

register(
    Event("camera.opened", "info", "The camera was opened and configured for stills."),
    Event("camera.error", "error", "A capture failed; kind is no_camera, busy, timeout or error."),
    Event("camera.retry", "warning",
          "A capture timed out; the camera is re-opened and the capture retried once."),
    Event("camera.autofocus_failed", "warning",
          "The autofocus cycle did not report focus; the photo is taken anyway."),
    Event("camera.not_settled", "warning",
          "Exposure had not converged within settle_frames; the photo is taken anyway."),
)

CameraKind = Literal["ready", "no_camera", "busy", "timeout", "error"]


@dataclass(frozen=True)
class CameraStatus:
    """What the camera is doing now; `message` is plain words for the officer or technician."""

    kind: CameraKind
    message: str


class CameraError(Exception):
    """A capture that failed. `kind` is one of no_camera, busy, timeout, error."""

    def __init__(self, kind: CameraKind, message: str) -> None:
        super().__init__(message)
        self.kind: CameraKind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class Camera(Protocol):
    def start(self) -> None: ...
    def capture_jpeg(self) -> bytes: ...
    def status(self) -> CameraStatus: ...
    def close(self) -> None: ...


def make_camera(cfg: CameraConfig) -> Camera:
    """The backend named in the configuration; nothing is opened until `start()`."""
    factories: dict[str, Callable[[CameraConfig], Camera]] = {
        "picamera2": Picamera2Camera,
        "simulated": SimulatedCamera,
    }
    return factories[cfg.backend](cfg)


MSG_NO_CAMERA = (
    "No camera found. Switch off, check the ribbon cable is seated at both ends (contacts towards the board "
    "on the Pi, towards the lens board on the camera), switch on again."
)
MSG_BUSY = (
    "The camera is held by another program (a second tpskit, rpicam-still, or a test left running). "
    "Stop it, then press Capture again; a restart of the kit also frees it."
)
MSG_TIMEOUT = (
    "The camera did not deliver a photo in time, even after re-opening it. Restart the kit; if it happens "
    "again, check the ribbon cable and the power supply."
)
MSG_NOT_INSTALLED = (
    "picamera2 is not importable: install it with `apt install python3-picamera2` and create the venv with "
    "--system-site-packages (see README, Install on a Raspberry Pi)."
)


def _capture_with_one_retry(capture_once: Callable[[], bytes], reopen: Callable[[], None]) -> bytes:
    """libcamera occasionally stops delivering frames; one re-open usually clears it. Twice is a fault."""
    try:
        return capture_once()
    except CameraError as e:
        if e.kind != "timeout":
            log_event(log, "camera.error", kind=e.kind, message=e.message)
            raise
        log_event(log, "camera.retry", message=e.message)
    try:
        reopen()
        return capture_once()
    except CameraError as e:
        final = CameraError("timeout", MSG_TIMEOUT) if e.kind == "timeout" else e
        log_event(log, "camera.error", kind=final.kind, message=final.message, detail=e.message)
        raise final from e


class Picamera2Camera:
    """Camera Module 3 (or any libcamera camera) through picamera2, for a sheet on a fixed stand.

    One still configuration at full resolution, created once at start. Focus is locked at the configured lens
    position, or an autofocus cycle runs before each capture. Before each capture a few frames' metadata are
    examined until auto exposure reports convergence (`AeState` on current libcamera, `AeLocked` on older)
    and the white-balance gains are steady. The capture itself is a `capture_request` job waited on with a
    timeout; the request is always released. A libcamera call that hangs outside a job is caught by the
    systemd watchdog of the daemon, not here.
    """

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self._cam: Any = None
        self._controls: Any = None  # libcamera.controls, for the AfMode enums
        self._lock = threading.Lock()
        self._status = CameraStatus("error", "camera not started")

    # -- opening -------------------------------------------------------------------------------------
    def start(self) -> None:
        try:
            from libcamera import controls
            from picamera2 import Picamera2
        except ImportError as e:
            self._fail(CameraError("error", MSG_NOT_INSTALLED), cause=e)
        self._controls = controls
        try:
            cameras = Picamera2.global_camera_info()
        except Exception:  # a broken camera manager counts as no camera; the message says what to check
            cameras = []
        if not cameras:
            self._fail(CameraError("no_camera", MSG_NO_CAMERA))
        try:
            cam = Picamera2(self.cfg.camera_index)
        except (RuntimeError, IndexError) as e:
            # picamera2 wraps every open failure as "Camera __init__ sequence did not complete."; the cause
            # (acquire() returning -16 / EBUSY, "Failed to acquire camera") says another process holds it.
            cause = f"{e} {e.__context__ or ''}".lower()
            if any(w in cause for w in ("acquire", "-16", "busy", "in use")):
                self._fail(CameraError("busy", MSG_BUSY), cause=e)
            self._fail(CameraError("error", f"The camera could not be opened ({e}). Restart the kit."),
                       cause=e)
        try:
            config = cam.create_still_configuration(
                # RGB888 is stored B,G,R in memory: the array goes straight to cv2.imencode.
                main={"size": tuple(self.cfg.resolution), "format": "RGB888"},
                buffer_count=2,
                controls=self._focus_controls(cam),
            )
            cam.configure(config)
            cam.start()
        except Exception as e:
            _close_quietly(cam)
            self._fail(CameraError("error", f"The camera could not be configured ({e}). Restart the kit."),
                       cause=e)
        self._cam = cam
        self._status = CameraStatus("ready", "camera ready")
        log_event(log, "camera.opened", resolution=list(self.cfg.resolution), focus=self.cfg.focus,
                  lens_position=self.cfg.lens_position if self.cfg.focus == "manual" else None)

    def _focus_controls(self, cam: Any) -> dict[str, Any]:
        if "AfMode" not in getattr(cam, "camera_controls", {}):
            return {}  # fixed-focus module (Camera Module 2, HQ camera): nothing to set
        if self.cfg.focus == "manual":
            # Set before start() so the very first frame already has the lens where the stand needs it.
            return {"AfMode": self._controls.AfModeEnum.Manual, "LensPosition": float(self.cfg.lens_position)}
        return {"AfMode": self._controls.AfModeEnum.Auto}

    def _fail(self, err: CameraError, cause: BaseException | None = None) -> None:
        self._status = CameraStatus(err.kind, err.message)
        log_event(log, "camera.error", kind=err.kind, message=err.message,
                  cause=repr(cause) if cause is not None else None)
        raise err from cause

    # -- capturing -----------------------------------------------------------------------------------
    def capture_jpeg(self) -> bytes:
        with self._lock:
            if self._cam is None:
                self.start()
            jpeg = _capture_with_one_retry(self._capture_once, self._reopen)
            self._status = CameraStatus("ready", "camera ready")
            return jpeg

    def _reopen(self) -> None:
        self._close_camera()
        self.start()

    def _wait(self, job: Any, timeout: float, what: str) -> Any:
        try:
            return self._cam.wait(job, timeout=timeout)
        except TimeoutError as e:
            # Drop the stuck job so a late frame is not handed to nobody (its buffer would never return).
            with contextlib.suppress(Exception):
                self._cam.cancel_all_and_flush()
            err = CameraError("timeout", f"no {what} within {timeout:g} s")
            self._status = CameraStatus("timeout", MSG_TIMEOUT)
            raise err from e

    def _capture_once(self) -> bytes:
        cam = self._cam
        if self.cfg.focus == "auto" and "AfMode" in getattr(cam, "camera_controls", {}):
            focused = self._wait(cam.autofocus_cycle(wait=False), self.cfg.autofocus_timeout_s, "autofocus")
            if not focused:
                log_event(log, "camera.autofocus_failed")
        self._settle()
        job = cam.capture_request(wait=False)
        request = self._wait(job, self.cfg.capture_timeout_s, "frame")
        try:
            frame = request.make_array("main")
        finally:
            request.release()  # the buffer goes back to libcamera whatever happens next
        return _encode_jpeg(frame, self.cfg.jpeg_quality)

    def _settle(self) -> None:
        previous_gains = None
        for _ in range(self.cfg.settle_frames):
            job = self._cam.capture_metadata(wait=False)
            md = self._wait(job, self.cfg.capture_timeout_s, "frame metadata")
            gains = md.get("ColourGains")
            awb_steady = gains is None or (
                previous_gains is not None and all(abs(a - b) <= 0.02 * max(b, 1e-6)
                                                   for a, b in zip(gains, previous_gains, strict=False))
            )
            previous_gains = gains
            if _ae_converged(md) and awb_steady:
                return
        if self.cfg.settle_frames:
            log_event(log, "camera.not_settled", frames=self.cfg.settle_frames)

    # -- state ---------------------------------------------------------------------------------------
    def status(self) -> CameraStatus:
        return self._status

    def _close_camera(self) -> None:
        cam, self._cam = self._cam, None
        if cam is not None:
            _close_quietly(cam)

    def close(self) -> None:
        with self._lock:
            self._close_camera()
            self._status = CameraStatus("error", "camera closed")


def _ae_converged(md: dict[str, Any]) -> bool:
    # libcamera >= 0.5 reports AeState (2 = Converged); earlier releases report AeLocked (bool).
    if "AeState" in md:
        return int(md["AeState"]) == 2
    if "AeLocked" in md:
        return bool(md["AeLocked"])
    return True  # a camera without AE metadata has nothing to wait for


def _close_quietly(cam: Any) -> None:
    for method in ("stop", "close"):
        with contextlib.suppress(Exception):
            getattr(cam, method)()


def _encode_jpeg(frame: Any, quality: int) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise CameraError("error", "The photo could not be encoded as JPEG.")
    return buf.tobytes()


FAIL_FILE = "FAIL_NEXT"


class SimulatedCamera:
    """Serves JPEGs from a folder in name order.

    Tests and demos make it fail: a file FAIL_NEXT in the folder holding a kind (`timeout`, `busy`,
    `no_camera`, `error`) and optionally a count (`timeout 2`) fails that many captures, then is removed;
    or call `fail_next(kind, times)`. A timeout goes through the same one-retry rule as the real camera.
    """

    def __init__(self, cfg: CameraConfig) -> None:
        self.cfg = cfg
        self.sim = cfg.simulated
        self._next = 0
        self._failures: list[CameraKind] = []
        self._started = False
        self._lock = threading.Lock()
        self._status = CameraStatus("error", "camera not started")
        self.captures = 0  # successful captures, for tests and benches
        self.opens = 0  # times started, so tests can see the re-open of a retry

    @property
    def folder(self) -> Path:
        return Path(self.sim.source)

    def start(self) -> None:
        self.opens += 1
        self._photos()  # refuses a missing or empty folder at start, not at the first press
        self._started = True
        self._status = CameraStatus("ready", "simulated camera ready")

    def fail_next(self, kind: CameraKind, times: int = 1) -> None:
        self._failures.extend([kind] * times)

    def _photos(self) -> list[Path]:
        folder = self.folder
        photos = sorted(p for p in folder.glob("*") if p.suffix.lower() in (".jpg", ".jpeg")) \
            if folder.is_dir() else []
        if not photos:
            err = CameraError("no_camera", f"The simulated camera's folder {folder} holds no JPEG photos "
                                           "(*.jpg); put photos there or set [camera.simulated] source.")
            self._status = CameraStatus(err.kind, err.message)
            raise err
        return photos

    def _take_forced_failure(self) -> CameraKind | None:
        folder = self.folder
        if (folder / FAIL_FILE).exists():
            words = (folder / FAIL_FILE).read_text().split() or ["error"]
            (folder / FAIL_FILE).unlink()
            count = int(words[1]) if len(words) > 1 else 1
            self._failures.extend([words[0]] * count)  # type: ignore[list-item]
        return self._failures.pop(0) if self._failures else None

    def _capture_once(self) -> bytes:
        kind = self._take_forced_failure()
        if kind is not None:
            messages = {"timeout": "no frame (simulated timeout)", "busy": MSG_BUSY,
                        "no_camera": MSG_NO_CAMERA}
            err = CameraError(kind, messages.get(kind, f"simulated {kind} failure"))
            self._status = CameraStatus(kind, err.message)
            raise err
        photos = self._photos()
        if self._next >= len(photos):
            if not self.sim.loop:
                raise CameraError("error", f"All {len(photos)} simulated photos have been served "
                                           "(loop = false).")
            self._next = 0
        photo = photos[self._next]
        self._next += 1
        return photo.read_bytes()

    def capture_jpeg(self) -> bytes:
        with self._lock:
            if not self._started:
                self.start()
            t0 = time.monotonic()
            jpeg = _capture_with_one_retry(self._capture_once, self.start)
            self.captures += 1
            self._status = CameraStatus("ready", f"simulated capture in {time.monotonic() - t0:.3f} s")
            return jpeg

    def status(self) -> CameraStatus:
        return self._status

    def close(self) -> None:
        self._started = False
        self._status = CameraStatus("error", "camera closed")
