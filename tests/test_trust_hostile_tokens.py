"""Tokens and certificates no honest kit makes, checked by the district's ingest and by `tpskit verify`:
each is a refusal with its reason for that message or line, never an exception, and both sides read a
signed payload the same strict way (a key twice, NaN, a number beyond its bound)."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from conftest import TPS_CODES, fake_jpeg, reading_of
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID
from hostile import der, signed_over, with_duplicate_extension, with_version

from tpskit.cli import main
from tpskit.district.config import load_district_config
from tpskit.district.service import build_ingest
from tpskit.district.verify_cli import verify_lines
from tpskit.edge.submit import build_payload
from tpskit.envelope import (
    MAX_SEQ,
    VerificationError,
    Verifier,
    parse_ack,
    payload_bytes,
    sha256_hex,
    sign_compact,
    strict_json,
)
from tpskit.provisioning.district import bench_kit, district_init
from tpskit.provisioning.pki import issue_role_cert
from tpskit.topics import evidence_topic, result_topic
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key

TPS = TPS_CODES[0]


@pytest.fixture
def rig(tmp_path):
    csv = tmp_path / "tps.csv"
    csv.write_text(f"tps,registered_voters\n{TPS},250\n")
    d = district_init(tmp_path / "d", csv, district_id="kab-test")
    k = bench_kit(d.root, "kit-a", TPS, tmp_path / "kit-a")
    ingest = build_ingest(load_district_config(d.config_path))
    yield {"district": d, "ingest": ingest, "key": load_key(k.folder / "kit.key"),
           "chain": load_certs(k.folder / "kit.pem"), "ca_key": load_key(d.ca_key_path),
           "ca": load_certs(d.ca_cert_path), "tmp": tmp_path}
    ingest.close()
    ingest.engine.dispose()


def _body(seq: int = 1, sid: str = "abcdef12-0001", photo: bytes = b"") -> dict:
    photo = photo or fake_jpeg(sid)
    return json.loads(payload_bytes(build_payload(reading_of(TPS), kit_id="kit-a", tps=TPS, seq=seq,
                                                  submission_id=sid, evidence_sha256=sha256_hex(photo),
                                                  evidence_bytes=len(photo))))


def _district_verdicts(rig, results: list[tuple[str, bytes]]) -> list[tuple[str | None, str]]:
    """(submission, reason) of each refusal the ingest recorded, in order; results sent with their photos."""
    rig["ingest"].process(results)
    with rig["ingest"].engine.connect() as c:
        return [tuple(r) for r in c.exec_driver_sql("SELECT submission_id, reason FROM rejections ORDER BY id")]


def _verify_text(rig, lines: list[str]) -> list[tuple[bool, str]]:
    report = verify_lines(lines, rig["district"].ca_cert_path)
    return [(ok, "OK" if ok else text.split(":")[0]) for _, ok, text in report]


# ------------------------------------------------------------------------------------------ certificates
def _kit_cert(rig, cn: str = "kit-a") -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.generate()
    ca = rig["ca"][0]
    return key, issue_role_cert(rig["ca_key"], ca, key.public_key(), cn, "kit", TPS)


def _stranger_cert() -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kit-a")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(7).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=9))
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:tpskit:role:kit")]),
                           critical=False)
            .sign(key, None))
    return key, cert


def test_verify_reports_certificates_with_a_bad_version_or_a_duplicate_extension_and_goes_on(rig):
    kit_key, kit_cert = _kit_cert(rig)
    stranger_key, stranger = _stranger_cert()
    payload = json.dumps(_body()).encode()
    lines = [
        signed_over(payload, kit_key, [with_version(kit_cert, rig["ca_key"], 5)]),  # CA-signed, version 6
        signed_over(payload, kit_key, [with_duplicate_extension(kit_cert, rig["ca_key"])]),  # CA-signed
        signed_over(payload, stranger_key, [with_version(stranger, stranger_key, 7)]),
        signed_over(payload, stranger_key, [with_duplicate_extension(stranger, stranger_key)]),
        sign_compact(payload_bytes(build_payload(reading_of(TPS), kit_id="kit-a", tps=TPS, seq=2,
                                                 submission_id="abcdef12-good", evidence_sha256="0" * 64,
                                                 evidence_bytes=1)), rig["key"], rig["chain"]),
    ]
    assert _verify_text(rig, lines) == [(False, "malformed"), (False, "untrusted_certificate"),
                                        (False, "malformed"), (False, "untrusted_certificate"), (True, "OK")]
    # The same messages at the district: refused one by one, and the good result of the batch stands.
    photo = fake_jpeg("good")
    good = build_payload(reading_of(TPS), kit_id="kit-a", tps=TPS, seq=3, submission_id="abcdef12-keep",
                         evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
    batch = [(result_topic(TPS), line.encode()) for line in lines[:4]] + [
        (result_topic(TPS), sign_compact(payload_bytes(good), rig["key"], rig["chain"]).encode()),
        (evidence_topic(TPS, "abcdef12-keep"), photo)]
    assert [reason for _, reason in _district_verdicts(rig, batch)] == [
        "malformed", "untrusted_certificate", "malformed", "untrusted_certificate"]
    with rig["ingest"].engine.connect() as c:
        assert c.exec_driver_sql("SELECT submission_id FROM results").scalars().all() == ["abcdef12-keep"]


def test_verify_with_a_ca_file_that_is_not_a_certificate_is_a_usage_error_not_a_traceback(rig, capsys):
    export = rig["tmp"] / "export.jsonl"
    export.write_text("x.y.z\n")
    bad_ca = rig["tmp"] / "ca.pem"
    bad_ca.write_text("not a certificate\n")
    assert main(["verify", str(export), "--ca", str(bad_ca)]) == 2
    assert "Traceback" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ strict JSON
def _with_fields_twice(body: dict) -> bytes:
    """The payload's text with "fields" written twice: first the real votes, then other ones."""
    other = json.loads(json.dumps(body["fields"]))
    other["paslon_01"]["value"], other["paslon_02"]["value"] = other["paslon_02"]["value"], other["paslon_01"]["value"]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return text.replace('"fields":', '"fields":' + json.dumps(other, separators=(",", ":")) + ',"fields":', 1).encode()


