"""The district service killed (SIGKILL) mid-stream: nothing lost, nothing doubled.

Messages are PUBACKed to the broker only after their batch committed, so the broker redelivers every
unconfirmed one to the restarted service's persistent session; a repeat is answered `duplicate`.
"""

from __future__ import annotations

import signal
import threading

import pytest
from conftest import fake_jpeg, make_reading, wait_for

pytestmark = pytest.mark.broker

PER_KIT = 120


def test_district_killed_mid_stream_loses_nothing_and_doubles_nothing(rig_factory, raw_kit_factory, mqtt_reader):
    rig = rig_factory(3, reader=mqtt_reader)
    service = rig.serve_subprocess()
    kits = [raw_kit_factory(rig.kit(i)) for i in range(3)]
    signed = []
    for k in kits:
        for seq in range(1, PER_KIT + 1):
            photo = fake_jpeg(f"{k.cfg.kit.id}-{seq}", 512)
            sid, compact = k.signed(make_reading(k.cfg.kit.tps, (seq % 50, 20, 30)), photo, seq=seq)
            signed.append((k, sid, compact, photo, seq))

    def stream(k, seqs: range, wait: bool) -> None:
        for kk, sid, compact, photo, seq in signed:
            if kk is k and seq in seqs:
                (kk.send if wait else kk.send_nowait)(sid, compact, photo)

    def stream_all(seqs: range, wait: bool) -> list[threading.Thread]:
        threads = [threading.Thread(target=stream, args=(k, seqs, wait)) for k in kits]
        for t in threads:
            t.start()
        return threads

    # The first half streams in, one PUBACK at a time; the service is killed as soon as it has stored
    # a few, while the stream goes on; the rest arrives while it is down.
    first = stream_all(range(1, PER_KIT // 2 + 1), wait=True)
    wait_for(lambda: rig.count_stored() >= 5, 30, "the first results stored", interval=0.005)
    service.send_signal(signal.SIGKILL)
    service.wait(10)
    at_kill = rig.count_stored()
    for t in first:
        t.join(60)
    for t in stream_all(range(PER_KIT // 2 + 1, PER_KIT + 1), wait=False):
        t.join(60)

    rig.serve_subprocess()
    total = 3 * PER_KIT
    wait_for(lambda: len(rig.stored()) >= total, 60, f"all {total} results stored")
    stored = rig.stored()
    assert len(stored) == total, f"{len(stored)} stored ({at_kill} when the service was killed)"
    assert sorted(s["submission_id"] for s in stored) == sorted(sid for _, sid, _, _, _ in signed)
    assert rig.rejections() == []
    for k in kits:
        assert all(a.status in ("accepted", "duplicate") for a in k.all_acks())
