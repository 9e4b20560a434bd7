"""`tpskit kit selftest`: every check passes on a good kit; a revoked, offline, unfocused kit fails loudly."""

from __future__ import annotations

from typing import Any

import pytest
from kit_daemon_rig import cleanup, make_sheet, photo_folder, short_dir, simulate

from tpskit.cli import main
from tpskit.edge.config import load_kit_config
from tpskit.edge.selftest import run_selftest
from tpskit.firmware.sim_client import history, press

pytestmark = pytest.mark.broker


def test_selftest_passes_every_check_on_a_good_kit_with_the_technician_pressing(rig_factory, tmp_path):
    rig = rig_factory(1)
    kit = rig.kit(0)
    socks = short_dir()
    try:
        sim = simulate(kit.config_path, photo_folder(tmp_path / "photos", make_sheet(kit.tps, 11)), socks)
        cfg = load_kit_config(kit.config_path)
        cfg = cfg.model_copy(update={"dev": cfg.dev.model_copy(update={"allow_simulated_hardware": False})})
        lines: list[str] = []
        lights: list[Any] = []

        def technician(line: str) -> None:
            lines.append(line)
            if "press CAPTURE" in line:
                press(sim.controls_socket, "capture")
            elif "press CONFIRM now" in line:
                press(sim.controls_socket, "confirm")
            elif "watch the lights" in line:
                lights.extend(history(sim.controls_socket))
                press(sim.controls_socket, "confirm")

        results = run_selftest(cfg, echo=technician)
    finally:
        cleanup(socks)
    failed = [r for r in results if not r.passed]
    assert failed == [], "\n".join(lines)
    names = [r.name for r in results]
    assert names == ["configuration", "clock", "key and certificate", "certificate valid, not revoked", "free disk",
                     "model reads the reference sheet", "camera capture and focus",
                     "broker reachable with the kit certificate", "button capture", "button confirm",
                     "lights and buzzer"]
    lit = [h["value"] for h in lights if h["kind"] == "leds"]
    for colour in ("green", "amber", "red"):
        assert {**{"green": "off", "amber": "off", "red": "off"}, colour: "on"} in lit
    assert {"kind": "beep", "value": "long"} in lights


def test_selftest_fails_on_a_revoked_kit_an_unreachable_broker_a_blurred_camera_and_no_presses(
        rig_factory, tmp_path, capsys):
    from tpskit.provisioning.district import revoke

    rig = rig_factory(1)
    kit = rig.kit(0)
    revoke(rig.root, kit.kit_id, "stolen")
    rig.broker.stop()
    socks = short_dir()
    try:
        blurred = make_sheet(kit.tps, 12, bad="out_of_focus")
        simulate(kit.config_path, photo_folder(tmp_path / "photos", blurred), socks)
        with open(kit.config_path, "a") as f:
            f.write(f'\n[selftest]\ncrl = "{rig.root / "broker" / "crl.pem"}"\nbutton_timeout_s = 0.5\n'
                    "broker_timeout_s = 2.0\n")
        code = main(["kit", "selftest", "--config", str(kit.config_path)])
    finally:
        cleanup(socks)
    out = capsys.readouterr().out
    assert code == 1
    failed = sorted(line.split(":")[0] for line in out.splitlines() if line.startswith("[FAIL]"))
    assert failed == ["[FAIL] broker reachable with the kit certificate", "[FAIL] button capture",
                      "[FAIL] button confirm", "[FAIL] camera capture and focus",
                      "[FAIL] certificate valid, not revoked", "[FAIL] configuration", "[FAIL] lights and buzzer"]
    assert "is REVOKED" in out and "allow_simulated_hardware" in out and "sharpness" in out
