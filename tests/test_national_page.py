"""The national tally as a read-only page (`tpskit national dashboard`): the tally code one level above the
districts, read from national storage, each province and the nation adding up their TPS."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import reading_of

from tpskit.district.ingest import result_row
from tpskit.edge.submit import build_payload
from tpskit.national.config import load_national_config
from tpskit.national.dashboard import national_dashboard, trusted_tps
from tpskit.national.db import national_results, open_national_db
from tpskit.tally import province_of

pytestmark = pytest.mark.postgres

# Two regencies of province 32 and one of province 33; the last TPS has not reported.
TPS = {"3201012001001": (60, 50, 40), "3202012001001": (10, 20, 30), "3301012001001": (5, 6, 7),
       "3301012001002": None}


def _config(folder: Path, db_url: str) -> Path:
    csv = folder / "tps.csv"
    csv.write_text("tps,registered_voters\n" + "".join(f"{t},250\n" for t in TPS))
    path = folder / "national.toml"
    path.write_text(f'[nats]\nservers = ["nats://127.0.0.1:1"]\n\n[database]\nurl = "{db_url}"\n\n'
                    f'[[districts]]\nid = "kab-test"\nca = "{folder / "ca.pem"}"\ntps_list = "{csv}"\n')
    return path


def _store(engine, tps: str, votes: tuple[int, int, int], seq: int) -> None:
    sid = f"nat-{tps}-{seq}"
    row = result_row(build_payload(reading_of(tps, votes), kit_id="kit-01", tps=tps, seq=seq, submission_id=sid,
                                   evidence_sha256="e" * 64, evidence_bytes=100), "jws", "s" * 64, "1")
    with engine.begin() as c:
        c.execute(national_results.insert().values(
            province=province_of(tps), submission_id=sid, district="kab-test", kit_id="kit-01", tps=tps,
            template_id=row["template_id"], status=row["status"], seq=seq, captured_at=time.time(),
            received_at=time.time(), stored_at=time.time(), envelope="jws", envelope_sha256="s" * 64,
            evidence_sha256="e" * 64, acceptance="acc", values_json=row["values_json"]))


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def test_the_national_page_shows_each_province_and_the_nation_adding_up_their_tps(national_db_url, tmp_path):
    cfg = load_national_config(_config(tmp_path, national_db_url))
    engine = open_national_db(cfg.database.url, {province_of(t) for t in trusted_tps(cfg)})
    server = national_dashboard(engine, cfg, "127.0.0.1", 0, poll_s=0)
    try:
        for tps, votes in TPS.items():
            if votes:
                _store(engine, tps, votes, 1)
        server.start()
        got = json.loads(_get(server.url + "/tally.json?level=province"))
        rows = {(r["level"], r["code"]): r for r in got["rows"]}
        assert set(rows) == {("nation", "ID"), ("province", "32"), ("province", "33")}
        first = got["fields"][0]  # the first candidate
        assert rows[("province", "32")]["votes"][first] == 70 and rows[("province", "33")]["votes"][first] == 5
        assert rows[("nation", "ID")]["votes"][first] == 75
        assert (rows[("nation", "ID")]["counted"], rows[("nation", "ID")]["not_reported"]) == (3, 1)
        assert (rows[("province", "33")]["counted"], rows[("province", "33")]["not_reported"]) == (1, 1)
        page = _get(server.url + "/?level=regency")
        assert 'data-level="nation"' in page and 'data-code="3301"' in page and "75" in page
        # A later result of a TPS replaces its earlier one in the national tally, as in the district's.
        _store(engine, "3301012001001", (9, 6, 7), 2)
        got = json.loads(_get(server.url + "/tally.json?level=province"))
        assert {r["code"]: r["votes"][first] for r in got["rows"]} == {"ID": 79, "32": 70, "33": 9}
    finally:
        server.stop()
        engine.dispose()
