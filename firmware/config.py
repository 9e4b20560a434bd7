"""Configuration of the kit hardware: the `[camera]`, `[controls]` and `[dev]` tables of the kit's TOML file.

The kit configuration model (tpskit.config) embeds these tables; the hardware rule (`check_hardware_policy`)
is a plain function it calls, so that the rule and its message live next to the backends they are about.
Defaults describe a real kit: a Camera Module 3 on a fixed stand and the button/LED board on the GPIO header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Camera Module 3 (IMX708) full sensor resolution.
CM3_FULL_RESOLUTION = (4608, 2592)


class _Strict(BaseModel):
    """Refuses unknown keys: a typo in the kit file must stop start-up, not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SimulatedCameraConfig(_Strict):
    """The simulated camera, for tests, the demo and a bench without a camera: it serves photos from a
    folder (make some with `tpskit form fill ... -o FOLDER`, or copy real ones there)."""

    source: Path = Field(
        Path("/var/lib/tpskit/sim-photos"),
        title="Photo folder",
        description="A folder of JPEG photos served in name order.",
    )
    loop: bool = Field(
        True,
        title="Loop over the folder",
        description="Start again at the first photo after the last one; when false, a capture after the last "
        "photo fails with a plain error.",
    )

    @field_validator("source", mode="before")
    @classmethod
    def _no_render(cls, v: object) -> object:
        if v == "render":  # the kit never renders sheets: the generator is a development tool
            raise ValueError('the "render" source is gone: write photos with `tpskit form fill TEMPLATE --tps '
                             'TPS --count N -o FOLDER` and set source = "FOLDER"')
        return v


class CameraConfig(_Strict):
    """`[camera]`: which camera backend the kit uses and how it takes a photo."""

    backend: Literal["picamera2", "simulated"] = Field(
        "picamera2",
        title="Camera backend",
        description='"picamera2" for the Raspberry Pi camera; "simulated" for tests and demos (refused on a '
        "provisioned kit unless [dev] allow_simulated_hardware = true).",
    )
    camera_index: int = Field(
        0, ge=0, title="Camera number", description="libcamera camera index (0 = first)."
    )
    resolution: tuple[int, int] = Field(
        CM3_FULL_RESOLUTION,
        title="Still resolution",
        description="Width and height of the still configuration, in pixels (Camera Module 3: 4608 x 2592).",
    )
    focus: Literal["manual", "auto"] = Field(
        "manual",
        title="Focus mode",
        description='"manual" locks the lens at lens_position (the stand never moves); "auto" runs one '
        "autofocus cycle before every capture.",
    )
    lens_position: float = Field(
        2.5,
        ge=0.0,
        le=32.0,
        title="Lens position (dioptres)",
        description="Manual focus as 1 / (distance in metres from lens to sheet): 2.5 focuses at 40 cm.",
    )
    settle_frames: int = Field(
        8,
        ge=0,
        le=100,
        title="Frames to settle exposure",
        description="At most this many frames are examined before the capture, stopping early when the "
        "metadata reports auto exposure converged and white balance steady.",
    )
    capture_timeout_s: float = Field(
        5.0,
        gt=0,
        le=60,
        title="Capture timeout (s)",
        description="A frame that does not arrive within this time counts as a timeout; the camera is "
        "re-opened and the capture retried once.",
    )
    autofocus_timeout_s: float = Field(
        3.0, gt=0, le=30, title="Autofocus timeout (s)", description="Longest wait for one autofocus cycle."
    )
    jpeg_quality: int = Field(90, ge=50, le=100, title="JPEG quality", description="JPEG quality, 50 to 100.")
    simulated: SimulatedCameraConfig = Field(
        default_factory=SimulatedCameraConfig,
        title="Simulated camera",
        description="Settings used only when backend is \"simulated\".",
    )

    @field_validator("resolution")
    @classmethod
    def _positive_resolution(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] < 64 or v[1] < 64:
            raise ValueError("resolution must be at least 64 x 64 pixels, e.g. [4608, 2592]")
        return v


