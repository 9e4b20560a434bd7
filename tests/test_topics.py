"""The one topic module: what it builds it parses back, it refuses what is not ours, and the broker's
access rules let each side publish and read exactly the topics the other side uses."""

from __future__ import annotations

import pytest
from paho.mqtt.client import topic_matches_sub

from tpskit import topics
from tpskit.district.transport import SUBSCRIPTIONS, share_subscriptions
from tpskit.provisioning.broker import DISTRICT_ACLS, kit_role_acls

TPS = "3201012001001"
SID = "0b7e6f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b"


def test_every_topic_built_is_parsed_back_to_what_built_it():
    for topic, expected in ((topics.result_topic(TPS), topics.Topic("result", TPS)),
                            (topics.ack_topic(TPS), topics.Topic("ack", TPS)),
                            (topics.evidence_topic(TPS, SID), topics.Topic("evidence", TPS, SID))):
        assert topics.parse(topic) == expected
        assert str(expected) == topic


def test_the_topic_scheme_is_the_one_deployed_brokers_and_kits_use():
    assert (topics.result_topic(TPS), topics.evidence_topic(TPS, SID), topics.ack_topic(TPS)) == (
        f"tps/{TPS}/result", f"tps/{TPS}/evidence/{SID}", f"tps/{TPS}/ack")


@pytest.mark.parametrize("foreign", [
    "", "tps", f"tps/{TPS}", f"tps/{TPS}/", f"tps/{TPS}/results", f"tps/{TPS}/result/extra", f"tps/{TPS}/ack/x",
    f"tps/{TPS}/evidence", f"tps/{TPS}/evidence/{SID}/x", f"TPS/{TPS}/result", f"/tps/{TPS}/result",
    f"kab/{TPS}/result", "tps//result", "tps/+/result", "tps/#", "$SYS/broker/uptime", "$CONTROL/dynamic-security/v1",
])
def test_a_topic_that_is_not_ours_is_refused(foreign: str):
    assert topics.parse(foreign) is None


def test_an_evidence_topic_with_an_empty_last_level_is_ours_so_the_district_can_refuse_it_as_malformed():
    assert topics.parse(f"tps/{TPS}/evidence/") == topics.Topic("evidence", TPS, "")


def test_the_kit_acl_lets_a_kit_publish_exactly_its_own_result_and_evidence_and_read_its_acks():
    acls = {(a["acltype"], a["topic"]) for a in kit_role_acls(TPS)}
    sends = [t for kind, t in acls if kind == "publishClientSend"]
    reads = [t for kind, t in acls if kind == "subscribeLiteral"]
    assert any(topic_matches_sub(f, topics.result_topic(TPS)) for f in sends)
    assert any(topic_matches_sub(f, topics.evidence_topic(TPS, SID)) for f in sends)
    assert not any(topic_matches_sub(f, topics.result_topic("3201012001002")) for f in sends)
    assert not any(topic_matches_sub(f, topics.ack_topic(TPS)) for f in sends)
    assert reads == [topics.ack_topic(TPS)]


def test_the_district_subscribes_to_what_kits_publish_and_its_acl_allows_it():
    allowed = [a["topic"] for a in DISTRICT_ACLS if a["acltype"] == "subscribePattern"]
    for published in (topics.result_topic(TPS), topics.evidence_topic(TPS, SID)):
        assert any(topic_matches_sub(f, published) for f in SUBSCRIPTIONS)
        assert any(topic_matches_sub(f, published) for f in allowed)
        # each process of a split service gets a TPS's two topics in the same share
        owners = [i for i in range(3) if any(topic_matches_sub(f, published) for f in share_subscriptions([TPS], i, 3))]
        assert owners == [int(TPS) % 3]
    sends = [a["topic"] for a in DISTRICT_ACLS if a["acltype"] == "publishClientSend"]
    assert any(topic_matches_sub(f, topics.ack_topic(TPS)) for f in sends)
