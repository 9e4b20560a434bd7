"""End to end through a real mosquitto: kit signs, queues, delivers; the district verifies, stores,
acks; the kit keeps the signed ack as its receipt. Plus the broker's ACL and TLS refusals."""

from __future__ import annotations

import pytest
from conftest import connect_outcome, fake_jpeg, reading_of, wait_for

from tpskit.edge.deliver import Delivery
from tpskit.edge.submit import sign_and_queue
from tpskit.edge.transport import MqttLink, TlsIdentity
from tpskit.envelope import Verifier, parse_ack, sha256_hex
from tpskit.provisioning.pki import create_ca, issue_role_cert
from tpskit.topics import evidence_topic, result_topic
from tpskit.trust.certs import cert_pem, load_certs
from tpskit.trust.identity import ROLE_DISTRICT, ROLE_KIT
from tpskit.trust.keys import create_key

pytestmark = pytest.mark.broker


def test_end_to_end_delivery_stores_result_and_kit_keeps_signed_receipt(rig_factory, mqtt_reader):
    rig = rig_factory(2, reader=mqtt_reader)
    rig.serve_inprocess()
    kit = rig.kit(0)
    cfg = kit.config()
    photo = fake_jpeg("evidence-e2e")
    row = sign_and_queue(cfg, reading_of(kit.tps), photo)
    assert row.state == "queued" and row.seq == 1
    with Delivery(cfg) as d:
        receipt = d.wait_answered(row.submission_id, 20)
    assert receipt is not None and receipt.state == "acknowledged" and receipt.ack_status == "accepted"
    # The receipt is the district's signature over the hash of exactly what the kit signed.
    ack = parse_ack(Verifier(load_certs(cfg.identity.ca)).verify(receipt.receipt_jws, role=ROLE_DISTRICT))
    assert ack.envelope_sha256 == sha256_hex(row.envelope)
    assert ack.evidence_sha256 == sha256_hex(photo)
    stored = rig.stored()
    assert [(s["submission_id"], s["tps"], s["envelope"]) for s in stored] == \
        [(row.submission_id, kit.tps, row.envelope)]
    from sqlalchemy import select

    from tpskit.district.db import evidence

    engine = rig.db()
    with engine.connect() as c:
        jpeg = c.execute(select(evidence.c.jpeg).where(evidence.c.submission_id == row.submission_id)).scalar()
    engine.dispose()
    assert jpeg == photo


def test_acl_denies_kit_publishing_under_another_tps(rig_factory):
    rig = rig_factory(2)
    rig.serve_inprocess()
    a, b = rig.kit(0), rig.kit(1)
    cfg = a.config()
    link = MqttLink("acl-probe", TlsIdentity(str(cfg.identity.ca), str(cfg.identity.certificate),
                                             str(cfg.identity.key)), cfg.broker)
    link.start()
    try:
        assert link.wait_connected(15), link.last_error
        own = link.publish(evidence_topic(a.tps, "probe-0001"), b"x", 10)
        other = link.publish(result_topic(b.tps), b"forged", 10)
    finally:
        link.stop()
    assert own.delivered
    assert not other.delivered
    assert other.reason_code == 0x87 and "Not authorized" in other.reason
    # The district never saw the forged result; the probe photo, which no result announced, is not stored.
    wait_for(lambda: rig.rejections(), 10, "the probe photo refused")
    assert rig.stored() == [] and [r["reason"] for r in rig.rejections()] == ["evidence_unannounced"]


def test_certificate_from_another_ca_is_refused_at_tls_handshake(rig_factory, tmp_path):
    rig = rig_factory(1)
    kit = rig.kit(0)
    # A perfectly well-formed kit certificate for the same TPS, from a CA the district never made.
    rogue_key = create_key(tmp_path / "rogue-ca.key")
    rogue_ca = create_ca(rogue_key, "rogue")
    kit_key = create_key(tmp_path / "rogue-kit.key")
    cert = issue_role_cert(rogue_key, rogue_ca, kit_key.public_key(), kit.kit_id, ROLE_KIT, kit.tps)
    (tmp_path / "rogue-kit.pem").write_bytes(cert_pem(cert))

    outcome = connect_outcome(rig.broker.port, kit.config().identity.ca, tmp_path / "rogue-kit.pem",
                              tmp_path / "rogue-kit.key")
    assert outcome.startswith("refused")
    wait_for(lambda: "certificate verify failed" in rig.broker.log.read_text(), 5, "the broker's TLS refusal")