class PinsConfig(_Strict):
    """BCM (GPIO) numbers of the kit's buttons, lights and buzzer."""

    capture_button: int = Field(17, ge=0, le=27, title="Capture button", description="BCM pin of Capture.")
    confirm_button: int = Field(27, ge=0, le=27, title="Confirm button", description="BCM pin of Confirm.")
    led_green: int = Field(22, ge=0, le=27, title="Green LED", description="BCM pin of the green LED.")
    led_amber: int = Field(23, ge=0, le=27, title="Amber LED", description="BCM pin of the amber LED.")
    led_red: int = Field(24, ge=0, le=27, title="Red LED", description="BCM pin of the red LED.")
    buzzer: int = Field(25, ge=0, le=27, title="Buzzer", description="BCM pin of the (active) buzzer.")

    @model_validator(mode="after")
    def _distinct(self) -> PinsConfig:
        seen: dict[int, str] = {}
        for name, pin in self.model_dump().items():
            if pin in seen:
                raise ValueError(f"{name} and {seen[pin]} are both on BCM pin {pin}; give each its own pin")
            seen[pin] = name
        return self


class ControlsConfig(_Strict):
    """`[controls]`: buttons, lights, buzzer (and the small screen when fitted)."""

    backend: Literal["gpio", "simulated"] = Field(
        "gpio",
        title="Controls backend",
        description='"gpio" for the button/LED board (RPi.GPIO, rpi-lgpio on a Pi 5); "simulated" for tests '
        "and demos, driven through a local control socket (refused on a provisioned kit unless "
        "[dev] allow_simulated_hardware = true).",
    )
    pins: PinsConfig = Field(default_factory=PinsConfig, title="Pins", description="BCM pin numbers.")
    buttons_active_low: bool = Field(
        True,
        title="Buttons pull to ground",
        description="Buttons connect the pin to ground and use the internal pull-up (press = falling edge). "
        "False: buttons connect to 3.3 V with a pull-down (press = rising edge).",
    )
    debounce_ms: int = Field(
        150, ge=1, le=2000, title="Debounce (ms)", description="Edges this soon after a press are ignored."
    )
    simulated_socket: Path = Field(
        Path("/run/tpskit/controls.sock"),
        title="Simulated control socket",
        description="Unix socket of the simulated controls: `press capture`, `press confirm`, `state`.",
    )
    screen_file: Path | None = Field(
        Path("/run/tpskit/screen.json"),
        title="Screen file",
        description="Where the officer message is written for a small display (or a touch page) to show; "
        "none to write nothing.",
    )


class DevConfig(_Strict):
    """`[dev]`: switches for development benches. Each is listed in DEV_FLAGS, which says whether a kit in
    production may use it (the technician self-test reports any that is set)."""

    allow_simulated_hardware: bool = Field(
        False,
        title="Allow simulated hardware",
        description="Lets a provisioned kit run with the simulated camera or controls (a bench with a real "
        "key and certificate but no camera). Never on a kit sent to a polling station.",
    )


@dataclass(frozen=True)
class DevFlag:
    key: str
    doc: str
    production_allowed: bool


# Every development switch in one documented list (VxSuite's environment-flag list).
DEV_FLAGS: tuple[DevFlag, ...] = (
    DevFlag(
        "dev.allow_simulated_hardware",
        "Lets a provisioned kit use the simulated camera/controls; for a test bench only.",
        production_allowed=False,
    ),
)


def dev_flags_in_use(dev: DevConfig) -> list[DevFlag]:
    """The development switches that are on; the self-test fails on any that production may not use."""
    on = {f"dev.{k}" for k, v in dev.model_dump().items() if v is True}
    return [f for f in DEV_FLAGS if f.key in on]


class HardwarePolicyError(ValueError):
    """A configuration the kit must refuse; `key` is the dotted key to change."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def check_hardware_policy(
    camera: CameraConfig, controls: ControlsConfig, dev: DevConfig, *, provisioned: bool
) -> None:
    """Refuse simulated hardware on a provisioned kit (one holding a kit key and certificate for a TPS).

    An unprovisioned kit (tests, demo, a developer laptop) may simulate freely. Raises HardwarePolicyError
    naming the key and the fix; the kit config model calls this from its own validator.
    """
    if not provisioned or dev.allow_simulated_hardware:
        return
    if camera.backend == "simulated":
        raise HardwarePolicyError(
            "camera.backend",
            'camera.backend = "simulated" is refused on a provisioned kit: a result signed with the kit key '
            'must come from the real camera. Fix: set [camera] backend = "picamera2"; on a test bench only, '
            "add [dev] allow_simulated_hardware = true.",
        )
    if controls.backend == "simulated":
        raise HardwarePolicyError(
            "controls.backend",
            'controls.backend = "simulated" is refused on a provisioned kit: the officer\'s buttons must be '
            'the real ones. Fix: set [controls] backend = "gpio"; on a test bench only, add [dev] '
            "allow_simulated_hardware = true.",
        )
