"""The kit process killed (SIGKILL) between signing and publishing: delivered once after restart."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
from conftest import fake_jpeg, make_reading, wait_for

from tpskit.edge.outbox import Outbox

pytestmark = pytest.mark.broker


def test_kit_killed_between_signing_and_publishing_delivers_once_after_restart(rig_factory, tmp_path):
    rig = rig_factory(1)
    rig.serve_inprocess()
    kit = rig.kit(0)
    cfg = kit.config()
    reading = tmp_path / "reading.json"
    reading.write_text(json.dumps(make_reading(kit.tps)))
    photo = tmp_path / "sheet.jpg"
    photo.write_bytes(fake_jpeg("killed"))
    rig.broker.stop()  # the result can be signed and queued, but not published
    cli = [sys.executable, "-m", "tpskit.cli", "kit"]
    proc = subprocess.Popen([*cli, "submit", str(reading), "--photo", str(photo), "--config", str(kit.config_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def queued() -> list:
            if not cfg.outbox_path.exists():
                return []
            with Outbox(cfg.outbox_path) as box:
                return box.rows()

        rows = wait_for(queued, 30, "the signed result in the outbox")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert [(r.seq, r.state) for r in rows] == [(1, "queued")]
    assert rig.stored() == []

    rig.broker.start()
    done = subprocess.run([*cli, "deliver", "--until-idle", "--timeout", "45", "--config", str(kit.config_path)],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    with Outbox(cfg.outbox_path) as box:
        after = box.rows()
    assert [(r.submission_id, r.state, r.ack_status) for r in after] == [(rows[0].submission_id, "acknowledged",
                                                                          "accepted")]
    stored = rig.stored()
    assert [(s["submission_id"], s["envelope"]) for s in stored] == [(rows[0].submission_id, rows[0].envelope)]
