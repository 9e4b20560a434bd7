"""The national tier: districts forward every accepted result to a replicated NATS JetStream stream (three
nats-server nodes started here, R3), national workers verify both signatures again and store each result
once in PostgreSQL partitioned by province; the national tally is the district's tally one level higher."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    fake_jpeg,
    load_json_lines,
    make_reading,
    national_section,
    national_toml,
    run_js,
)
from sqlalchemy import select, text

from tpskit.localhost import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.nats]

#: A second district, in another regency (3202) of the same province, and one in another province (33).
OTHER_TPS = [f"320201200100{i}" for i in range(1, 10)]
FAR_TPS = [f"330101200100{i}" for i in range(1, 10)]


def national_rows(db_url: str) -> list[dict[str, Any]]:
    from sqlalchemy import create_engine

    from tpskit.national.db import national_results

    engine = create_engine(db_url)
    try:
        with engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(select(national_results))]
    except Exception:  # the tables are not there before the first worker starts
        return []
    finally:
        engine.dispose()


def national_rejections(db_url: str) -> list[dict[str, Any]]:
    from sqlalchemy import create_engine

    from tpskit.national.db import national_rejections as t

    engine = create_engine(db_url)
    try:
        with engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(select(t).order_by(t.c.id))]
    finally:
        engine.dispose()


def start_worker(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        p = subprocess.Popen([sys.executable, "-m", "tpskit.cli", "national", "work", "--config", str(config)],
                             stdout=out, stderr=out)

    def ready() -> bool:
        if p.poll() is not None:
            raise AssertionError(f"national worker exited {p.returncode}:\n{log.read_text()}")
        return log.read_text().count('"event": "national.ready"') > 0

    before = log.read_text().count('"event": "national.ready"') if log.exists() else 0
    try:
        wait_for(lambda: ready() and log.read_text().count('"event": "national.ready"') > before, 60,
                 "national worker")
    except BaseException:
        p.kill()  # a worker left running would consume the next test's stream on a reused port
        p.wait(10)
        raise
    return p


def send_results(raw: Any, n: int, first_seq: int = 1, votes: tuple[int, int, int] = (60, 50, 40)) -> list[str]:
    sids = []
    for i in range(n):
        reading = make_reading(raw.cfg.kit.tps, (votes[0] + i % 7, votes[1], votes[2]))
        photo = fake_jpeg(f"{raw.cfg.kit.id}-{first_seq + i}")
        sid, compact = raw.signed(reading, photo, first_seq + i)
        raw.send(sid, compact, photo)
        sids.append(sid)
    return sids


def stream_ids(servers: list[str]) -> list[tuple[str, str]]:
    """(district, submission id) of every message in the stream, in stream order (a throwaway consumer)."""
    from tpskit.forwarded import parse_forwarded

    async def read(js: Any) -> list[tuple[str, str]]:
        import uuid

        from tpskit.envelope import unverified_payload

        durable = f"t{uuid.uuid4().hex[:8]}"
        sub = await js.pull_consumer(durable, 30)
        total = await js.stream_messages()
        out: list[tuple[str, str]] = []
        while len(out) < total:
            for m in await js.fetch(sub, 500, 2.0):
                f = parse_forwarded(m.data)
                out.append((f.district, unverified_payload(f.envelope)["submission_id"]))
                await m.ack()
        await js.delete_consumer(durable)
        return out

    return run_js(servers, read)


def district_tally(rig: Any) -> dict[tuple[str, str], dict[str, int]]:
    from tpskit.district.tally import compute
    from tpskit.trust.tps import read_tps_csv

    cfg = rig.district_cfg()
    engine = rig.db()
    try:
        return {(a.level, a.code): {**a.totals, "reported": a.reported, "in_review": a.in_review}
                for t in compute(engine, read_tps_csv(cfg.district.tps_list)) for a in t.areas}
    finally:
        engine.dispose()


def test_forwarded_results_reach_national_storage_once_through_a_killed_nats_node_and_a_killed_worker(
        rig_factory, raw_kit_factory, national_stream, national_db_url, tmp_path):
    cluster = national_stream
    rig = rig_factory(3, extra_config=national_section(cluster.urls))
    config = national_toml(tmp_path / "national", cluster.urls, national_db_url, [rig], ack_wait_s=3)
    rig.serve_subprocess()
    worker_log = tmp_path / "worker.log"
    worker = start_worker(config, worker_log)
    kits = [raw_kit_factory(rig.kit(i)) for i in range(3)]
    sent: list[str] = []
    for k in kits:
        sent += send_results(k, 10)
    cluster.kill(0)  # a NATS node dies mid-stream: the stream keeps its quorum on the other two
    wait_for(lambda: len(national_rows(national_db_url)) >= 20, 60, "results stored with a node down")
    worker.send_signal(signal.SIGKILL)  # a worker dies, possibly between its commit and its acks
    worker.wait(10)
    for i, k in enumerate(kits):
        sent += send_results(k, 10, first_seq=11)
        if i == 0:
            cluster.restart(0)
    worker = start_worker(config, worker_log)
    try:
        wait_for(lambda: len(national_rows(national_db_url)) >= len(sent), 90, "every result in national storage")
        rows = national_rows(national_db_url)
        assert sorted(r["submission_id"] for r in rows) == sorted(sent)  # each once, none missing, none extra
        assert {r["province"] for r in rows} == {"32"}
        stored = {r["submission_id"]: r for r in rig.stored()}
        assert all(r["envelope"] == stored[r["submission_id"]]["envelope"] for r in rows)  # untouched
        assert national_rejections(national_db_url) == []
        events = load_json_lines(worker_log.read_text())
        assert sum(e.get("stored", 0) for e in events if e["event"] == "national.stored") == len(sent)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)


def test_a_district_offline_from_nats_forwards_its_backlog_in_order_without_duplicates(
        rig_factory, raw_kit_factory, national_stream, tmp_path):
    from sqlalchemy import update

    from tpskit.district.db import forward_outbox

    cluster = national_stream
    for i in range(3):  # NATS is down: the district accepts and answers the kits, and keeps what it owes
        cluster.kill(i)
    rig = rig_factory(2, extra_config=national_section(cluster.urls))
    svc = rig.serve_inprocess()
    kits = [raw_kit_factory(rig.kit(i)) for i in range(2)]
    sent = []
    for k in kits:
        sids = send_results(k, 8)
        assert all(k.wait_ack(s).status == "accepted" for s in sids)
        sent += sids
    assert svc.forwarder is not None and svc.forwarder.sent == 0
    assert svc.forwarder.unsent() == len(sent)
    for i in range(3):
        cluster.restart(i)
    wait_for(lambda: svc.forwarder.unsent() == 0, 90, "the backlog forwarded")
    order = [r["submission_id"] for r in sorted(rig.stored(), key=lambda r: r["received_at"])]
    assert stream_ids(cluster.urls) == [("kab-test", s) for s in order]  # acceptance order, each once
    # The district dies after JetStream acknowledged some rows but before it marked them: sent again,
    # JetStream's duplicate window drops them.
    engine = rig.db()
    with engine.begin() as c:
        c.execute(update(forward_outbox).where(forward_outbox.c.id <= 5).values(sent_at=None))
    engine.dispose()
    svc.forwarder.wake()
    wait_for(lambda: svc.forwarder.unsent() == 0, 30, "the unmarked rows sent again")
    assert svc.forwarder.duplicates == 5
    assert stream_ids(cluster.urls) == [("kab-test", s) for s in order]


def forwarded_messages(rig: Any) -> list[dict[str, Any]]:
    from tpskit.district.db import forward_outbox

    engine = rig.db()
    try:
        with engine.connect() as c:
            return [json.loads(r[0]) for r in c.execute(select(forward_outbox.c.message).order_by(forward_outbox.c.id))]
    finally:
        engine.dispose()


def test_a_forged_district_acceptance_or_a_tampered_result_is_refused_by_the_national_worker_and_logged(
        rig_factory, raw_kit_factory, national_stream, national_db_url, tmp_path, caplog):
    """A district (or anyone who can publish on the stream) cannot get a result stored that its kit did
    not sign, nor vouch for a result with an acceptance its service did not sign."""
    import base64
    import threading

    from tpskit.district.ingest import ack_bytes
    from tpskit.envelope import CompactSigner, sha256_hex, unverified_payload
    from tpskit.forwarded import message_id, subject_for
    from tpskit.national.config import load_national_config
    from tpskit.national.worker import NationalWorker
    from tpskit.trust.certs import load_certs
    from tpskit.trust.keys import load_key

    cluster = national_stream
    rig = rig_factory(2, extra_config=national_section(cluster.urls))
    other = rig_factory(1, district_id="kab-other", tps_codes=OTHER_TPS)
    svc = rig.serve_inprocess()
    a, b = raw_kit_factory(rig.kit(0)), raw_kit_factory(rig.kit(1))
    good = send_results(a, 2)
    wait_for(lambda: svc.forwarder.unsent() == 0 and svc.forwarder.sent == 2, 30, "forwarded")
    genuine = forwarded_messages(rig)[0]
    sid = unverified_payload(genuine["envelope"])["submission_id"]
    # (1) the acceptance signed by another district's service key, claiming this district
    ocfg = other.district_cfg()
    ack = unverified_payload(genuine["acceptance"])
    forged_ack = CompactSigner(load_key(ocfg.identity.key), load_certs(ocfg.identity.certificate)).sign(ack_bytes(
        ack["submission_id"], ack["kit_id"], ack["tps"], "accepted", ack["envelope_sha256"], ack["evidence_sha256"],
        None, "kab-test"))
    # (2) the acceptance signed by a kit of this district (right CA, wrong role)
    kcfg = b.cfg
    kit_signed_ack = CompactSigner(load_key(kcfg.identity.key), load_certs(kcfg.identity.certificate)).sign(
        ack_bytes(ack["submission_id"], ack["kit_id"], ack["tps"], "accepted", ack["envelope_sha256"],
                  ack["evidence_sha256"], None, "kab-test"))
    # (3) the kit's JWS with other votes in its payload, the signature kept
    head, payload, sig = genuine["envelope"].split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body["fields"]["paslon_01"]["value"] += 100
    tampered = ".".join([head, base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode(), sig])
    # (4) a genuine acceptance of the district, replayed with another kit's genuine result (b's)
    sid_b = send_results(b, 1)[0]
    wait_for(lambda: svc.forwarder.sent == 3, 30, "forwarded")
    genuine_b = forwarded_messages(rig)[2]
    assert unverified_payload(genuine_b["envelope"])["submission_id"] == sid_b
    forgeries = {
        "untrusted_certificate": {**genuine, "acceptance": forged_ack},
        "wrong_role": {**genuine, "acceptance": kit_signed_ack},
        "bad_signature": {**genuine, "envelope": tampered, "acceptance": genuine["acceptance"]},
        "forged_acceptance": {**genuine_b, "acceptance": genuine["acceptance"]},
    }
    assert sha256_hex(tampered) != ack["envelope_sha256"]

    async def publish(js: Any) -> None:
        for i, (reason, msg) in enumerate(forgeries.items()):
            await js.publish(subject_for("kab-test"), json.dumps(msg).encode(), message_id("kab-test", f"x{i}{reason}"))

    run_js(cluster.urls, publish)
    config = national_toml(tmp_path / "national", cluster.urls, national_db_url, [rig, other])
    worker = NationalWorker(load_national_config(config))
    thread = threading.Thread(target=worker.run, daemon=True)
    with caplog.at_level("WARNING", logger="tpskit.national.worker"):
        thread.start()
        try:
            wait_for(lambda: worker.store.counts["refused"] >= 4 and worker.store.counts["stored"] >= 3, 60,
                     "the forged messages refused and the genuine stored")
        finally:
            worker.stop_event.set()
            thread.join(20)
    assert sorted(r["submission_id"] for r in national_rows(national_db_url)) == sorted([*good, sid_b])
    refused = national_rejections(national_db_url)
    assert sorted(r["reason"] for r in refused) == sorted(forgeries)
    assert all(r["district"] == "kab-test" for r in refused)
    logged = [json.loads(r.getMessage()) for r in caplog.records if "national.rejected" in r.getMessage()]
    assert sorted(e["reason"] for e in logged) == sorted(forgeries)
    assert {e["submission"] for e in logged if e["reason"] != "bad_signature"} <= {sid, sid_b}


def test_national_tally_equals_the_sum_of_district_tallies(
        rig_factory, raw_kit_factory, national_stream, national_db_url, tmp_path):
    import threading

    from tpskit.national.config import load_national_config
    from tpskit.national.db import open_national_db, partitions
    from tpskit.national.tally import compute
    from tpskit.national.worker import NationalWorker

    cluster = national_stream
    section = national_section(cluster.urls)
    rigs = [rig_factory(2, extra_config=section),
            rig_factory(2, district_id="kab-two", tps_codes=OTHER_TPS, extra_config=section),
            rig_factory(2, district_id="kab-far", tps_codes=FAR_TPS, extra_config=section)]
    services = [r.serve_inprocess() for r in rigs]
    total = 0
    for n, rig in enumerate(rigs):
        a, b = raw_kit_factory(rig.kit(0)), raw_kit_factory(rig.kit(1))
        send_results(a, 3, votes=(10 + n, 20, 30))  # three results from one TPS: the last one counts
        send_results(b, 2, votes=(5, 6 + n, 7))
        reading = make_reading(b.cfg.kit.tps, (1, 1, 1), status="review")  # a review result: counted, not summed
        photo = fake_jpeg(f"review-{n}")
        sid, compact = b.signed(reading, photo, 3)
        b.send(sid, compact, photo)
        total += 6
    for svc in services:
        wait_for(lambda svc=svc: svc.forwarder.sent == 6, 30, "forwarded")
    worker = NationalWorker(load_national_config(national_toml(tmp_path / "national", cluster.urls, national_db_url,
                                                               rigs)))
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: worker.store.counts["stored"] == total, 60, "every result stored")
    finally:
        worker.stop_event.set()
        thread.join(20)
    engine = open_national_db(national_db_url, [])
    national = {(a.level, a.code): {**a.totals, "reported": a.reported, "in_review": a.in_review}
                for t in compute(engine, worker.checker.tps) for a in t.areas}
    assert partitions(engine) == {"national_results_p32": 12, "national_results_p33": 6}
    with engine.connect() as c:
        assert c.execute(text("SELECT COUNT(*) FROM national_results_p33 WHERE tps NOT LIKE '33%'")).scalar() == 0
    engine.dispose()
    districts = [district_tally(r) for r in rigs]
    for d in districts:  # every area of every district, down to the TPS, as the district counted it
        for key, totals in d.items():
            assert national[key] == totals, key
    fields = [f for f in districts[0][("regency", "3201")] if f not in ("reported", "in_review")]
    assert "paslon_01" in fields
    summed = {f: sum(d[("regency", code)][f] for d in districts for lv, code in d if lv == "regency")
              for f in [*fields, "reported", "in_review"]}
    assert national[("nation", "ID")] == summed
    assert summed["reported"] == 6 and summed["in_review"] == 3
    assert national[("province", "32")]["paslon_01"] == sum(
        d[("regency", c)]["paslon_01"] for d in districts[:2] for lv, c in d if lv == "regency")


def test_a_worker_dying_between_its_commit_and_its_acks_has_nothing_stored_twice(
        rig_factory, raw_kit_factory, national_stream, national_db_url, tmp_path, monkeypatch):
    """The first worker commits and never acknowledges (as if killed right after its commit): JetStream
    delivers the messages again after ack_wait, and the second worker finds them stored."""
    import threading

    from tpskit.jetstream import Pulled
    from tpskit.national.config import load_national_config
    from tpskit.national.worker import NationalWorker

    cluster = national_stream
    rig = rig_factory(1, extra_config=national_section(cluster.urls))
    svc = rig.serve_inprocess()
    sent = send_results(raw_kit_factory(rig.kit(0)), 6)
    wait_for(lambda: svc.forwarder.sent == 6, 30, "forwarded")
    cfg = load_national_config(national_toml(tmp_path / "national", cluster.urls, national_db_url, [rig],
                                             ack_wait_s=2))

    def run(worker: NationalWorker, until: Any) -> None:
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            wait_for(until, 60, "the worker's batches")
        finally:
            worker.stop_event.set()
            thread.join(20)

    async def no_ack(self: Pulled) -> None:
        return None

    with monkeypatch.context() as m:
        m.setattr(Pulled, "ack", no_ack)
        first = NationalWorker(cfg)
        run(first, lambda: first.store.counts["stored"] == 6)
    second = NationalWorker(cfg)
    run(second, lambda: second.store.counts["already_stored"] >= 6)
    assert second.store.counts["stored"] == 0
    assert sorted(r["submission_id"] for r in national_rows(national_db_url)) == sorted(sent)


def test_a_worker_fetching_ahead_and_stopped_stores_and_acknowledges_what_it_fetched(
        rig_factory, raw_kit_factory, national_stream, national_db_url, tmp_path):
    """With batches of 2 every batch comes full, so the worker asks for the next one while it verifies the
    current one. Stopped while verifying its first batch, it still verifies, stores and acknowledges the one it
    had asked for (nothing is left to wait for ack_wait), and a second worker stores the rest, none twice."""
    import threading

    from tpskit.forwarded import STREAM
    from tpskit.national.config import load_national_config
    from tpskit.national.worker import NationalWorker

    cluster = national_stream
    rig = rig_factory(1, extra_config=national_section(cluster.urls))
    svc = rig.serve_inprocess()
    sent = send_results(raw_kit_factory(rig.kit(0)), 6)
    wait_for(lambda: svc.forwarder.sent == 6, 30, "forwarded")
    config = national_toml(tmp_path / "national", cluster.urls, national_db_url, [rig])
    config.write_text(config.read_text() + "\n[worker]\nbatch_max = 2\n")
    cfg = load_national_config(config)

    def ack_pending() -> int:
        async def info(js: Any) -> int:
            return int((await js.js.consumer_info(STREAM, cfg.nats.durable)).num_ack_pending)

        return run_js(cluster.urls, info)

    first = NationalWorker(cfg)
    check = first.checker.check

    def stop_at_first_check(data: bytes) -> Any:  # the next batch is asked for by then
        first.stop_event.set()
        return check(data)

    first.checker.check = stop_at_first_check  # type: ignore[method-assign]
    thread = threading.Thread(target=first.run, daemon=True)
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    assert first.store.counts["stored"] >= 2, first.store.counts  # 4, unless the batch asked for came back empty
    # What it received is acknowledged (a worker that left it behind fails here: ack_wait is 30 s).
    wait_for(lambda: ack_pending() == 0, 10, "the first worker's acks")
    second = NationalWorker(cfg)
    thread = threading.Thread(target=second.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: first.store.counts["stored"] + second.store.counts["stored"] == 6, 60, "every result")
    finally:
        second.stop_event.set()
        thread.join(20)
    assert second.store.counts["already_stored"] == 0
    assert sorted(r["submission_id"] for r in national_rows(national_db_url)) == sorted(sent)
