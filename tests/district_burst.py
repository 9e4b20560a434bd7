"""A district that has seen a burst of results and refusals of every kind the dashboard tells apart, through a
real mosquitto and the district service: shared by the status command's tests and the dashboard's."""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import PPWP, TPS_CODES, RawKit, Rig, build_rig, fake_jpeg, make_reading, wait_for

#: TPS -> the status the burst leaves it in (the others stay not_reported).
EXPECTED = {TPS_CODES[0]: "corrected", TPS_CODES[1]: "slip", TPS_CODES[2]: "refused", TPS_CODES[3]: "revoked",
            TPS_CODES[4]: "review"}


def _checks(values: dict[str, Any]) -> list[dict[str, Any]]:
    from tpskit.forms import load_templates

    template = next(t for t in load_templates().values() if t.id == PPWP)
    return [{"id": c.id, "passed": c.holds(values)} for c in template.checks]


def corrected(tps: str, votes: tuple[int, int, int]) -> dict[str, Any]:
    """An ok reading in which the officer corrected paslon_01 (the reader had seen a 1 for a 7, say)."""
    r = make_reading(tps, votes)
    f = r["fields"]["paslon_01"]
    f.update(status="corrected", ocr_value=f["value"] + 10 if f["value"] < 990 else 0)
    return r


def slip(tps: str) -> dict[str, Any]:
    """A review reading whose own arithmetic fails as written: paslon_01 one more than the sum allows."""
    r = make_reading(tps, (70, 20, 10), status="review")
    r["fields"]["paslon_01"]["value"] += 1
    r["checks"] = _checks({n: f["value"] for n, f in r["fields"].items()})
    assert not all(c["passed"] for c in r["checks"])
    r["officer_slip"] = True  # the officer marked it as written on the sheet
    return r


def unread(tps: str) -> dict[str, Any]:
    """A review reading with one field nobody could read."""
    r = make_reading(tps, (30, 30, 30), status="review")
    r["fields"]["dptb"].update(value=None, status="review", confidence=0.4)
    return r


@dataclass
class Burst:
    rig: Rig
    corrected_sid: str  # TPS_CODES[0]'s current result
    superseded_sids: list[str]  # its earlier ones
    votes: dict[str, tuple[int, int, int]]  # TPS -> its counted votes


def send(kit: RawKit, reading: dict[str, Any], seq: int, tag: str, *, tamper: bool = False,
         claim_tps: str | None = None) -> str:
    photo = fake_jpeg(tag)
    sid, compact = kit.signed(reading, photo, seq=seq, tps=claim_tps)
    if tamper:
        h, p, s = compact.split(".")
        body = json.loads(base64.urlsafe_b64decode(p + "=="))
        body["fields"]["paslon_01"]["value"] += 5
        body["fields"]["paslon_02"]["value"] -= 5
        compact = f"{h}.{base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b'=').decode()}.{s}"
    kit.send(sid, compact, photo)
    return sid


@contextlib.contextmanager
def burst_district(base: Path) -> Iterator[Burst]:
    """Five kits, each leaving its TPS in one status of EXPECTED; the district keeps serving (in-process)."""
    from tpskit.provisioning.district import revoke

    rig = build_rig(base, 5)
    kits: list[RawKit] = []
    try:
        rig.serve_inprocess()
        kits = [RawKit(rig.kit(i)) for i in range(5)]
        k0, k1, k2, k3, k4 = kits
        earlier = [send(k0, make_reading(k0.cfg.kit.tps, (10 + i, 20, 30)), i + 1, f"k0-{i}") for i in range(4)]
        last = send(k0, corrected(k0.cfg.kit.tps, (61, 50, 40)), 5, "k0-last")
        s1 = send(k1, slip(k1.cfg.kit.tps), 1, "k1")
        s2 = send(k2, make_reading(k2.cfg.kit.tps), 1, "k2", tamper=True)
        s2b = send(k2, make_reading(TPS_CODES[0]), 2, "k2b", claim_tps=TPS_CODES[0])  # tps_mismatch
        s3 = send(k3, make_reading(k3.cfg.kit.tps, (5, 6, 7)), 1, "k3")
        s4 = send(k4, unread(k4.cfg.kit.tps), 1, "k4")
        for kit, sid in [(k0, s) for s in [*earlier, last]] + [(k1, s1), (k2, s2), (k2, s2b), (k3, s3), (k4, s4)]:
            kit.wait_ack(sid)
        revoke(rig.root, k3.cfg.kit.id, reason="stolen")
        wait_for(lambda: len(rig.rejections()) >= 2, 10, "the refusals stored")
        # The broker gives each certificate one session: a test connecting as one of these kits again would
        # take it over from a client still open, and the two would fight over it.
        for k in kits:
            k.close()
        kits = []
        yield Burst(rig, last, earlier, {TPS_CODES[0]: (61, 50, 40), TPS_CODES[3]: (5, 6, 7)})
    finally:
        for k in kits:
            k.close()
        rig.close()
