"""Broker down while the outbox holds three results: each is stored exactly once after it returns."""

from __future__ import annotations

import pytest
from conftest import fake_jpeg, reading_of, wait_for

from tpskit.edge.deliver import Delivery
from tpskit.edge.submit import sign_and_queue

pytestmark = pytest.mark.broker


def test_broker_down_while_queued_delivers_each_result_once(rig_factory, mqtt_reader):
    rig = rig_factory(1, reader=mqtt_reader)
    rig.serve_inprocess()
    kit = rig.kit(0)
    cfg = kit.config()
    with Delivery(cfg) as d:
        assert d.link.wait_connected(15), d.link.last_error
        rig.broker.stop()
        wait_for(lambda: not d.link.connected.is_set(), 10, "the kit to notice the broker is gone")
        rows = [sign_and_queue(cfg, reading_of(kit.tps, (10 + i, 20, 30)), fake_jpeg(f"down-{i}"),
                               outbox=d.outbox) for i in range(3)]
        d.notify()
        assert d.outbox.counts()["queued"] == 3
        # The kit says why in plain words while it keeps retrying.
        wait_for(lambda: "nothing is accepting connections" in (d.link.last_error or ""), 10, "a reason")
        rig.broker.start()
        for r in rows:
            receipt = d.wait_answered(r.submission_id, 45)
            assert receipt is not None and receipt.ack_status == "accepted", receipt
    stored = rig.stored()
    assert sorted(s["submission_id"] for s in stored) == sorted(r.submission_id for r in rows)
    assert sorted(s["seq"] for s in stored) == [1, 2, 3]
    assert rig.rejections() == []


def test_an_outbox_read_error_does_not_end_delivery_and_the_result_still_arrives(rig_factory):
    import sqlite3

    rig = rig_factory(1)
    rig.serve_inprocess()
    kit = rig.kit(0)
    cfg = kit.config()
    with Delivery(cfg) as d:
        real_next = d.outbox.next_pending
        calls: list[int] = []

        def flaky_once():  # an SD card hiccup on the first read
            calls.append(1)
            if len(calls) == 1:
                raise sqlite3.OperationalError("disk I/O error")
            return real_next()

        d.outbox.next_pending = flaky_once
        row = sign_and_queue(cfg, reading_of(kit.tps), fake_jpeg("flaky"), outbox=d.outbox)
        d.notify()
        receipt = d.wait_answered(row.submission_id, 30)
        assert receipt is not None and receipt.ack_status == "accepted", receipt
    assert [s["submission_id"] for s in rig.stored()] == [row.submission_id]
