"""`tpskit district status` and `tpskit district refusals` say what the database holds, after a burst of results
and refusals of every kind through a real mosquitto and the district service."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import TPS_CODES
from district_burst import EXPECTED, burst_district

from tpskit.cli import main

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.broker


@pytest.fixture(scope="module")
def burst(tmp_path_factory):
    with burst_district(tmp_path_factory.mktemp("status")) as b:
        yield b


def _run(capsys, *args: str):
    capsys.readouterr()
    assert main(list(args)) == 0
    return json.loads(capsys.readouterr().out)


def _db(burst) -> sqlite3.Connection:
    return sqlite3.connect(burst.rig.district_cfg().database.url[len("sqlite:///"):])


def test_status_names_each_tps_state_and_its_counts_match_the_database(burst, capsys):
    rows = _run(capsys, "district", "status", "--config", str(burst.rig.district_config), "--no-table")
    got = {r["tps"]: r["status"] for r in rows}
    assert got == {t: EXPECTED.get(t, "not_reported") for t in TPS_CODES}
    with _db(burst) as con:
        reported = {t for (t,) in con.execute("SELECT DISTINCT tps FROM results")}
        per_tps = dict(con.execute("SELECT tps, COUNT(*) FROM results GROUP BY tps"))
    assert {r["tps"] for r in rows if r["status"] not in ("refused", "not_reported")} == reported
    assert {r["tps"]: r["submissions"] for r in rows if r["submissions"]} == per_tps
    first = next(r for r in rows if r["tps"] == TPS_CODES[0])
    assert first["submission_id"] == burst.corrected_sid and first["corrections"] == 1
    refused = next(r for r in rows if r["tps"] == TPS_CODES[2])
    assert refused["last_refusal_reason"] in ("bad_signature", "tps_mismatch")
    assert "signature" in refused["last_refusal_words"] or "another TPS" in refused["last_refusal_words"]


def test_status_by_area_counts_every_tps_once_per_kecamatan_and_village(burst, capsys):
    areas = _run(capsys, "district", "status", "--config", str(burst.rig.district_config), "--areas", "--no-table")
    kec = [a for a in areas if a["level"] == "kecamatan"]
    assert sum(a["tps_total"] for a in kec) == len(TPS_CODES)
    assert sum(a["not_reported"] for a in kec) == len(TPS_CODES) - len(EXPECTED)
    assert sum(a["corrected"] + a["slip"] + a["refused"] + a["revoked"] + a["review"] for a in kec) == len(EXPECTED)


def test_refusals_lists_every_refused_message_with_its_reason_in_words(burst, capsys, tmp_path):
    out = tmp_path / "refusals.csv"
    rows = _run(capsys, "district", "refusals", "--config", str(burst.rig.district_config), "--no-table",
                "--csv", str(out))
    with _db(burst) as con:
        db = sorted(con.execute("SELECT reason, kit_id FROM rejections"))
    assert sorted((r["reason"], r["kit"]) for r in rows) == db
    assert {r["reason"] for r in rows} == {"bad_signature", "tps_mismatch"}
    assert all(r["reason_words"] and r["reason_words"] != r["reason"] for r in rows)
    assert out.read_text().splitlines()[0].startswith("id,received_at,tps,kit,submission_id,reason")
    assert len(out.read_text().splitlines()) == len(db) + 1


def test_the_dashboards_incremental_reader_agrees_with_a_full_read_even_when_a_commit_comes_late(tmp_path):
    """The reader reads only rows stamped since the newest it knows (less a slack); a row committed later
    than that, with an old stamp, is still found: the rows known no longer add up to the table's count."""
    import importlib.util

    from sqlalchemy import insert

    from tpskit.district.db import open_db, results
    from tpskit.district.status import SLACK_S, SnapshotReader, read_snapshot
    from tpskit.trust.tps import read_tps_csv

    spec = importlib.util.spec_from_file_location("bench_pages", ROOT / "bench" / "pages.py")
    pages = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pages)
    config = pages.make_district(tmp_path, 40, 120)
    engine = open_db(f"sqlite:///{tmp_path / 'district.sqlite'}")
    tps = read_tps_csv(tmp_path / "tps.csv")
    reader = SnapshotReader(engine, tps)
    first = reader.read()
    assert reader.read() is first  # nothing changed: the same snapshot, no query beyond the token
    codes = sorted(tps)
    import random
    import time

    rng = random.Random(5)
    # stamped long before every row the reader knows (make_district stamps them an hour ago), committed now
    late = pages.fake_result(codes[0], 99, time.time() - 3600 - 10 * SLACK_S, rng)
    fresh = pages.fake_result(codes[1], 99, time.time(), rng)
    with engine.begin() as conn:
        conn.execute(insert(results), [late, fresh])
    got = reader.read()
    want = read_snapshot(engine, tps)
    assert reader.full_reads == 1
    assert {t: {c: x.stored.submission_id for c, x in per.items()} for t, per in got.current.items()} == \
           {t: {c: x.stored.submission_id for c, x in per.items()} for t, per in want.current.items()}
    assert got.current[pages.TEMPLATE][codes[1]].stored.submission_id == fresh["submission_id"]
    assert [r.to_json() for r in got.rows()] == [r.to_json() for r in want.rows()]
    assert config.exists()
    engine.dispose()


def test_a_failing_check_nobody_marked_as_written_is_in_review_not_an_officer_slip():
    from tpskit.district.status import _status

    assert _status(("suara_sah",), False, (), "review", False) == "review"  # e.g. signed by an older kit
    assert _status(("suara_sah",), True, (), "review", False) == "slip"
    assert _status(("suara_sah",), True, (), "review", True) == "revoked"
