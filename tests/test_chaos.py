"""Chaos, briefly: kits deliver while the broker, the district service and kits are SIGKILLed and restarted
and the district's disk fills (to below its floor, and to full); nothing signed is lost or doubled, and
nothing acknowledged is missing. A short run of bench/chaos.py (the long one is in BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker

BENCH = Path(__file__).resolve().parent.parent / "bench" / "chaos.py"


def test_chaos_of_kills_restarts_and_a_full_disk_loses_and_doubles_nothing():
    spec = importlib.util.spec_from_file_location("chaos", BENCH)
    assert spec is not None and spec.loader is not None
    chaos = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(chaos)
    f = chaos.measure(["--seconds", "16", "--kits", "3", "--period", "1.2", "--interval", "0.7"])
    ev = f["events"]
    assert ev["kill_kit"] and ev["kill_district"] and ev["kill_broker"], f
    if os.geteuid() == 0:  # the district's private tmpfs needs a mount namespace
        assert ev["fill_to_floor"] and ev["fill_disk"], f
    assert f["sent"] > 20 and f["unanswered"] == 0, f
    assert (f["lost"], f["duplicated"], f["acknowledged_not_stored"], f["rejected_count"]) == (0, 0, 0, 0), f
