"""The broker's byte cap on an offline session's queue: results it drops arrive anyway, each once.

While the district service is down, every result and photo the kits publish queues in the broker for the
service's persistent session, and a kit that gets no ack publishes its result again. Without a cap that
queue grows in the broker's memory until the service returns (gigabytes at a large regency's peak hour);
with `max_queued_bytes` the broker drops past the cap, and the kits' outboxes, which keep every signed
result until its signed ack, are what carries the rest.
"""

from __future__ import annotations

import re

import pytest
from conftest import fake_jpeg, reading_of, wait_for

from tpskit.edge.deliver import Delivery
from tpskit.edge.submit import sign_and_queue
from tpskit.provisioning.broker import MAX_QUEUED_BYTES

pytestmark = pytest.mark.broker

PHOTO_BYTES = 16 * 1024
CAP_BYTES = 3 * PHOTO_BYTES


def test_the_generated_broker_configuration_caps_each_sessions_queue_in_bytes(rig_factory):
    rig = rig_factory(1)
    conf = rig.broker.conf.read_text()
    assert re.search(rf"^max_queued_bytes {MAX_QUEUED_BYTES}$", conf, re.M), conf
    assert 0 < MAX_QUEUED_BYTES < 1024**3


def test_results_a_full_broker_queue_dropped_while_the_service_was_down_arrive_once_by_the_kits(rig_factory):
    rig = rig_factory(2)
    # A cap of three photos, so that this test's few results overflow it.
    conf = rig.broker.conf.read_text()
    rig.broker.conf.write_text(re.sub(r"^max_queued_bytes \d+$", f"max_queued_bytes {CAP_BYTES}", conf, flags=re.M))
    rig.broker.stop()
    rig.broker.start()
    service = rig.serve_inprocess()  # its persistent session exists from here on
    service.stop()

    kits = [rig.kit(0), rig.kit(1)]
    cfgs = [k.config() for k in kits]
    with Delivery(cfgs[0]) as d0, Delivery(cfgs[1]) as d1:
        deliveries = [d0, d1]
        for d in deliveries:
            assert d.link.wait_connected(15), d.link.last_error
        rows = []
        for i in range(4):
            for k, cfg, d in zip(kits, cfgs, deliveries, strict=True):
                rows.append((d, sign_and_queue(cfg, reading_of(k.tps, (10 + i, 20, 30)),
                                               fake_jpeg(f"{k.kit_id}-{i}", PHOTO_BYTES), outbox=d.outbox)))
                d.notify()
        # Eight photos of 16 KB against a cap of three: the broker says it drops.
        wait_for(lambda: "Outgoing messages are being dropped" in rig.broker.log.read_text(), 30,
                 "the broker to drop past its cap")
        rig.serve_inprocess()
        for d, row in rows:
            receipt = d.wait_answered(row.submission_id, 90)
            assert receipt is not None and receipt.ack_status in ("accepted", "duplicate"), receipt
    stored = rig.stored()
    assert sorted(s["submission_id"] for s in stored) == sorted(r.submission_id for _, r in rows)
    assert rig.rejections() == []