@pytest.mark.parametrize("hostile", ["fields twice", "NaN confidence", "Infinity value", "seq 2^63", "seq 2^63-1",
                                     "escaped NUL in a field name", "seq 2^53"])
def test_payloads_a_second_parser_could_read_otherwise_are_refused_by_district_and_verify_alike(rig, hostile):
    sid = "abcdef12-0001"
    body = _body(sid=sid)
    if hostile == "fields twice":
        text = _with_fields_twice(body)
    else:
        if hostile == "NaN confidence":
            body["fields"]["paslon_01"]["confidence"] = float("nan")
        elif hostile == "Infinity value":
            body["fields"]["paslon_01"]["value"] = float("inf")
        elif hostile.startswith("seq"):
            body["seq"] = {"seq 2^63": 2**63, "seq 2^63-1": 2**63 - 1, "seq 2^53": MAX_SEQ + 1}[hostile]
        elif hostile == "escaped NUL in a field name":
            body["fields"]["x\x00"] = body["fields"].pop("dpk")
        text = json.dumps(body).encode()  # json writes NaN and Infinity; strict JSON has neither
    token = signed_over(text, rig["key"], [der(rig["chain"][0])])
    [(ok, district_reason)] = [(False, r) for _, r in _district_verdicts(rig, [(result_topic(TPS), token.encode())])]
    [(ok, verify_reason)] = _verify_text(rig, [token])
    assert (ok, district_reason) == (False, verify_reason)
    assert district_reason in ("malformed", "schema")
    with rig["ingest"].engine.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM results").scalar() == 0
        assert c.exec_driver_sql("SELECT count(*) FROM pending").scalar() == 0


def test_the_kit_ignores_an_ack_with_a_key_twice(rig):
    """The district's key signs it, but "status" appears twice: one parser reads accepted, another rejected."""
    d = rig["district"]
    ack = {"district": "kab-test", "envelope_sha256": "0" * 64, "evidence_sha256": None, "kit_id": "kit-a",
           "reason": None, "received_at": "2025-11-02T10:00:00Z", "schema": "tpskit-ack/1", "status": "rejected",
           "submission_id": "abcdef12-0001", "tps": TPS}
    text = json.dumps(ack, separators=(",", ":")).replace('"status":"rejected"',
                                                          '"status":"rejected","status":"accepted"').encode()
    token = signed_over(text, load_key(d.root / "service" / "district.key"),
                        [der(c) for c in load_certs(d.root / "service" / "district.pem")])
    with pytest.raises(VerificationError) as e:
        parse_ack(Verifier(rig["ca"]).verify(token, role="district"))
    assert (e.value.reason, "appears twice" in e.value.detail) == ("malformed", True)


@pytest.mark.parametrize("text", ['{"a":1,"a":2}', '{"a":NaN}', '{"a":-Infinity}', '{"a":"\\ud800"}',
                                  '{"a":"\\u0000"}', "[" * 100_000, '{"a":' + "9" * 5000 + "}"])
def test_strict_json_refuses_what_parsers_disagree_on_with_a_value_error(text):
    with pytest.raises(ValueError):
        strict_json(text)
