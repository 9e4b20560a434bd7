"""The camera: the simulated backend, and the picamera2 backend against a FAKE picamera2 (tests only)."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from tpskit.firmware.camera import (
    CameraError,
    Picamera2Camera,
    SimulatedCamera,
    make_camera,
)
from tpskit.firmware.config import CameraConfig


def sim_config(folder: Path, **kw: Any) -> CameraConfig:
    return CameraConfig.model_validate({"backend": "simulated", "simulated": {"source": str(folder), **kw}})


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    for name in ("b.jpg", "a.jpg", "c.JPEG", "notes.txt"):
        (tmp_path / name).write_bytes(name.encode())
    return tmp_path


def test_factory_picks_the_backend_named_in_config(photos: Path) -> None:
    assert isinstance(make_camera(sim_config(photos)), SimulatedCamera)
    assert isinstance(make_camera(CameraConfig()), Picamera2Camera)


def test_simulated_camera_serves_the_folder_in_name_order_and_loops(photos: Path) -> None:
    cam = make_camera(sim_config(photos))
    cam.start()
    assert [cam.capture_jpeg() for _ in range(4)] == [b"a.jpg", b"b.jpg", b"c.JPEG", b"a.jpg"]
    assert cam.status().kind == "ready"


def test_simulated_camera_without_loop_says_the_photos_ran_out(photos: Path) -> None:
    cam = make_camera(sim_config(photos, loop=False))
    for _ in range(3):
        cam.capture_jpeg()
    with pytest.raises(CameraError, match="All 3 simulated photos"):
        cam.capture_jpeg()


def test_fails_on_an_empty_folder_with_the_folder_named(tmp_path: Path) -> None:
    cam = make_camera(sim_config(tmp_path))
    with pytest.raises(CameraError) as e:
        cam.start()
    assert e.value.kind == "no_camera" and str(tmp_path) in e.value.message
    assert cam.status().kind == "no_camera"


def test_a_timeout_is_retried_once_after_reopening_the_camera(photos: Path) -> None:
    cam = make_camera(sim_config(photos))
    cam.start()
    (photos / "FAIL_NEXT").write_text("timeout\n")
    assert cam.capture_jpeg() == b"a.jpg"
    assert cam.opens == 2 and not (photos / "FAIL_NEXT").exists()


def test_a_second_timeout_fails_with_plain_words(photos: Path) -> None:
    cam = make_camera(sim_config(photos))
    cam.fail_next("timeout", times=2)
    with pytest.raises(CameraError) as e:
        cam.capture_jpeg()
    assert e.value.kind == "timeout" and "Restart the kit" in e.value.message


def test_a_busy_camera_is_not_retried(photos: Path) -> None:
    cam = make_camera(sim_config(photos))
    cam.start()
    (photos / "FAIL_NEXT").write_text("busy")
    with pytest.raises(CameraError) as e:
        cam.capture_jpeg()
    assert e.value.kind == "busy" and cam.opens == 1
    assert cam.capture_jpeg() == b"a.jpg"


# ---- picamera2 backend against a FAKE picamera2 + libcamera (installed into sys.modules by the fixture) ----

class FakeJob:
    def __init__(self, result: Any = None, hang: bool = False) -> None:
        self.result, self.hang = result, hang


class FakeRequest:
    def __init__(self, cam: FakePicamera2) -> None:
        self.cam = cam
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        self.cam.calls.append(("make_array", name))
        if self.cam.break_array:
            raise RuntimeError("buffer gone")
        return np.full((48, 64, 3), 128, np.uint8)

    def release(self) -> None:
        self.released = True


class FakePicamera2:
    """A FAKE of picamera2.Picamera2 recording the call sequence; class attributes span re-opens."""

    attached: ClassVar[list[dict[str, str]]] = [{"Model": "imx708"}]
    open_error: ClassVar[Exception | None] = None
    hangs: ClassVar[int] = 0  # how many capture_request jobs never complete
    instances: ClassVar[list[FakePicamera2]] = []

    def __init__(self, camera_num: int = 0) -> None:
        if FakePicamera2.open_error is not None:
            raise FakePicamera2.open_error
        self.camera_controls = {"AfMode": (0, 2, 0), "LensPosition": (0.0, 15.0, 1.0)}
        self.calls: list[Any] = []
        self.requests: list[FakeRequest] = []
        self.break_array = False
        self.metadata = [{"AeState": 1, "ColourGains": (2.0, 1.5)}, {"AeState": 2, "ColourGains": (2.0, 1.5)}]
        FakePicamera2.instances.append(self)

    @staticmethod
    def global_camera_info() -> list[dict[str, str]]:
        return FakePicamera2.attached

    def create_still_configuration(self, **kw: Any) -> dict[str, Any]:
        self.calls.append(("create_still_configuration", kw))
        return {"still": kw}

    def configure(self, config: Any) -> None:
        self.calls.append(("configure",))

    def start(self) -> None:
        self.calls.append(("start",))

    def stop(self) -> None:
        self.calls.append(("stop",))

    def close(self) -> None:
        self.calls.append(("close",))

    def autofocus_cycle(self, wait: Any = None) -> FakeJob:
        self.calls.append(("autofocus_cycle", wait))
        return FakeJob(True)

    def capture_metadata(self, wait: Any = None) -> FakeJob:
        self.calls.append(("capture_metadata", wait))
        return FakeJob(self.metadata.pop(0) if len(self.metadata) > 1 else self.metadata[0])

    def capture_request(self, wait: Any = None) -> FakeJob:
        self.calls.append(("capture_request", wait))
        if FakePicamera2.hangs:
            FakePicamera2.hangs -= 1
            return FakeJob(hang=True)
        self.requests.append(FakeRequest(self))
        return FakeJob(self.requests[-1])

    def wait(self, job: FakeJob, timeout: float | None = None) -> Any:
        self.calls.append(("wait", timeout))
        if job.hang:
            raise TimeoutError()
        return job.result

    def cancel_all_and_flush(self) -> None:
        self.calls.append(("cancel_all_and_flush",))


@pytest.fixture
def fake_picamera2(monkeypatch: pytest.MonkeyPatch) -> type[FakePicamera2]:
    FakePicamera2.attached, FakePicamera2.open_error = [{"Model": "imx708"}], None
    FakePicamera2.hangs, FakePicamera2.instances = 0, []
    picamera2 = types.ModuleType("picamera2")
    picamera2.Picamera2 = FakePicamera2  # type: ignore[attr-defined]
    libcamera = types.ModuleType("libcamera")
    libcamera.controls = types.SimpleNamespace(  # type: ignore[attr-defined]
        AfModeEnum=types.SimpleNamespace(Manual=0, Auto=1, Continuous=2))
    monkeypatch.setitem(sys.modules, "picamera2", picamera2)
    monkeypatch.setitem(sys.modules, "libcamera", libcamera)
    return FakePicamera2


def pi_config(**kw: Any) -> CameraConfig:
    return CameraConfig.model_validate({"resolution": [640, 480], "capture_timeout_s": 2.5, **kw})


def test_picamera2_locks_manual_focus_before_start_and_returns_a_jpeg(fake_picamera2: type[FakePicamera2]) -> None:
    cam = Picamera2Camera(pi_config(lens_position=3.0))
    jpeg = cam.capture_jpeg()
    assert jpeg[:2] == b"\xff\xd8"
    pc = fake_picamera2.instances[0]
    name, still = pc.calls[0]
    assert name == "create_still_configuration"
    assert still["main"] == {"size": (640, 480), "format": "RGB888"}
    assert still["controls"] == {"AfMode": 0, "LensPosition": 3.0}
    assert [c[0] for c in pc.calls[1:3]] == ["configure", "start"]
    # exposure settles (AeState 1 then 2 = converged, gains steady) before the request is taken
    assert [c[0] for c in pc.calls[3:]].count("capture_metadata") == 2
    assert ("capture_request", False) in pc.calls and ("wait", 2.5) in pc.calls
    assert all(r.released for r in pc.requests) and not any(c[0] == "autofocus_cycle" for c in pc.calls)
    assert cam.status().kind == "ready"


def test_picamera2_auto_focus_runs_a_cycle_per_capture(fake_picamera2: type[FakePicamera2]) -> None:
    cam = Picamera2Camera(pi_config(focus="auto"))
    cam.capture_jpeg()
    cam.capture_jpeg()
    pc = fake_picamera2.instances[0]
    assert pc.calls[0][1]["controls"] == {"AfMode": 1}
    assert [c for c in pc.calls if c[0] == "autofocus_cycle"] == [("autofocus_cycle", False)] * 2


def test_picamera2_timeout_flushes_reopens_and_retries_once(fake_picamera2: type[FakePicamera2]) -> None:
    fake_picamera2.hangs = 1
    cam = Picamera2Camera(pi_config())
    assert cam.capture_jpeg()[:2] == b"\xff\xd8"
    first, second = fake_picamera2.instances
    assert ("cancel_all_and_flush",) in first.calls and first.calls[-1] == ("close",)
    assert second.requests and all(r.released for r in second.requests)


def test_picamera2_second_timeout_is_an_error_in_plain_words(fake_picamera2: type[FakePicamera2]) -> None:
    fake_picamera2.hangs = 2
    with pytest.raises(CameraError) as e:
        Picamera2Camera(pi_config()).capture_jpeg()
    assert e.value.kind == "timeout" and "ribbon cable" in e.value.message
    assert len(fake_picamera2.instances) == 2


def test_picamera2_releases_the_request_when_reading_it_fails(fake_picamera2: type[FakePicamera2]) -> None:
    cam = Picamera2Camera(pi_config())
    cam.start()
    pc = fake_picamera2.instances[0]
    pc.break_array = True
    with pytest.raises(RuntimeError):
        cam.capture_jpeg()
    assert pc.requests and pc.requests[0].released


def test_picamera2_no_camera_attached(fake_picamera2: type[FakePicamera2]) -> None:
    fake_picamera2.attached = []
    cam = Picamera2Camera(pi_config())
    with pytest.raises(CameraError) as e:
        cam.start()
    assert e.value.kind == "no_camera" and "ribbon cable" in e.value.message
    assert cam.status().kind == "no_camera"


def test_picamera2_camera_held_by_another_process(fake_picamera2: type[FakePicamera2]) -> None:
    try:  # how picamera2 reports it: the acquire failure wrapped in a generic init error
        try:
            raise RuntimeError("Failed to acquire camera: Device or resource busy")
        except RuntimeError:
            raise RuntimeError("Camera __init__ sequence did not complete.")  # noqa: B904
    except RuntimeError as wrapped:
        fake_picamera2.open_error = wrapped
    with pytest.raises(CameraError) as e:
        Picamera2Camera(pi_config()).start()
    assert e.value.kind == "busy" and "another program" in e.value.message


def test_picamera2_missing_library_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)
    with pytest.raises(CameraError, match="apt install python3-picamera2"):
        Picamera2Camera(pi_config()).start()
