"""The district refuses, with its reason, every result it must not count; through a real mosquitto.

Each refusal is answered with a signed `rejected` ack (the kit learns why), logged, counted in the
rejections table, and never stored as a result.
"""

from __future__ import annotations

import base64
import json

import pytest
from conftest import connect_outcome, fake_jpeg, make_reading, wait_for

from tpskit.provisioning.district import revoke
from tpskit.topics import evidence_topic, result_topic

pytestmark = pytest.mark.broker


@pytest.fixture
def district(rig_factory, mqtt_reader):
    rig = rig_factory(2, reader=mqtt_reader)
    rig.serve_inprocess()
    return rig


def _reasons(rig) -> list[str]:
    return [r["reason"] for r in rig.rejections()]


def test_tampered_payload_is_refused_as_bad_signature(district, raw_kit_factory):
    kit = raw_kit_factory(district.kit(0))
    photo = fake_jpeg("tamper")
    sid, compact = kit.signed(make_reading(kit.cfg.kit.tps, (60, 50, 40)), photo, seq=1)
    header, payload, sig = compact.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    # Move ten votes from one candidate to another: every check still balances, only the signature tells.
    body["fields"]["paslon_01"]["value"] += 10
    body["fields"]["paslon_02"]["value"] -= 10
    forged = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    kit.send(sid, f"{header}.{forged}.{sig}", photo)
    ack = kit.wait_ack(sid)
    assert ack.status == "rejected" and ack.reason.startswith("bad_signature")
    assert _reasons(district) == ["bad_signature"]
    assert district.stored() == []


def test_wrong_tps_payload_is_refused_as_tps_mismatch(district, raw_kit_factory):
    kit = raw_kit_factory(district.kit(0))
    other_tps = district.kit(1).tps
    photo = fake_jpeg("wrong-tps")
    # Signed by kit 0's valid key, but claiming the result of another TPS.
    sid, compact = kit.signed(make_reading(other_tps), photo, seq=1, tps=other_tps)
    kit.send(sid, compact, photo)
    ack = kit.wait_ack(sid)
    assert ack.status == "rejected" and ack.reason.startswith("tps_mismatch")
    assert _reasons(district) == ["tps_mismatch"]
    assert district.stored() == []


def test_replayed_message_is_answered_duplicate_and_an_old_sequence_is_refused_as_replay(district,
                                                                                          raw_kit_factory):
    kit = raw_kit_factory(district.kit(0))
    tps = kit.cfg.kit.tps
    p1, p2 = fake_jpeg("one"), fake_jpeg("two")
    sid1, c1 = kit.signed(make_reading(tps, (10, 20, 30)), p1, seq=5)
    kit.send(sid1, c1, p1)
    assert kit.wait_ack(sid1).status == "accepted"
    # The very same message again (a network repeat or a replay): stored once, answered duplicate.
    kit.send(sid1, c1, p1)
    assert [a.status for a in kit.wait_ack_all(sid1, 2)] == ["accepted", "duplicate"]
    # A new submission with a sequence number not above the last accepted one: a replayed old result.
    sid2, c2 = kit.signed(make_reading(tps, (11, 20, 30)), p2, seq=5)
    kit.send(sid2, c2, p2)
    ack = kit.wait_ack(sid2)
    assert ack.status == "rejected" and ack.reason.startswith("replay")
    assert [s["submission_id"] for s in district.stored()] == [sid1]
    assert _reasons(district) == ["replay"]


def test_totals_above_registered_voters_are_refused(district, raw_kit_factory):
    kit = raw_kit_factory(district.kit(0))
    photo = fake_jpeg("too-many")
    # 270 valid votes + 3 invalid at a TPS of 250 registered voters; the form's own checks all pass.
    sid, compact = kit.signed(make_reading(kit.cfg.kit.tps, (120, 100, 50)), photo, seq=1)
    kit.send(sid, compact, photo)
    ack = kit.wait_ack(sid)
    assert ack.status == "rejected" and ack.reason.startswith("over_registered_voters")
    assert "250 registered voters" in ack.reason
    assert _reasons(district) == ["over_registered_voters"]
    assert district.stored() == []


def test_revoked_kit_is_disconnected_at_once_and_may_publish_nothing_without_a_broker_reload(district,
                                                                                              raw_kit_factory):
    handle = district.kit(0)
    kit = raw_kit_factory(handle)
    photo = fake_jpeg("revoked")
    sid, compact = kit.signed(make_reading(handle.tps), photo, seq=1)
    revoke(district.root, handle.kit_id, "stolen")  # deletes its broker user through the running plugin
    wait_for(lambda: "Administrative action" in (kit.link.last_error or ""), 10, "the broker to disconnect the kit")
    # It connects again (TLS still takes the certificate until the broker's next start reads the CRL), but
    # it may not publish anything, and nothing of it reaches the district.
    assert kit.link.wait_connected(15)
    out = kit.link.publish(result_topic(handle.tps), compact, 10)
    assert (out.delivered, out.reason_code) == (False, 0x87)
    out = kit.link.publish(evidence_topic(handle.tps, sid), photo, 10)
    assert (out.delivered, out.reason_code) == (False, 0x87)
    assert district.stored() == [] and district.rejections() == []
    # After a restart (never a reload) the broker refuses the certificate at the TLS handshake (CRL).
    cfg = handle.config()
    probe = (district.broker.port, cfg.identity.ca, cfg.identity.certificate, cfg.identity.key)
    district.broker.stop()
    district.broker.start()
    wait_for(lambda: connect_outcome(*probe).startswith("refused"), 10, "the broker to refuse the revoked kit")
