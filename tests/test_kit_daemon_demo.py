"""The demo hook: a provisioned kit folder, driven through `tpskit kit run` by simulated presses."""

from __future__ import annotations

import pytest
from conftest import TPS_CODES
from kit_daemon_rig import make_sheet

from tpskit.demo_kit import drive_kit

pytestmark = pytest.mark.broker


def test_drive_kit_takes_a_provisioned_kit_from_a_refused_photo_to_the_district_receipt(rig_factory):
    rig = rig_factory(1)
    rig.serve_inprocess()
    kit = rig.kit(0)
    covered, good = make_sheet(TPS_CODES[0], 31, bad="marker_missing"), make_sheet(TPS_CODES[0], 32)
    lines: list[str] = []
    run = drive_kit(kit.config_path, [covered.jpeg, good.jpeg], truth=good.values, echo=lines.append)
    assert run.state == "acknowledged", "\n".join(lines)
    assert run.values == good.values
    assert run.signals[-1] == "acknowledged" and "refused" in run.signals
    assert any("bottom-right corner" in m for m in run.messages)
    [stored] = rig.stored()
    assert stored["submission_id"] == run.submission_id
    assert not kit.config_path.with_name("kit-daemon.toml").exists()
