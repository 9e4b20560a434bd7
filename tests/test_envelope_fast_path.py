"""The verifier and the ack signer read and write compact JWS themselves (for speed); joserfc, the
library that makes the kits' envelopes, must agree with them on every token."""

from __future__ import annotations

import base64
import json
import warnings

import pytest
from conftest import TPS_CODES, reading_of
from cryptography import x509
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import OKPKey

from tpskit.edge.submit import build_payload
from tpskit.envelope import CompactSigner, VerificationError, Verifier, payload_bytes, sign_compact
from tpskit.provisioning.district import bench_kit, district_init
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key

TPS = TPS_CODES[0]


@pytest.fixture(scope="module")
def kits(tmp_path_factory):
    base = tmp_path_factory.mktemp("fast")
    csv = base / "tps.csv"
    csv.write_text(f"tps,registered_voters\n{TPS},250\n{TPS_CODES[1]},250\n")
    d = district_init(base / "d", csv, district_id="kab-test")
    out = {"ca": load_certs(d.ca_cert_path)}
    for name, tps in (("kit-a", TPS), ("kit-b", TPS_CODES[1])):
        k = bench_kit(d.root, name, tps, base / name)
        out[name] = (load_key(k.folder / "kit.key"), load_certs(k.folder / "kit.pem"))
    return out


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _payload(kit_id: str = "kit-a", tps: str = TPS) -> bytes:
    return payload_bytes(build_payload(reading_of(tps), kit_id=kit_id, tps=tps, seq=1,
                                       submission_id="5d0e8b2a-0000-4000-8000-00000000fa57",
                                       evidence_sha256="0" * 64, evidence_bytes=2048))


def _joserfc_accepts(token: str) -> bool:
    """The library's verdict, with the key of the certificate the token names (chain checked apart)."""
    try:
        header = json.loads(_unb64(token.split(".")[0]))
        leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
        registry = jws.JWSRegistry(algorithms=["EdDSA"])
        registry.max_header_length = 16_384
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            jws.deserialize_compact(token, OKPKey.import_key(leaf.public_key()), registry=registry)
        return True
    except (JoseError, ValueError, KeyError, IndexError, TypeError):
        return False


def test_ack_signer_writes_the_same_bytes_as_joserfc(kits):
    key, chain = kits["kit-a"]
    signer = CompactSigner(key, chain)
    for payload in (b"{}", _payload(), json.dumps({"nama": "Désa Sukamaju"}, ensure_ascii=False).encode()):
        assert signer.sign(payload) == sign_compact(payload, key, chain)


def test_verifier_and_joserfc_agree_on_good_tampered_and_malformed_tokens(kits):
    key_a, chain_a = kits["kit-a"]
    good = sign_compact(_payload(), key_a, chain_a)
    h, p, s = good.split(".")
    other_h = sign_compact(_payload(), *kits["kit-b"]).split(".")[0]  # kit-b's certificate, kit-a's key

    def signed_with_header(header: dict) -> str:
        hs = _b64(json.dumps(header, separators=(",", ":")).encode())
        return f"{hs}.{p}.{_b64(key_a.sign(f'{hs}.{p}'.encode()))}"

    x5c = json.loads(_unb64(h))["x5c"]
    flipped = p[:40] + ("A" if p[40] != "A" else "B") + p[41:]
    tokens = {
        "good": good,
        "payload altered": f"{h}.{flipped}.{s}",
        "signature altered": f"{h}.{p}.{s[:10]}{'A' if s[10] != 'A' else 'B'}{s[11:]}",
        "another kit's certificate": f"{other_h}.{p}.{s}",
        "signature truncated": f"{h}.{p}.{s[:-2]}",
        "no signature": f"{h}.{p}.",
        "four segments": f"{h}.{p}.{s}.{s}",
        "alg none": signed_with_header({"alg": "none", "x5c": x5c}),
        "alg HS256": signed_with_header({"alg": "HS256", "x5c": x5c}),
        "unknown critical extension": signed_with_header({"alg": "EdDSA", "x5c": x5c, "crit": ["zzz"], "zzz": 1}),
    }
    verifier = Verifier(kits["ca"])
    verdicts = {}
    for name, token in tokens.items():
        try:
            verifier.verify(token, role="kit")
            ours = True
        except VerificationError:
            ours = False
        verdicts[name] = (ours, _joserfc_accepts(token))
    assert verdicts["good"] == (True, True)
    assert all(ours == theirs for ours, theirs in verdicts.values()), verdicts


def test_revoking_a_kit_whose_certificate_is_cached_refuses_its_next_result(kits):
    key, chain = kits["kit-a"]
    verifier = Verifier(kits["ca"])
    first = verifier.verify(sign_compact(_payload(), key, chain), role="kit")
    verifier.revocations.by_serial[first.signer.serial] = first.signer.not_before
    with pytest.raises(VerificationError) as e:
        verifier.verify(sign_compact(_payload(), key, chain), role="kit")
    assert e.value.reason == "revoked"
