"""The district stores into PostgreSQL when given a URL: a real throwaway server started by the tests."""

from __future__ import annotations

import pytest
from conftest import fake_jpeg, reading_of

from tpskit.district import tally
from tpskit.edge.deliver import Delivery
from tpskit.edge.submit import sign_and_queue
from tpskit.topics import evidence_topic, result_topic
from tpskit.trust.tps import read_tps_csv

pytestmark = [pytest.mark.broker, pytest.mark.postgres]


def test_district_on_postgresql_stores_each_result_once_and_tallies(rig_factory, postgres_url, tmp_path):
    rig = rig_factory(2, db_url=postgres_url)
    rig.serve_inprocess()
    rows = []
    for i in range(2):
        kit = rig.kit(i)
        cfg = kit.config()
        row = sign_and_queue(cfg, reading_of(kit.tps, (70 + i, 50, 40)), fake_jpeg(f"pg-{i}"))
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
    assert tally.export_signed(engine, out, district="kab-test", tps=read_tps_csv(rig.root / "tps.csv")) == 2
    engine.dispose()


def test_on_postgresql_an_overlong_evidence_topic_or_a_nul_in_a_refusal_does_not_fail_the_batch(postgres_url,
                                                                                                  tmp_path):
    """PostgreSQL refuses a string longer than its column and any NUL; SQLite takes both, so only here
    would a kit's photo under a 65-character 'submission id', or a signed payload whose schema error
    quotes a field name holding a NUL, fail the whole batch (retried for ever, every TPS stalled)."""
    import json

    from sqlalchemy import create_engine

    from tpskit.district.config import load_district_config
    from tpskit.district.service import build_ingest
    from tpskit.edge.submit import build_payload
    from tpskit.envelope import Verifier, parse_ack, payload_bytes, sha256_hex, sign_compact
    from tpskit.provisioning.district import bench_kit, district_init
    from tpskit.trust.certs import load_certs
    from tpskit.trust.keys import load_key

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql("CREATE DATABASE hostile")
    admin.dispose()
    tps = "3201012001001"
    (tmp_path / "tps.csv").write_text(f"tps,registered_voters\n{tps},250\n")
    d = district_init(tmp_path / "d", tmp_path / "tps.csv", district_id="kab-test")
    k = bench_kit(d.root, "kit-a", tps, tmp_path / "kit")
    key, chain = load_key(k.folder / "kit.key"), load_certs(k.folder / "kit.pem")
    cfg = load_district_config(d.config_path)
    cfg = cfg.model_copy(update={"database": cfg.database.model_copy(
        update={"url": postgres_url.rsplit("/", 1)[0] + "/hostile"})})
    ingest = build_ingest(cfg)
    try:
        odd = json.loads(payload_bytes(build_payload(reading_of(tps), kit_id="kit-a", tps=tps, seq=1,
                                                     submission_id="odd-0001", evidence_sha256="0" * 64,
                                                     evidence_bytes=2048)))
        odd["fields"]["x\x00"] = {"value": -1}  # the schema error names this field
        photo = fake_jpeg("pg-hostile")
        good = build_payload(reading_of(tps), kit_id="kit-a", tps=tps, seq=2, submission_id="good-0002",
                             evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
        batch = [(evidence_topic(tps, 'x' * 65), b"junk"),
                 (result_topic(tps), sign_compact(json.dumps(odd).encode(), key, chain).encode()),
                 (evidence_topic(tps, "good-0002"), photo),
                 (result_topic(tps), sign_compact(payload_bytes(good), key, chain).encode())]
        acks = [parse_ack(Verifier(load_certs(d.ca_cert_path)).verify(a.jws, role="district"))
                for a in ingest.process(batch)]
        assert [(a.submission_id, a.status, (a.reason or "").split(":")[0]) for a in acks] == [
            ("odd-0001", "rejected", "malformed"), ("good-0002", "accepted", "")]
        assert ingest.counts["rejected:malformed"] == 2  # the evidence topic, and the NUL (not strict JSON)
    finally:
        ingest.close()
        ingest.engine.dispose()
