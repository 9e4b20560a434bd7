"""A hostile or broken kit cannot stop the district or fill its disk: values no column holds are refused
before any write, a message that fails at storage anyway is isolated and refused on its own (its batch
is stored and the broker never redelivers it), photos are stored only as announced, and quotas and a
disk floor bound what one TPS can make the district store. Straight into the ingest, no broker."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import TPS_CODES, fake_jpeg, reading_of
from hostile import der, signed_over
from sqlalchemy import create_engine, exc

from tpskit.district import ingest as ingest_module
from tpskit.district.config import load_district_config
from tpskit.district.service import build_ingest
from tpskit.edge.submit import build_payload
from tpskit.envelope import Verifier, parse_ack, payload_bytes, sha256_hex
from tpskit.provisioning.district import bench_kit, district_init
from tpskit.topics import evidence_topic, result_topic
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key

TPS, OTHER = TPS_CODES[0], TPS_CODES[1]


def _district(tmp_path, limits: str = "", db_url: str | None = None):
    csv = tmp_path / "tps.csv"
    csv.write_text(f"tps,registered_voters\n{TPS},250\n{OTHER},250\n")
    d = district_init(tmp_path / "d", csv, district_id="kab-test")
    kits = {name: bench_kit(d.root, name, tps, tmp_path / name) for name, tps in (("kit-a", TPS), ("kit-b", OTHER))}
    text = d.config_path.read_text()
    if db_url:
        text = text.replace('url = "sqlite:///district.sqlite"', f'url = "{db_url}"')
    d.config_path.write_text(text + "\n[limits]\n" + limits)
    ingest = build_ingest(load_district_config(d.config_path))
    keys = {n: (load_key(k.folder / "kit.key"), load_certs(k.folder / "kit.pem")) for n, k in kits.items()}
    return d, ingest, keys


@pytest.fixture
def rig(tmp_path):
    d, ingest, keys = _district(tmp_path)
    yield d, ingest, keys
    ingest.close()
    ingest.engine.dispose()


def _result(keys, kit: str, seq: int, tag: str, photo: bytes | None = None, **body_changes):
    """(submission, [result message, photo message]) of a result signed by `kit`."""
    key, chain = keys[kit]
    tps = TPS if kit == "kit-a" else OTHER
    sid = f"{tag}-{seq:04d}"
    photo = photo if photo is not None else fake_jpeg(sid)
    body = json.loads(payload_bytes(build_payload(reading_of(tps), kit_id=kit, tps=tps, seq=1, submission_id=sid,
                                                  evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))))
    body.update(seq=seq, **body_changes)
    token = signed_over(json.dumps(body).encode(), key, [der(chain[0])])
    return sid, [(result_topic(tps), token.encode()), (evidence_topic(tps, sid), photo)]


def _acks(d, acks) -> list[tuple[str, str, str]]:
    v = Verifier(load_certs(d.ca_cert_path))
    return [(a.submission_id, a.status, (a.reason or "").split(":")[0])
            for a in (parse_ack(v.verify(x.jws, role="district")) for x in acks)]


def _rows(ingest, sql: str) -> list:
    with ingest.engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql(sql)]


# ------------------------------------------------------------------------------------------ storage
@pytest.mark.parametrize("db", ["sqlite", "postgresql"])
def test_sequence_numbers_of_2_63_and_2_63_minus_1_are_refused_before_any_write_and_the_kit_goes_on(
        db, tmp_path, request):
    """Before: seq 2^63 failed the insert (OverflowError on SQLite, NumericValueOutOfRange on PostgreSQL)
    and its batch was retried for ever; 2^63-1 was stored and no later result of the kit ever was."""
    url = None
    if db == "postgresql":
        base = request.getfixturevalue("postgres_url")
        name = f"seq_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        url = base.rsplit("/", 1)[0] + f"/{name}"
    d, ingest, keys = _district(tmp_path, db_url=url)
    try:
        big, big_msgs = _result(keys, "kit-a", 2**63, "big")
        edge, edge_msgs = _result(keys, "kit-a", 2**63 - 1, "edge")
        good, good_msgs = _result(keys, "kit-a", 1, "good")
        other, other_msgs = _result(keys, "kit-b", 1, "other")
        acks = ingest.process(big_msgs + edge_msgs + good_msgs + other_msgs)
        assert _acks(d, acks) == [(big, "rejected", "schema"), (edge, "rejected", "schema"),
                                  (good, "accepted", ""), (other, "accepted", "")]
        later, later_msgs = _result(keys, "kit-a", 2, "later")
        assert _acks(d, ingest.process(later_msgs)) == [(later, "accepted", "")]
        assert sorted(_rows(ingest, "SELECT submission_id FROM results")) == sorted([(good,), (other,), (later,)])
    finally:
        ingest.close()
        ingest.engine.dispose()


def test_a_message_that_fails_at_storage_anyway_is_refused_on_its_own_and_its_batch_is_stored(rig, monkeypatch):
    """A defect lets a value through that the database refuses: the batch is split until that message is
    alone; it is refused (and acknowledged, so never redelivered); every other message is stored."""
    d, ingest, keys = rig
    real = ingest_module.result_row

    def defective(result, compact, env_sha, serial):
        row = real(result, compact, env_sha, serial)
        return {**row, "seq": 2**64} if result.submission_id.startswith("poison") else row

    monkeypatch.setattr(ingest_module, "result_row", defective)
    batch, expected = [], []
    for i in range(1, 8):
        sid, msgs = _result(keys, "kit-a" if i % 2 else "kit-b", i, "poison" if i == 4 else "fine")
        batch += msgs
        expected.append((sid, "rejected" if i == 4 else "accepted", "storage_failed" if i == 4 else ""))
    acks = ingest.process(batch)  # no exception: nothing for the service to retry
    assert sorted(_acks(d, acks)) == sorted(expected)
    assert len(_rows(ingest, "SELECT submission_id FROM results")) == 6
    assert _rows(ingest, "SELECT reason FROM rejections") == [("storage_failed",)]
    assert ingest.counts["batch_split"] >= 2


def test_an_error_of_the_database_itself_fails_the_batch_for_a_retry_and_refuses_nothing(rig, monkeypatch):
    _d, ingest, keys = rig

    def disk_full(self, conn):
        raise exc.OperationalError("INSERT", {}, Exception("database or disk is full"))

    monkeypatch.setattr(ingest_module._Batch, "flush", disk_full)
    _, msgs = _result(keys, "kit-a", 1, "full")
    with pytest.raises(exc.OperationalError):
        ingest.process(msgs)
    assert _rows(ingest, "SELECT count(*) FROM rejections") == [(0,)]


# ------------------------------------------------------------------------------------------ evidence
def test_photos_no_result_announced_are_not_stored_and_their_flood_is_summarised(tmp_path):
    """Before: 20 photos of 15 MB under made-up submission ids added 330 MB to the database."""
    _d, ingest, _keys = _district(tmp_path, "refusals_logged_per_tps_hour = 5\n")
    try:
        flood = [(evidence_topic(TPS, f"made-up-{i:04d}"), fake_jpeg(f"x{i}", 200_000)) for i in range(20)]
        assert ingest.process(flood) == []
        assert _rows(ingest, "SELECT count(*) FROM evidence") == [(0,)]
        assert _rows(ingest, "SELECT count(*) FROM rejections") == [(5,)]  # then only counted
        assert ingest.counts["rejected:evidence_unannounced"] == 20
    finally:
        ingest.close()
        ingest.engine.dispose()


def test_only_the_announced_photo_is_stored_once_and_a_photo_first_in_the_same_batch_pairs(rig):
    d, ingest, keys = rig
    sid, (result, photo) = _result(keys, "kit-a", 1, "pair")
    wrong = (photo[0], fake_jpeg("not the announced one"))
    # The photo just before its result in one batch ("together"), and a wrong photo before both.
    assert _acks(d, ingest.process([wrong, photo, result])) == [(sid, "accepted", "")]
    second = (photo[0], fake_jpeg("a second photo"))
    assert ingest.process([second]) == []
    assert _rows(ingest, "SELECT submission_id, sha256 FROM evidence") == [(sid, sha256_hex(photo[1]))]
    assert sorted(r[0] for r in _rows(ingest, "SELECT reason FROM rejections")) == ["evidence_mismatch"] * 2


def test_a_result_announcing_a_photo_above_the_limit_and_oversized_messages_are_refused(tmp_path):
    """Before: a 9.3 MB signed envelope was accepted and stored."""
    d, ingest, keys = _district(tmp_path, f"evidence_max_bytes = {256 * 1024}\n")
    try:
        huge_photo = fake_jpeg("huge", 300 * 1024)
        sid, msgs = _result(keys, "kit-a", 1, "huge", photo=huge_photo)
        padded, padded_msgs = _result(keys, "kit-a", 2, "padded", software={"tpskit": "0.1", "model": "x" * 200})
        envelope_93mb = b"A" * 9_300_000
        acks = ingest.process([*msgs, (result_topic(TPS), envelope_93mb), *padded_msgs[:1]])
        assert _acks(d, acks) == [(sid, "rejected", "evidence_too_large"), (padded, "rejected", "schema")]
        assert ingest.counts["rejected:too_large"] == 2  # the 9.3 MB "result" and the 300 KB photo
        assert _rows(ingest, "SELECT count(*) FROM evidence") == [(0,)]
    finally:
        ingest.close()
        ingest.engine.dispose()


# ------------------------------------------------------------------------------------------ quotas, disk
def test_a_tps_over_its_hourly_quota_is_not_stored_nor_answered_and_other_tps_go_on(tmp_path, caplog):
    d, ingest, keys = _district(tmp_path, "submissions_per_tps_hour = 3\n")
    try:
        batch = []
        for seq in range(1, 6):
            batch += _result(keys, "kit-a", seq, "busy")[1]
        other, other_msgs = _result(keys, "kit-b", 1, "calm")
        acks = ingest.process(batch + other_msgs)
        assert [status for _, status, _ in _acks(d, acks)] == ["accepted"] * 4  # 3 of kit-a, kit-b's one
        assert (other, "accepted", "") in _acks(d, acks)
        assert ingest.counts["quota"] == 2
        assert sum('"district.quota"' in r.message for r in caplog.records) == 2
        assert _rows(ingest, "SELECT count(*) FROM pending") == [(0,)]
        assert _rows(ingest, "SELECT count(*) FROM rejections") == [(0,)]  # held back, not refused: no noise
    finally:
        ingest.close()
        ingest.engine.dispose()


def test_below_the_disk_floor_results_are_stored_and_acknowledged_without_their_photos(rig, caplog):
    d, ingest, keys = rig
    ingest.floor.min_free_mb = 10**12  # more than any disk: below the floor
    sid, msgs = _result(keys, "kit-a", 1, "floor")
    acks = ingest.process(msgs)
    [ack] = [parse_ack(Verifier(load_certs(d.ca_cert_path)).verify(a.jws, role="district")) for a in acks]
    assert (ack.status, ack.evidence_sha256) == ("accepted", None) and "disk is below its floor" in ack.reason
    assert _rows(ingest, "SELECT count(*) FROM results") == [(1,)]
    assert _rows(ingest, "SELECT count(*) FROM evidence") == [(0,)]
    assert any('"district.disk_floor"' in r.message and '"below": true' in r.message for r in caplog.records)
    # Room again: the kit's photo, sent again, is stored now.
    ingest.floor.min_free_mb = 0
    assert ingest.process(msgs)[0] is not None
    assert _rows(ingest, "SELECT submission_id FROM evidence") == [(sid,)]
