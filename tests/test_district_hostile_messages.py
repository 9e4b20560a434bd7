"""Hostile or broken messages a provisioned kit (stolen, or buggy) can publish on its own topics: each is
refused on its own, and none may fail the batch it arrived in (the service would retry that batch for
ever, and no TPS would be counted any more). Straight into the ingest, no broker needed."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from conftest import TPS_CODES, fake_jpeg, reading_of
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID

from tpskit.district.config import load_district_config
from tpskit.district.service import build_ingest
from tpskit.district.verify_cli import verify_lines
from tpskit.edge.submit import build_payload
from tpskit.envelope import Verifier, parse_ack, payload_bytes, sha256_hex, sign_compact
from tpskit.provisioning.district import bench_kit, district_init, revoke
from tpskit.topics import evidence_topic, result_topic
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key

TPS = TPS_CODES[0]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def rig(tmp_path):
    csv = tmp_path / "tps.csv"
    csv.write_text(f"tps,registered_voters\n{TPS},250\n")
    d = district_init(tmp_path / "d", csv, district_id="kab-test")
    k = bench_kit(d.root, "kit-a", TPS, tmp_path / "kit-a")
    ingest = build_ingest(load_district_config(d.config_path))
    rig = {"district": d, "ingest": ingest, "key": load_key(k.folder / "kit.key"),
           "chain": load_certs(k.folder / "kit.pem"), "ca": Verifier(load_certs(d.ca_cert_path))}
    yield rig
    ingest.close()
    ingest.engine.dispose()


def _good(rig, seq: int, tag: str) -> tuple[str, list[tuple[str, bytes]]]:
    sid, photo = f"{tag}-{seq:04d}", fake_jpeg(tag)
    payload = build_payload(reading_of(TPS), kit_id="kit-a", tps=TPS, seq=seq, submission_id=sid,
                            evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
    return sid, [(evidence_topic(TPS, sid), photo),
                 (result_topic(TPS), sign_compact(payload_bytes(payload), rig["key"], rig["chain"]).encode())]


def _stranger_with_unparsable_san() -> str:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "stranger")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03\x86\x01"),
                           critical=False)
            .sign(key, None))
    return base64.b64encode(cert.public_bytes(Encoding.DER)).decode()


def _acks(rig, acks) -> list[tuple[str, str, str]]:
    return [(a.submission_id, a.status, (a.reason or "").split(":")[0])
            for a in (parse_ack(rig["ca"].verify(x.jws, role="district")) for x in acks)]


def test_parser_crashing_messages_are_refused_without_failing_the_batch_of_a_good_result(rig):
    header = _b64(json.dumps({"alg": "EdDSA", "x5c": [_stranger_with_unparsable_san()]}).encode())
    sig = "A" * 86
    hostile = [
        f"{_b64(b'[' * 5000)}.{_b64(b'{}')}.{sig}",  # header nested 5000 deep
        f"{header}.{_b64(b'[' * 5000)}.{sig}",  # payload nested 5000 deep
        f"{header}.{_b64(b'{}')}.{sig}",  # a stranger's certificate whose SAN does not parse
        # Unsigned, with a submission id no UTF-8 encoder or database takes: a lone surrogate, a NUL.
        f"{header}.{_b64(json.dumps({'submission_id': chr(0xD800) + 'abcdefgh'}).encode())}.{sig}",
        f"{header}.{_b64(json.dumps({'submission_id': 'abcdefgh' + chr(0)}).encode())}.{sig}",
    ]
    sid, good = _good(rig, 1, "good")
    batch = [(result_topic(TPS), h.encode()) for h in hostile] + good
    acks = rig["ingest"].process(batch)
    assert _acks(rig, acks) == [(sid, "accepted", "")]  # the refused ones name no routable submission
    counts = rig["ingest"].counts
    assert counts["rejected:malformed"] + counts["rejected:untrusted_certificate"] == len(hostile)



def test_observer_verify_reports_parser_crashing_lines_as_failures_and_goes_on(rig):
    """`tpskit verify` has no ingest around its Verifier: the Verifier itself must refuse, not raise."""
    header = _b64(json.dumps({"alg": "EdDSA", "x5c": [_stranger_with_unparsable_san()]}).encode())
    _, good = _good(rig, 1, "seen")
    lines = [f"{_b64(b'[' * 5000)}.{_b64(b'{}')}.{'A' * 86}", f"{header}.{_b64(b'[' * 5000)}.{'A' * 86}",
             good[1][1].decode()]
    report = verify_lines(lines, rig["district"].ca_cert_path)
    assert [(ok, text.split(":")[0]) for _, ok, text in report][:2] == [(False, "malformed"),
                                                                       (False, "untrusted_certificate")]
    assert report[2][1] is True


def test_result_waiting_for_its_photo_is_refused_when_its_kit_is_revoked_before_the_photo_arrives(rig):
    sid, (photo, result) = _good(rig, 1, "stolen")
    assert rig["ingest"].process([result]) == []  # verified; waits for its photo, unanswered
    revoke(rig["district"].root, "kit-a", "stolen")
    acks = rig["ingest"].process([photo])
    assert _acks(rig, acks) == [(sid, "rejected", "revoked")]
    with rig["ingest"].engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM results").scalar() == 0
        assert c.exec_driver_sql("SELECT count(*) FROM pending").scalar() == 0


def test_observer_verify_reports_a_capture_time_without_timezone_instead_of_crashing(rig):
    body = json.loads(payload_bytes(build_payload(reading_of(TPS), kit_id="kit-a", tps=TPS, seq=1,
                                                  submission_id="naive-0001", evidence_sha256="0" * 64,
                                                  evidence_bytes=2048)))
    body["captured_at"] = "2024-02-14T09:30:00"  # a capture time must say its time zone
    line = sign_compact(json.dumps(body).encode(), rig["key"], rig["chain"])
    [(_, ok, text)] = verify_lines([line], rig["district"].ca_cert_path)
    assert (ok, text.split(":")[0]) == (False, "schema")
