"""Every log line is a catalogued event: ids unique, typed and documented, and every id the code logs exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from tpskit import events

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("tpskit", "edge", "firmware", "provisioning", "district")
MODULES = ("tpskit.edge.read_cli", "tpskit.edge.daemon", "tpskit.edge.deliver", "tpskit.edge.selftest",
           "tpskit.district.service", "tpskit.district.ingest", "tpskit.firmware.camera",
           "tpskit.firmware.controls")
LOGGED = re.compile(r"log_event\(\s*[\w.]+,\s*\"([a-z0-9_.]+)\"")


def _catalogue() -> dict[str, events.Event]:
    for m in MODULES:
        importlib.import_module(m)
    return events.CATALOGUE


def test_every_event_has_a_type_and_a_sentence_of_documentation():
    for e in _catalogue().values():
        assert e.type in ("info", "action", "warning", "error", "security"), e
        assert len(e.doc.split()) >= 3 and e.doc.endswith("."), e


def test_every_event_the_code_logs_is_in_the_catalogue():
    catalogue = _catalogue()
    used = {m for d in SOURCE_DIRS for p in (ROOT / d).rglob("*.py") for m in LOGGED.findall(p.read_text())}
    assert used, "the pattern found no log_event calls"
    assert sorted(used - catalogue.keys()) == []


def test_registering_an_id_twice_with_another_meaning_is_refused():
    events.register(events.Event("test.once", "info", "A test event registered once."))
    try:
        events.register(events.Event("test.once", "error", "The same id with another meaning."))
    except ValueError as e:
        assert "twice" in str(e)
    else:
        raise AssertionError("a second, different registration was accepted")
    finally:
        events.CATALOGUE.pop("test.once", None)


def test_an_event_carrying_a_secret_is_refused(caplog):
    import logging

    try:
        events.log_event(logging.getLogger("t"), "read.done", private_key="x")
    except ValueError as e:
        assert "secrets" in str(e)
    else:
        raise AssertionError("a private key was logged")
