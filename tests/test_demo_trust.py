"""The demo's trust chain: provision, start broker and service, deliver, export, stop everything."""

from __future__ import annotations

import pytest
from conftest import TPS_CODES, fake_jpeg, make_reading

from tpskit.demo_trust import run_trust_demo
from tpskit.district.verify_cli import verify_lines

pytestmark = pytest.mark.broker


def test_trust_demo_delivers_every_reading_and_leaves_a_verifiable_export(tmp_path):
    readings = [(make_reading(TPS_CODES[i], (50 + i, 40, 30)), fake_jpeg(f"demo-{i}")) for i in range(2)]
    readings.append((make_reading(TPS_CODES[2], status="rejected"), fake_jpeg("bad")))
    lines: list[str] = []
    summary = run_trust_demo(tmp_path, readings, echo=lines.append)
    assert [r["ack"] for r in summary["receipts"]] == ["accepted", "accepted"]
    assert all(r["receipt_matches"] for r in summary["receipts"])
    assert summary["skipped_rejected"] == 1 and summary["verified"] == 2
    signed = (tmp_path / "district" / "signed-results.jsonl").read_text().splitlines()
    assert [ok for _, ok, _ in verify_lines(signed, tmp_path / "district" / "ca.pem")] == [True, True]
    assert summary["recount_equal"] and summary["superseded"] == 0
    assert "paslon_01" in summary["tally"]
