"""The district's two MQTT readers (paho's public API, the default; the lean reader behind `[ingest] lean`):
an ack owed when the broker restarts between the commit and the ack still reaches the kit, an ack the
broker refuses is logged as a catalogue event, and the lean reader refuses a paho release it was not
written against. (The end-to-end tests taking the `mqtt_reader` fixture run with both readers.)"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from conftest import fake_jpeg, make_reading, wait_for

from tpskit.district import transport

pytestmark = pytest.mark.broker


def test_an_ack_owed_when_the_broker_restarts_between_commit_and_ack_still_reaches_the_kit(
        rig_factory, raw_kit_factory, mqtt_reader):
    rig = rig_factory(1, reader=mqtt_reader)
    svc = rig.serve_inprocess()
    kit = raw_kit_factory(rig.kit(0))
    committed, published = threading.Event(), threading.Event()
    process, publish_many = svc.ingest.process, svc.link.publish_many

    def process_then_lose_the_broker(*args: Any, **kwargs: Any) -> Any:
        acks = process(*args, **kwargs)
        if acks and not committed.is_set():  # committed; neither the acks nor the PUBACKs are out yet
            committed.set()
            rig.broker.stop()
            wait_for(lambda: not svc.link.subscribed.is_set(), 15, "the service to see the broker gone")
        return acks

    def publish_then_tell(msgs: Any) -> None:
        publish_many(msgs)
        if committed.is_set():
            published.set()

    svc.ingest.process = process_then_lose_the_broker
    svc.link.publish_many = publish_then_tell
    photo = fake_jpeg("owed")
    sid, compact = kit.signed(make_reading(kit.cfg.kit.tps), photo, seq=1)
    kit.send(sid, compact, photo)
    assert published.wait(30), "the service did not publish its ack"
    assert rig.count_stored() == 1
    rig.broker.start()
    # The kit does not publish again: the ack it gets is the one the district owed, published anew.
    wait_for(lambda: any(a.status == "accepted" for a in kit.acks_for(sid)), 30, "the owed accepted ack")
    assert [s["submission_id"] for s in rig.stored()] == [sid]


def test_an_ack_the_broker_refuses_is_logged_as_a_catalogue_event(rig_factory, mqtt_reader, caplog):
    rig = rig_factory(1, reader=mqtt_reader)
    svc = rig.serve_inprocess()
    caplog.set_level("ERROR", logger="tpskit.district.transport")
    svc.link.publish_many([("district/not-an-ack-topic", b"{}")])  # outside the district's ACL

    def refusals() -> list[dict[str, Any]]:
        return [json.loads(r.getMessage()) for r in caplog.records
                if '"district.ack_refused"' in r.getMessage()]

    got = wait_for(refusals, 15, "the refusal logged")
    assert got[0]["reason_code"] == "0x87"  # not authorised


def test_the_lean_reader_refuses_a_paho_release_it_was_not_written_for(rig_factory, monkeypatch, caplog):
    assert transport.lean_problem() is None  # pyproject pins the release it was written for
    problem = transport.lean_problem("2.3.0")
    assert problem is not None and "paho-mqtt 2.2.x" in problem and "2.3.0 is installed" in problem
    assert "set lean = false" in problem
    rig = rig_factory(1, reader="lean")
    cfg = rig.district_cfg()
    monkeypatch.setattr(transport.paho.mqtt, "__version__", "2.3.0")
    with pytest.raises(RuntimeError, match=r"2\.3\.0 is installed"):
        transport.DistrictLink(cfg)
    from tpskit.district.service import serve

    caplog.set_level("ERROR")
    assert serve(cfg, threading.Event()) == 1
    assert any('"district.lean_unsupported"' in r.getMessage() for r in caplog.records)
