"""The kit outbox's schema is versioned by `PRAGMA user_version` steps: the previous release's outbox (made
before versions, tests/data/previous-release/) is upgraded keeping every entry deliverable and every
receipt verifiable; an outbox newer than this release is refused untouched, and the kit stays not ready
saying why; a later step runs on the previous release's file in one transaction (all or nothing)."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from kit_daemon_rig import cleanup, short_dir, simulate

from tpskit.edge import outbox as outbox_module
from tpskit.edge.outbox import Outbox, OutboxTooNew, Signed, newer_outbox
from tpskit.envelope import Verifier, parse_ack, sha256_hex, verify_result
from tpskit.trust.certs import load_certs

PREVIOUS = Path(__file__).resolve().parent / "data" / "previous-release"


@pytest.fixture
def previous_outbox(tmp_path: Path) -> Path:
    path = tmp_path / "outbox.sqlite"
    shutil.copyfile(PREVIOUS / "outbox.sqlite", path)
    return path


def raw_rows(path: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(path)
    try:
        return con.execute("SELECT * FROM outbox ORDER BY seq").fetchall()
    finally:
        con.close()


def user_version(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_previous_release_outbox_upgrades_keeping_every_entry_deliverable_and_every_receipt(previous_outbox):
    before = raw_rows(previous_outbox)
    assert user_version(previous_outbox) == 0
    verifier = Verifier(load_certs(PREVIOUS / "ca.pem"))
    with Outbox(previous_outbox) as box:
        assert box.upgraded == (0, len(outbox_module.STEPS))
        assert box.counts() == {"queued": 1, "sent": 1, "acknowledged": 2, "rejected": 0}
        rows = box.rows()
        # Delivery goes on where it stopped: the sent one first (it was never answered), then the queued one.
        nxt = box.next_pending()
        assert nxt is not None and (nxt.seq, nxt.state) == (3, "sent")
        for r in rows:
            _, result = verify_result(verifier, r.envelope, arrived=_at(r.created_at))
            assert (result.seq, result.submission_id, result.evidence_sha256) == (r.seq, r.submission_id,
                                                                                  r.evidence_sha256)
            assert sha256_hex(r.envelope) == r.envelope_sha256 and sha256_hex(r.evidence) == r.evidence_sha256
            if r.state == "acknowledged":
                assert r.receipt is not None and r.acked_at is not None
                ack = parse_ack(verifier.verify(r.receipt, role="district", at=_at(r.acked_at)))
                assert (ack.status, ack.submission_id, ack.envelope_sha256) == ("accepted", r.submission_id,
                                                                                r.envelope_sha256)
        # The sequence goes on from the previous release's last number: never two results with one.
        added = box.add(lambda seq: Signed(f"new-{seq}", r.tps, "e", sha256_hex("e"), b"p", sha256_hex(b"p")))
        assert added.seq == 5
    assert raw_rows(previous_outbox)[:4] == before
    assert user_version(previous_outbox) == len(outbox_module.STEPS)


def _at(ts: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC)


def test_a_new_outbox_starts_at_the_newest_version_and_opening_it_again_changes_nothing(tmp_path):
    path = tmp_path / "new.sqlite"
    with Outbox(path) as box:
        assert box.upgraded == (0, len(outbox_module.STEPS))
    with Outbox(path) as box:
        assert box.upgraded == (len(outbox_module.STEPS), len(outbox_module.STEPS))


def make_newer(path: Path) -> int:
    version = len(outbox_module.STEPS) + 1
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {version}")
    con.close()
    return version


def test_an_outbox_newer_than_this_release_is_refused_untouched(previous_outbox):
    version = make_newer(previous_outbox)
    before = digest(previous_outbox)
    with pytest.raises(OutboxTooNew) as refused:
        Outbox(previous_outbox)
    words = str(refused.value)
    assert f"outbox version {version}" in words and "newer tpskit" in words and "no result is lost" in words
    assert "do not delete" in words
    assert digest(previous_outbox) == before
    assert not Path(f"{previous_outbox}-wal").exists()
    assert str(newer_outbox(previous_outbox)) == words
    assert digest(previous_outbox) == before


def test_a_kit_on_a_newer_outbox_stays_not_ready_and_says_why_on_its_screen(tmp_path):
    from tpskit.edge.config import load_kit_config
    from tpskit.edge.daemon import KitDaemon
    from tpskit.edge.readiness import startup_problems
    from tpskit.edge.states import KitState
    from tpskit.firmware.camera import SimulatedCamera
    from tpskit.provisioning.district import bench_kit, district_init

    csv = tmp_path / "tps.csv"
    csv.write_text("tps,registered_voters\n3201012001001,250\n")
    d = district_init(tmp_path / "district", csv, district_id="kab-new", broker_host="127.0.0.1", broker_port=1,
                      bind="127.0.0.1")
    issued = bench_kit(d.root, "kit-01", "3201012001001", tmp_path / "kit")
    (tmp_path / "photos").mkdir()
    socks = short_dir()
    simulate(issued.folder / "kit.toml", tmp_path / "photos", socks)
    cfg = load_kit_config(issued.folder / "kit.toml")
    cfg.outbox_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(PREVIOUS / "outbox.sqlite", cfg.outbox_path)
    make_newer(cfg.outbox_path)
    before = digest(cfg.outbox_path)
    assert [p.key for p in startup_problems(cfg)] == ["kit.data_dir"]  # what check-config (ExecStartPre) says
    daemon = KitDaemon(cfg, camera=SimulatedCamera(cfg.camera))
    try:
        daemon.start()
        assert daemon.state == KitState.FAULT
        assert daemon.message is not None and "newer tpskit" in daemon.message.text
        assert daemon.delivery is None
    finally:
        daemon.close()
        cleanup(socks)
    assert digest(cfg.outbox_path) == before


def test_a_later_step_runs_on_the_previous_release_outbox(previous_outbox, monkeypatch):
    before = raw_rows(previous_outbox)
    later = (*outbox_module.STEPS, ("ALTER TABLE outbox ADD COLUMN note TEXT", "UPDATE outbox SET note = 'kept'"))
    monkeypatch.setattr(outbox_module, "STEPS", later)
    with Outbox(previous_outbox) as box:
        assert box.upgraded == (0, len(later))
        assert len(box.rows()) == 4
    con = sqlite3.connect(previous_outbox)
    assert con.execute("SELECT note FROM outbox").fetchall() == [("kept",)] * 4
    con.close()
    assert [r[:17] for r in raw_rows(previous_outbox)] == before
    monkeypatch.setattr(outbox_module, "STEPS", later[:-1])  # the release before that step refuses the file
    with pytest.raises(OutboxTooNew):
        Outbox(previous_outbox)


def test_a_step_that_fails_leaves_the_outbox_as_it_was(previous_outbox, monkeypatch):
    before = raw_rows(previous_outbox)
    broken = (*outbox_module.STEPS, ("ALTER TABLE outbox ADD COLUMN note TEXT", "UPDATE no_such_table SET x = 1"))
    monkeypatch.setattr(outbox_module, "STEPS", broken)
    with pytest.raises(sqlite3.OperationalError):
        Outbox(previous_outbox)
    assert user_version(previous_outbox) == 0
    assert raw_rows(previous_outbox) == before  # no half-added column either
