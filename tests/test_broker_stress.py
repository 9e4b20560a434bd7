"""The broker survives the mix that crashed it: kit connections, client-id churn (anyone asking for any
client id, clean and persistent sessions, abrupt drops) and provisioning changes (new kits, replaced and
revoked certificates) while results are delivered; every result is stored once. A bounded run of
bench/broker_stress.py (the long runs are in BENCHMARKS.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.broker

BENCH = Path(__file__).resolve().parent.parent / "bench" / "broker_stress.py"


def test_broker_survives_connection_churn_and_provisioning_changes_during_delivery_and_loses_nothing(tmp_path):
    spec = importlib.util.spec_from_file_location("broker_stress", BENCH)
    assert spec is not None and spec.loader is not None
    stress = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stress)
    figures = stress.run(10, "dynsec", steady_kits=3, churners=3, work=tmp_path, echo=lambda *_: None)
    assert figures["crash"] is None and figures["broker_alive"], figures
    assert figures["connections"] >= 30 and figures["provisioning"] >= 10, figures
    assert figures["provisioning_errors"] == []
    assert figures["sent"] > 0 and (figures["lost"], figures["duplicated"]) == (0, 0), figures
    # None published before the district's session subscribed (the broker drops those: a run under CPU
    # load once lost its first result that way, when the kits started before the service had subscribed).
    assert figures["unrouted"] == 0, figures
