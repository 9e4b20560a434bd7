"""One notion of time: the kit (before it signs), the district and `tpskit verify` apply the same rule, so
that what the district counts an observer can verify, and a kit with a wrong clock is told at once.

The rule (tpskit.envelope.check_result_time): the kit certificate must be valid at the capture time the
result states and, where the arrival is known, at arrival, with the capture time at most an hour after
the arrival. Revocation is judged at arrival: a result the district received before the revocation stays
valid and is marked as from a later-revoked kit."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import TPS_CODES, fake_jpeg, make_reading, reading_of
from hostile import der, signed_over

from tpskit.cli import main
from tpskit.district import tally
from tpskit.district.config import load_district_config
from tpskit.district.service import build_ingest
from tpskit.district.verify_cli import verify_lines
from tpskit.edge import submit
from tpskit.edge.config import load_kit_config
from tpskit.edge.submit import SubmitError, build_payload, sign_and_queue
from tpskit.envelope import payload_bytes, sha256_hex
from tpskit.provisioning.district import bench_kit, district_init, revoke
from tpskit.topics import evidence_topic, result_topic
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key
from tpskit.trust.tps import read_tps_csv

TPS = TPS_CODES[0]


@pytest.fixture
def rig(tmp_path):
    csv = tmp_path / "tps.csv"
    csv.write_text(f"tps,registered_voters\n{TPS},250\n")
    d = district_init(tmp_path / "d", csv, district_id="kab-test")
    k = bench_kit(d.root, "kit-a", TPS, tmp_path / "kit-a")
    ingest = build_ingest(load_district_config(d.config_path))
    # "now" is when the certificate was issued, not when the module was imported: under load the suite
    # reaches a test minutes after collection, and a skew of minutes then fell outside the certificate.
    yield {"district": d, "ingest": ingest, "kit": k, "key": load_key(k.folder / "kit.key"),
           "chain": load_certs(k.folder / "kit.pem"), "tmp": tmp_path, "now": dt.datetime.now(dt.UTC)}
    ingest.close()
    ingest.engine.dispose()


def _signed(rig, seq: int, captured_at: dt.datetime, tag: str) -> tuple[str, bytes, str]:
    """(submission, photo, token) of a result whose kit clock read `captured_at`, signed bypassing the
    kit's own refusal (as a kit with broken software would)."""
    sid, photo = f"{tag}-{seq:04d}", fake_jpeg(tag)
    body = json.loads(payload_bytes(build_payload(reading_of(TPS), kit_id="kit-a", tps=TPS, seq=seq,
                                                  submission_id=sid, evidence_sha256=sha256_hex(photo),
                                                  evidence_bytes=len(photo))))
    body["captured_at"] = captured_at.isoformat()
    return sid, photo, signed_over(json.dumps(body).encode(), rig["key"], [der(rig["chain"][0])])


SKEWS = {"one day behind": dt.timedelta(days=-1), "two minutes behind": dt.timedelta(minutes=-2),
         "right": dt.timedelta(0), "half an hour ahead": dt.timedelta(minutes=30),
         "two hours ahead": dt.timedelta(hours=2), "three years ahead": dt.timedelta(days=3 * 365)}


def test_district_and_verify_agree_on_every_kit_clock_skew(rig):
    """The certificate was issued five minutes ago: a day behind is before it, three years ahead after it."""
    district, observer = {}, {}
    for seq, (name, skew) in enumerate(SKEWS.items(), start=1):
        sid, photo, token = _signed(rig, seq, rig["now"] + skew, f"skew{seq}")
        acks = rig["ingest"].process([(result_topic(TPS), token.encode()), (evidence_topic(TPS, sid), photo)])
        [ack] = [json.loads(_payload_of(a.jws)) for a in acks]
        district[name] = ack["status"] if ack["status"] == "accepted" else ack["reason"].split(":")[0]
        line = json.dumps({"envelope": token, "received_at": ack["received_at"]})
        [(_, ok, text)] = verify_lines([line], rig["district"].ca_cert_path)
        observer[name] = "accepted" if ok else text.split(":")[0]
    assert district == observer == {
        "one day behind": "certificate_expired", "two minutes behind": "accepted", "right": "accepted",
        "half an hour ahead": "accepted", "two hours ahead": "clock_ahead", "three years ahead": "certificate_expired"}


