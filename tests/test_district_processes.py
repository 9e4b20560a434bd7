"""Several district service processes ([ingest] processes): every result stored exactly once, replays
refused, whichever process gets which message; and the lean MQTT path that reads inbound PUBLISH
packets without paho's copies."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import threading
from pathlib import Path

import pytest
from conftest import fake_jpeg, make_reading, reading_of, wait_for
from paho.mqtt import _packet
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tpskit.district.config import load_district_config
from tpskit.district.ingest import ack_bytes
from tpskit.district.service import build_ingest
from tpskit.district.transport import publish_packet, share_subscriptions, split_publish
from tpskit.edge.submit import build_payload
from tpskit.envelope import AckPayload, payload_bytes, sha256_hex, sign_compact
from tpskit.provisioning.district import bench_kit, district_init
from tpskit.topics import evidence_topic, parse, result_topic
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key


def _publish_body(topic: str, mid: int, payload: bytes, props: Properties | None) -> bytes:
    """Variable header + payload of an MQTT v5 QoS 1 PUBLISH (what follows the fixed header)."""
    t = topic.encode()
    return len(t).to_bytes(2, "big") + t + mid.to_bytes(2, "big") + (props.pack() if props else b"\x00") + payload


def test_lean_publish_split_reads_what_paho_reads_past_properties_and_refuses_truncation():
    props = Properties(PacketTypes.PUBLISH)
    props.PayloadFormatIndicator = 0
    props.UserProperty = ("k", "v" * 200)  # a property length above 127: two length bytes
    for p in (None, props):
        body = _publish_body("tps/3201012001001/evidence/abc", 4321, b"\xff\xd8photo\x00", p)
        ref = _packet.decode_publish(0x32, body, 5)
        assert split_publish(body) == (ref.topic.decode(), ref.mid, ref.payload)
        assert split_publish(bytearray(body)) == split_publish(body)
    with pytest.raises(ValueError):
        split_publish(_publish_body("tps/1/result", 7, b"", props)[:20])
    with pytest.raises(ValueError):
        split_publish(b"\x00")


def test_acks_built_for_bulk_publishing_are_the_publish_packets_paho_reads():
    for size in (0, 100, 200, 20_000, 3_000_000):  # remaining length of 1, 2, 3 and 4 bytes
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        packet = publish_packet("tps/3201012001001/ack", payload, 65535)
        assert packet[0] == 0x32  # PUBLISH, QoS 1
        n, shift, pos = 0, 0, 1
        while True:
            n |= (packet[pos] & 0x7F) << shift
            shift, pos = shift + 7, pos + 1
            if not packet[pos - 1] & 0x80:
                break
        assert len(packet) == pos + n
        ref = _packet.decode_publish(packet[0], packet[pos:], 5)
        assert (ref.topic, ref.mid, ref.qos, ref.payload) == (b"tps/3201012001001/ack", 65535, 1, payload)


def test_an_ack_is_the_ack_schema_the_kit_parses_stamped_to_the_second_and_refuses_an_unknown_status():
    at = dt.datetime(2026, 2, 14, 13, 5, 9, 123456, tzinfo=dt.UTC)  # the service stamps UTC, whole seconds
    cases = [("s-1", "kit-01", "3201012001001", "accepted", "a" * 64, "b" * 64, None),
             ("s-2", "kit-01", "3201012001001", "duplicate", "a" * 64, None, None),
             ("s-3", None, "3201012001001", "rejected", "c" * 64, None, "replay: sequence 3 is not above 9 — ñ"),
             ("s-4", "kit-01", "3201012001001", "rejected", "c" * 64, None, "x" * 5000)]
    for sid, kit, tps, status, env, ev, reason in cases:
        ack = AckPayload.model_validate(json.loads(ack_bytes(sid, kit, tps, status, env, ev, reason, "kab-test", at)))
        assert (ack.submission_id, ack.kit_id, ack.tps, ack.status, ack.envelope_sha256, ack.evidence_sha256) == (
            sid, kit, tps, status, env, ev)
        assert ack.received_at == at.replace(microsecond=0) and ack.district == "kab-test"
        assert ack.reason == (reason if reason is None or len(reason) <= 1000 else reason[:997] + "...")
    with pytest.raises(ValueError):
        ack_bytes("s", None, None, "stored", "a" * 64, None, None, "kab-test")


def test_shares_split_the_tps_list_without_overlap_and_cover_it():
    codes = [f"320101200100{i}" for i in range(1, 10)]
    shares = [share_subscriptions(codes, i, 3) for i in range(3)]
    every = [t for s in shares for t in s]
    assert len(every) == len(set(every)) == 2 * len(codes)
    assert all(s for s in shares)
    for s in shares:  # a TPS's result and evidence topics are in the same share
        parsed = [parse(t) for t in s]
        assert {t.tps for t in parsed if t and t.kind == "result"} == \
            {t.tps for t in parsed if t and t.kind == "evidence"}


def _signed(d, base: Path, kit: str, tps: str, seqs: range, tag: str) -> list[tuple[str, bytes, bytes, int]]:
    folder = base / kit
    if not folder.exists():
        bench_kit(d.root, kit, tps, folder)
    key, chain = load_key(folder / "kit.key"), load_certs(folder / "kit.pem")
    out = []
    for seq in seqs:
        sid, photo = f"{tag}-{kit}-{seq:04d}", fake_jpeg(f"{tag}{kit}{seq}", 256)
        p = build_payload(reading_of(tps), kit_id=kit, tps=tps, seq=seq, submission_id=sid,
                          evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
        out.append((sid, sign_compact(payload_bytes(p), key, chain).encode(), photo, seq))
    return out


def test_two_ingests_on_one_database_pair_photos_across_them_and_store_a_raced_result_once(tmp_path):
    """What two processes sharing messages arbitrarily would do: every photo handled by one ingest and
    every result by the other, concurrently; then the same new result given to both at once. Each photo
    goes in after its result was handled, as a kit sends them (result, then photo): a photo nobody
    announced is refused, and a kit's earlier result completed after a later one is superseded, so letting
    the scheduler put photos first made the outcome depend on the machine's load."""
    csv = tmp_path / "tps.csv"
    tps = ["3201012001001", "3201012001002"]
    csv.write_text("tps,registered_voters\n" + "".join(f"{t},250\n" for t in tps))
    d = district_init(tmp_path / "d", csv, district_id="kab-test")
    cfg = load_district_config(d.config_path)
    a, b = build_ingest(cfg), build_ingest(cfg)
    try:
        sent = {k: _signed(d, tmp_path, k, t, range(1, 31), "s") for k, t in zip(("kit-a", "kit-b"), tps, strict=True)}
        photos = [(evidence_topic(t, sid), photo) for k, t in zip(sent, tps, strict=True)
                  for sid, _, photo, _ in sent[k]]
        results = [(result_topic(t), env) for k, t in zip(sent, tps, strict=True) for _, env, _, _ in sent[k]]
        acks: list = []
        handled = threading.Condition()
        announced = [0]  # results handled so far, in list order (the photos list has the same order)

        def run_results() -> None:
            for i in range(0, len(results), 7):
                acks.extend(b.process(results[i:i + 7]))
                with handled:
                    announced[0] = i + len(results[i:i + 7])
                    handled.notify_all()

        def run_photos() -> None:
            for i in range(0, len(photos), 5):  # other batches than the results': they overlap in time
                with handled:
                    assert handled.wait_for(lambda i=i: announced[0] >= min(i + 5, len(photos)), 60)
                acks.extend(a.process(photos[i:i + 5]))

        threads = [threading.Thread(target=run_photos), threading.Thread(target=run_results)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(acks) == 60  # each result answered once, by whichever ingest completed it

        # A new result raced into both at once: one stores it, the other answers it as a duplicate.
        (sid, env, photo, _), = _signed(d, tmp_path, "kit-a", tps[0], range(31, 32), "race")
        pair = [(evidence_topic(tps[0], sid), photo), (result_topic(tps[0]), env)]
        go, raced = threading.Barrier(2), []

        def race(ingest) -> None:
            go.wait()
            raced.extend(ingest.process(pair))

        threads = [threading.Thread(target=race, args=(x,)) for x in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert a.counts["district.duplicate"] + b.counts["district.duplicate"] == 1
        assert a.counts["district.accepted"] + b.counts["district.accepted"] == 61
        assert len(raced) == 2

        # A replay: a new submission signed with the sequence number of the kit's last stored one (30),
        # refused by either ingest.
        (sid, env, photo, _), = _signed(d, tmp_path, "kit-b", tps[1], range(30, 31), "replay")
        a.process([(evidence_topic(tps[1], sid), photo), (result_topic(tps[1]), env)])
        assert a.counts["rejected:replay"] == 1
        with a.engine.connect() as c:
            rows = c.exec_driver_sql("SELECT COUNT(*), COUNT(DISTINCT submission_id) FROM results").one()
            waiting = c.exec_driver_sql("SELECT COUNT(*) FROM pending").scalar()
        assert tuple(rows) == (61, 61) and waiting == 0
    finally:
        for x in (a, b):
            x.close()
            x.engine.dispose()


@pytest.mark.broker
def test_two_service_processes_store_every_result_once_refuse_replays_and_die_with_their_parent(
        rig_factory, raw_kit_factory):
    rig = rig_factory(3)
    with rig.district_config.open("a") as f:
        f.write("\n[ingest]\nprocesses = 2\n")
    from tpskit.cli import main

    assert main(["district", "check-config", "--config", str(rig.district_config)]) == 1  # no share identities
    # One certificate per service process (the broker gives each certificate one session), while it runs.
    assert main(["provision", "service-shares", "--dir", str(rig.root), "--processes", "2"]) == 0
    service = rig.serve_subprocess()
    log = rig.root / "district.log"
    wait_for(lambda: log.read_text().count('"event": "district.ready"') >= 2, 30, "both service processes ready")
    kits = [raw_kit_factory(rig.kit(i)) for i in range(3)]
    per_kit = 40
    signed = {}
    for k in kits:
        signed[k] = [(seq, fake_jpeg(f"{k.cfg.kit.id}-{seq}", 512)) for seq in range(1, per_kit + 1)]
        signed[k] = [(*k.signed(make_reading(k.cfg.kit.tps, (seq % 50, 20, 30)), photo, seq=seq), photo)
                     for seq, photo in signed[k]]

    def stream(k) -> None:
        for sid, compact, photo in signed[k]:
            k.send_nowait(sid, compact, photo)

    threads = [threading.Thread(target=stream, args=(k,)) for k in kits]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    total = 3 * per_kit
    wait_for(lambda: rig.count_stored() >= total, 60, f"all {total} results stored")

    # A repeat is answered `duplicate`; a new submission with the last used sequence number is a replay.
    k = kits[0]
    sid, compact, photo = signed[k][-1]
    k.send(sid, compact, photo)
    assert k.wait_ack_all(sid, 2)[-1].status == "duplicate"
    photo = fake_jpeg("replay", 512)
    rsid, rcompact = k.signed(make_reading(k.cfg.kit.tps), photo, seq=per_kit)
    k.send(rsid, rcompact, photo)
    assert k.wait_ack(rsid).status == "rejected"

    stored = rig.stored()
    assert sorted(s["submission_id"] for s in stored) == sorted(sid for k in kits for sid, _, _ in signed[k])
    assert [r["reason"] for r in rig.rejections()] == ["replay"]
    assert all(k.acks_for(sid)[0].status == "accepted" for k in kits for sid, _, _ in signed[k])

    # The second share's process ran, and it goes when its parent is SIGKILLed.
    assert '"share": "2/2"' in log.read_text()
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and _parent_of(int(p)) == service.pid]
    assert children
    service.send_signal(signal.SIGKILL)
    service.wait(10)
    wait_for(lambda: not any(Path(f"/proc/{c}").exists() and _parent_of(c) is not None for c in children), 15,
             "the child service process exits with its parent")


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return None if state == "Z" else int(ppid)
