"""Election night, briefly: kits report through two real districts (mosquitto + district service each) to the
national tier (a three-node NATS cluster, a national worker, PostgreSQL) while a NATS node, the worker, a
district service and a broker are killed or restarted: every result is stored nationally once, and the
national tally is the districts' summed. A tiny run of bench/election.py (the quick one is in BENCHMARKS.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.broker, pytest.mark.postgres, pytest.mark.nats]

BENCH = Path(__file__).resolve().parent.parent / "bench" / "election.py"


def test_a_tiny_election_night_through_every_fault_loses_and_doubles_nothing():
    out = subprocess.run([sys.executable, str(BENCH), "--districts", "2", "--tps", "12", "--night-s", "16",
                          "--workers", "1"], capture_output=True, text=True, timeout=280)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    faults = next(line for line in lines if line.startswith("faults:"))
    for what in ("kill NATS node", "restart NATS node", "kill national worker", "kill district service",
                 "restart broker"):
        assert what in faults, faults
    last = dict(kv.split("=") for kv in lines[-1].split())
    assert int(last["results"]) >= 24, lines[-1]
    assert (last["lost"], last["duplicated"], last["tally_match"]) == ("0", "0", "1"), lines[-1]
    assert re.fullmatch(r"\d+\.\d\d", last["national_ratio"]), lines[-1]