def _payload_of(jws: str) -> bytes:
    import base64

    part = jws.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@pytest.mark.parametrize("skew", ["one day behind", "three years ahead"])
def test_kit_whose_clock_is_outside_its_certificate_refuses_to_sign_and_says_why(rig, skew, monkeypatch):
    cfg = load_kit_config(rig["kit"].folder / "kit.toml")
    monkeypatch.setattr(submit, "utcnow", lambda: rig["now"] + SKEWS[skew])
    with pytest.raises(SubmitError, match=r"must not sign now: .*(clock|certificate)"):
        sign_and_queue(cfg, reading_of(TPS), fake_jpeg("clock"))
    # A capture taken while the clock was wrong is refused too, though the clock is right again now.
    monkeypatch.setattr(submit, "utcnow", lambda: rig["now"])
    with pytest.raises(SubmitError, match="must not sign now"):
        sign_and_queue(cfg, reading_of(TPS), fake_jpeg("clock"), captured_at=rig["now"] + SKEWS[skew])
    assert not (cfg.outbox_path.exists() and _outbox_rows(cfg))


def _outbox_rows(cfg) -> int:
    import sqlite3

    con = sqlite3.connect(cfg.outbox_path)
    try:
        return con.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        con.close()


def test_kit_submit_refuses_what_check_config_refuses(rig, monkeypatch, capsys):
    reading = rig["tmp"] / "reading.json"
    reading.write_text(json.dumps(make_reading(TPS)))
    photo = rig["tmp"] / "sheet.jpg"
    photo.write_bytes(fake_jpeg("submit"))
    monkeypatch.setattr(submit, "utcnow", lambda: rig["now"] - dt.timedelta(days=1))
    code = main(["kit", "submit", str(reading), "--photo", str(photo), "--no-deliver",
                 "--config", str(rig["kit"].folder / "kit.toml")])
    err = capsys.readouterr().err
    assert code == 1 and "must not sign yet" in err and "clock" in err


def test_a_revocation_keeps_results_received_before_it_valid_for_district_tally_and_verify(rig):
    d = rig["district"]
    sid1, photo1, token1 = _signed(rig, 1, rig["now"], "before")
    assert [json.loads(_payload_of(a.jws))["status"] for a in rig["ingest"].process(
        [(result_topic(TPS), token1.encode()), (evidence_topic(TPS, sid1), photo1)])] == ["accepted"]
    revoke(d.root, "kit-a", "stolen")
    sid2, photo2, token2 = _signed(rig, 2, rig["now"], "after")
    [ack2] = [json.loads(_payload_of(a.jws)) for a in rig["ingest"].process(
        [(result_topic(TPS), token2.encode()), (evidence_topic(TPS, sid2), photo2)])]
    assert (ack2["status"], ack2["reason"].split(":")[0]) == ("rejected", "revoked")
    # The tally still counts the result received before the revocation...
    [t] = tally.compute(rig["ingest"].engine, read_tps_csv(d.root / "tps.csv"))
    assert next(a for a in t.areas if a.level == "tps").reported == 1
    # ... and so does the observer, with the arrival time the district recorded; one received after is refused.
    with rig["ingest"].engine.connect() as c:
        [(envelope, received)] = c.exec_driver_sql("SELECT envelope, received_at FROM results").all()
    when = dt.datetime.fromtimestamp(received, dt.UTC).isoformat()
    lines = [json.dumps({"envelope": envelope, "received_at": when}), token1,
             json.dumps({"envelope": token2, "received_at": dt.datetime.now(dt.UTC).isoformat()})]
    report = verify_lines(lines, d.ca_cert_path, d.root / "revoked.json")
    assert [(ok, text.split(":")[0] if not ok else "ok") for _, ok, text in report] == [
        (True, "ok"), (False, "revoked"), (False, "revoked")]
    assert "from a kit revoked later" in report[0][2]
