"""The district stores into PostgreSQL when given a URL: a real throwaway server started by the tests."""

from __future__ import annotations

import pytest
from conftest import fake_jpeg, make_reading

from tpskit.district import tally
from tpskit.edge.deliver import Delivery
from tpskit.edge.submit import sign_and_queue
from tpskit.provisioning.district import read_tps_csv

pytestmark = [pytest.mark.broker, pytest.mark.postgres]


def test_district_on_postgresql_stores_each_result_once_and_tallies(rig_factory, postgres_url, tmp_path):
    rig = rig_factory(2, db_url=postgres_url)
    rig.serve_inprocess()
    rows = []
    for i in range(2):
        kit = rig.kit(i)
        cfg = kit.config()
        row = sign_and_queue(cfg, make_reading(kit.tps, (70 + i, 50, 40)), fake_jpeg(f"pg-{i}"))
        with Delivery(cfg) as d:
            receipt = d.wait_answered(row.submission_id, 30)
        assert receipt is not None and receipt.ack_status == "accepted"
        rows.append(row)
    engine = rig.db()
    assert engine.dialect.name == "postgresql"
    stored = rig.stored()
    assert sorted(s["envelope"] for s in stored) == sorted(r.envelope for r in rows)
    [t] = tally.compute(engine, read_tps_csv(rig.root / "tps.csv"))
    regency = next(a for a in t.areas if a.level == "regency")
    assert regency.reported == 2 and regency.totals["paslon_01"] == 141 and regency.in_review == 0
    out = tmp_path / "signed.jsonl"
    assert tally.export_signed(engine, out) == 2
    engine.dispose()
