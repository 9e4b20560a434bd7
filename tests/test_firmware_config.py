"""The hardware tables of the kit file: strict models with kit defaults, and the simulated-hardware rule."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tpskit.firmware.config import (
    CameraConfig,
    ControlsConfig,
    DevConfig,
    HardwarePolicyError,
    PinsConfig,
    check_hardware_policy,
    dev_flags_in_use,
)


def test_defaults_describe_a_real_kit() -> None:
    cam, ctl = CameraConfig(), ControlsConfig()
    assert cam.backend == "picamera2" and cam.resolution == (4608, 2592) and cam.focus == "manual"
    assert ctl.backend == "gpio" and ctl.buttons_active_low and ctl.debounce_ms > 0


def test_every_field_is_described() -> None:
    for model in (CameraConfig, ControlsConfig, PinsConfig, DevConfig):
        undocumented = [n for n, f in model.model_fields.items() if not f.description]
        assert undocumented == [], model.__name__


def test_fails_on_an_unknown_key() -> None:
    with pytest.raises(ValidationError, match="lens_postion"):
        CameraConfig.model_validate({"lens_postion": 3.0})


def test_fails_on_two_outputs_on_one_pin() -> None:
    with pytest.raises(ValidationError, match="BCM pin 22"):
        ControlsConfig.model_validate({"pins": {"led_red": 22}})


def test_the_simulated_camera_serves_a_folder_and_refuses_the_removed_render_source_naming_the_fix() -> None:
    folder = CameraConfig.model_validate({"simulated": {"source": "/tmp/photos"}}).simulated.source
    assert str(folder) == "/tmp/photos"
    # The kit never imports the sheet generator: photos are made beforehand by `tpskit form fill`.
    with pytest.raises(ValidationError, match="tpskit form fill"):
        CameraConfig.model_validate({"simulated": {"source": "render"}})


@pytest.mark.parametrize(("camera", "controls", "key"), [
    ("simulated", "gpio", "camera.backend"),
    ("picamera2", "simulated", "controls.backend"),
])
def test_fails_on_simulated_hardware_on_a_provisioned_kit(camera: str, controls: str, key: str) -> None:
    with pytest.raises(HardwarePolicyError) as e:
        check_hardware_policy(CameraConfig(backend=camera), ControlsConfig(backend=controls), DevConfig(),
                              provisioned=True)
    assert e.value.key == key
    assert key in e.value.message and "allow_simulated_hardware = true" in e.value.message


def test_simulated_hardware_allowed_unprovisioned_or_with_the_dev_flag() -> None:
    sim_cam, sim_ctl = CameraConfig(backend="simulated"), ControlsConfig(backend="simulated")
    check_hardware_policy(sim_cam, sim_ctl, DevConfig(), provisioned=False)
    flag = DevConfig(allow_simulated_hardware=True)
    check_hardware_policy(sim_cam, sim_ctl, flag, provisioned=True)
    assert [(f.key, f.production_allowed) for f in dev_flags_in_use(flag)] == [
        ("dev.allow_simulated_hardware", False)]
    assert dev_flags_in_use(DevConfig()) == []
