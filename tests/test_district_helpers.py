"""District ingest with helper processes verifying in parallel ([ingest] verify_processes): the same
verdicts, in the same order, as the service process alone, and revocations reach the helpers."""

from __future__ import annotations

import json

from conftest import TPS_CODES, fake_jpeg, reading_of

from tpskit.district.config import load_district_config
from tpskit.district.service import build_ingest
from tpskit.edge.submit import build_payload
from tpskit.envelope import Verifier, parse_ack, payload_bytes, sha256_hex, sign_compact
from tpskit.provisioning.district import bench_kit, district_init, revoke
from tpskit.topics import evidence_topic, result_topic
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key


def _messages(d, tmp_path, kit: str, tps: str, seqs: list[int], tag: str) -> list[tuple[str, bytes]]:
    k = bench_kit(d.root, kit, tps, tmp_path / kit) if not (tmp_path / kit).exists() else None
    folder = k.folder if k else tmp_path / kit
    key, chain = load_key(folder / "kit.key"), load_certs(folder / "kit.pem")
    out = []
    for seq in seqs:
        sid, photo = f"{tag}-{kit}-{seq:04d}", fake_jpeg(f"{tag}{kit}{seq}")
        payload = build_payload(reading_of(tps), kit_id=kit, tps=tps, seq=seq, submission_id=sid,
                                evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
        out += [(evidence_topic(tps, sid), photo),
                (result_topic(tps), sign_compact(payload_bytes(payload), key, chain).encode())]
    return out


def test_helper_processes_give_the_same_verdicts_in_order_and_honour_a_new_revocation(tmp_path):
    csv = tmp_path / "tps.csv"
    csv.write_text("tps,registered_voters\n" + "".join(f"{t},250\n" for t in TPS_CODES[:2]))
    d = district_init(tmp_path / "d", csv, district_id="kab-test")
    with d.config_path.open("a") as f:
        f.write("\n[ingest]\nverify_processes = 2\n")
    cfg = load_district_config(d.config_path)
    assert cfg.ingest.verify_processes == 2
    ingest = build_ingest(cfg)
    ca = Verifier(load_certs(d.ca_cert_path))
    try:
        # kit-a: 1, 2, 3 then a new 2 (older than 3: superseded) and 3 again (duplicate); kit-b: 1, tampered 2.
        a = _messages(d, tmp_path, "kit-a", TPS_CODES[0], [1, 2, 3], "x")
        b = _messages(d, tmp_path, "kit-b", TPS_CODES[1], [1, 2], "x")
        tampered = b[3][1].replace(b".", b".e30", 1)[:len(b[3][1])]
        replay = _messages(d, tmp_path, "kit-a", TPS_CODES[0], [2], "y")
        batch = a + b[:3] + [(b[2][0], b[2][1]), (b[3][0], tampered)] + replay + a[4:6]
        acks = [parse_ack(ca.verify(x.jws, role="district")) for x in ingest.process(batch)]
        assert ingest.counts["checked_by_helpers"] == 7  # every result of the batch went to the helpers
        got = [(x.submission_id, x.status, (x.reason or "").split(":")[0]) for x in acks]
        assert got == [("x-kit-a-0001", "accepted", ""), ("x-kit-a-0002", "accepted", ""),
                       ("x-kit-a-0003", "accepted", ""), ("x-kit-b-0001", "accepted", ""),
                       ("y-kit-a-0002", "rejected", "superseded"), ("x-kit-a-0003", "duplicate", "")]
        assert ingest.counts["rejected:bad_signature"] + ingest.counts["rejected:malformed"] == 1

        revoke(d.root, "kit-a")
        assert "kit-a" in json.loads((d.root / "revoked.json").read_text())
        later = _messages(d, tmp_path, "kit-a", TPS_CODES[0], [4, 5, 6, 7], "z")
        acks = [parse_ack(ca.verify(x.jws, role="district")) for x in ingest.process(later)]
        assert [(x.status, (x.reason or "").split(":")[0]) for x in acks] == [("rejected", "revoked")] * 4
    finally:
        ingest.close()
        ingest.engine.dispose()
