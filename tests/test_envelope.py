"""The signed envelope: one verifier for kit, district and observers; checkable without our code."""

from __future__ import annotations

import base64
import datetime as dt
import json
import subprocess

import pytest
from conftest import TPS_CODES, fake_jpeg, make_reading, reading_of
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tpskit.edge.reading import Reading, ReadingError
from tpskit.edge.submit import SubmitError, build_payload
from tpskit.envelope import (
    VerificationError,
    Verifier,
    parse_result,
    payload_bytes,
    recheck_arithmetic,
    sha256_hex,
    sign_compact,
)
from tpskit.forms import load_templates
from tpskit.provisioning.district import bench_kit, district_init
from tpskit.provisioning.pki import create_ca, issue_role_cert
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import create_key, load_key

TPS = TPS_CODES[0]


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    base = tmp_path_factory.mktemp("env")
    csv = base / "tps.csv"
    csv.write_text(f"tps,registered_voters\n{TPS},250\n{TPS_CODES[1]},250\n")
    d = district_init(base / "d", csv, district_id="kab-test")
    k = bench_kit(d.root, "kit-a", TPS, base / "kit")
    return {"district": d, "key": load_key(k.folder / "kit.key"), "chain": load_certs(k.folder / "kit.pem"),
            "ca": load_certs(d.ca_cert_path), "base": base}


def _signed(kit, reading=None, **kw):
    reading = reading or make_reading(TPS)
    payload = build_payload(Reading.from_dict(reading), kit_id=kw.pop("kit_id", "kit-a"), tps=kw.pop("tps", TPS), seq=1,
                            submission_id="5d0e8b2a-0000-4000-8000-000000000001",
                            evidence_sha256=sha256_hex(fake_jpeg("e")), evidence_bytes=len(fake_jpeg("e")), **kw)
    return sign_compact(payload_bytes(payload), kit["key"], kit["chain"])


def test_signed_result_verifies_and_binds_kit_and_tps_from_the_certificate(kit):
    compact = _signed(kit)
    v = Verifier(kit["ca"]).verify(compact, role="kit")
    result = parse_result(v)
    assert (v.signer.common_name, v.signer.tps, result.tps, result.seq) == ("kit-a", TPS, TPS, 1)
    assert result.fields["paslon_01"].value == 60


def test_signed_result_verifies_with_plain_cryptography_without_our_code(kit):
    header_b64, payload_b64, sig_b64 = _signed(kit).split(".")

    def unb64(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    header = json.loads(unb64(header_b64))
    assert header["alg"] == "EdDSA"
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    leaf.verify_directly_issued_by(kit["ca"][0])
    pub = leaf.public_key()
    assert isinstance(pub, Ed25519PublicKey)
    pub.verify(unb64(sig_b64), f"{header_b64}.{payload_b64}".encode())  # raises when wrong
    assert json.loads(unb64(payload_b64))["tps"] == TPS


def test_signed_result_verifies_with_the_openssl_command_line(kit, tmp_path):
    """The observer's recipe in docs/trust-chain.md, step by step."""
    header_b64, payload_b64, sig_b64 = _signed(kit).split(".")
    unb64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))  # noqa: E731
    (tmp_path / "kit.der").write_bytes(base64.b64decode(json.loads(unb64(header_b64))["x5c"][0]))
    (tmp_path / "input").write_bytes(f"{header_b64}.{payload_b64}".encode())
    (tmp_path / "sig").write_bytes(unb64(sig_b64))
    run = lambda *a: subprocess.run(a, cwd=tmp_path, capture_output=True, text=True)  # noqa: E731
    assert run("openssl", "x509", "-inform", "DER", "-in", "kit.der", "-out", "kit.pem").returncode == 0
    ok = run("openssl", "verify", "-CAfile", str(kit["district"].ca_cert_path), "kit.pem")
    assert ok.returncode == 0, ok.stderr
    assert run("openssl", "x509", "-in", "kit.pem", "-pubkey", "-noout", "-out", "pub.pem").returncode == 0
    good = run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "input",
               "-sigfile", "sig")
    assert good.returncode == 0 and "Signature Verified Successfully" in good.stdout
    (tmp_path / "input").write_bytes(b"x" + f"{header_b64}.{payload_b64}".encode())
    assert run("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", "pub.pem", "-rawin", "-in", "input",
               "-sigfile", "sig").returncode != 0


def test_fails_on_certificate_from_another_ca(kit, tmp_path):
    rogue_key = create_key(tmp_path / "r.key")
    rogue = create_ca(rogue_key, "rogue")
    kit_key = create_key(tmp_path / "k.key")
    cert = issue_role_cert(rogue_key, rogue, kit_key.public_key(), "kit-a", "kit", TPS)
    payload = build_payload(reading_of(TPS), kit_id="kit-a", tps=TPS, seq=1, submission_id="abcdef12-rogue",
                            evidence_sha256="0" * 64, evidence_bytes=2048)
    compact = sign_compact(payload_bytes(payload), kit_key, [cert, kit["chain"][0]])
    with pytest.raises(VerificationError) as e:
        Verifier(kit["ca"]).verify(compact, role="kit")
    assert e.value.reason == "untrusted_certificate"


def test_fails_on_expired_certificate_and_on_wrong_role(kit):
    compact = _signed(kit)
    with pytest.raises(VerificationError) as e:
        Verifier(kit["ca"]).verify(compact, role="kit", at=dt.datetime.now(dt.UTC) + dt.timedelta(days=3000))
    assert e.value.reason == "certificate_expired"
    with pytest.raises(VerificationError) as e:
        Verifier(kit["ca"]).verify(compact, role="district")  # a kit cannot sign the district's acks
    assert e.value.reason == "wrong_role"


def test_fails_on_payload_naming_another_kit(kit):
    v = Verifier(kit["ca"]).verify(_signed(kit, kit_id="kit-b"), role="kit")
    with pytest.raises(VerificationError) as e:
        parse_result(v)
    assert e.value.reason == "kit_mismatch"


def test_recheck_finds_failed_check_in_an_ok_result(kit):
    reading = make_reading(TPS)
    reading["fields"]["suara_sah"]["value"] += 1  # the sum no longer matches
    v = Verifier(kit["ca"]).verify(_signed(kit, reading), role="kit")
    template = next(t for t in load_templates().values() if t.id == "c-hasil-ppwp-2024")
    problems = recheck_arithmetic(parse_result(v), template)
    assert any("check suara_sah fails in an ok result" in p for p in problems)


def test_fails_on_signing_a_rejected_reading_or_a_sheet_of_another_tps():
    with pytest.raises(ReadingError, match="status 'rejected'"):
        reading_of(TPS, status="rejected")
    with pytest.raises(SubmitError, match=f"this kit serves TPS {TPS}"):
        build_payload(reading_of(TPS_CODES[1]), kit_id="kit-a", tps=TPS, seq=1, submission_id="abcdef12-x",
                      evidence_sha256="0" * 64, evidence_bytes=2048)


def test_officer_correction_keeps_the_ocr_original(kit):
    reading = make_reading(TPS)
    reading["fields"]["paslon_02"].update(status="corrected", ocr_value=56, confidence=0.41)
    result = parse_result(Verifier(kit["ca"]).verify(_signed(kit, reading), role="kit"))
    assert result.fields["paslon_02"].value == 50 and result.fields["paslon_02"].ocr_value == 56
    assert result.fields["paslon_01"].ocr_value is None
