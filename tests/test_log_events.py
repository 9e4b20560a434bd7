"""Every log line is a catalogued event: ids unique, typed and documented, and every id the code logs exists."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from tpskit import events

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ("tpskit", "edge", "firmware", "provisioning", "district")
MODULES = ("tpskit.edge.read_cli", "tpskit.edge.daemon", "tpskit.edge.deliver", "tpskit.edge.selftest",
           "tpskit.district.service", "tpskit.district.ingest", "tpskit.district.dashboard", "tpskit.firmware.camera",
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


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line]


def test_each_log_line_is_one_json_object_with_an_iso_utc_time_and_a_level(capsys):
    import datetime as dt
    import json
    import logging

    events.setup_logging()
    try:
        events.log_event(logging.getLogger("tpskit.test"), "read.rejected", photo="a.jpg", reason="too_dark")
        logging.getLogger("paho.client").warning("connection %s lost", "x")  # a library's own message
        try:
            raise OSError("disk gone")
        except OSError:
            logging.getLogger("sqlalchemy").exception("flush failed")
    finally:
        logging.getLogger().handlers[:] = [h for h in logging.getLogger().handlers
                                           if not isinstance(h, events._StderrHandler)]
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 3, lines
    objs = [json.loads(line) for line in lines]
    for o in objs:
        assert o["ts"].endswith("Z") and "T" in o["ts"]
        assert abs(dt.datetime.fromisoformat(o["ts"]) - dt.datetime.now(dt.UTC)) < dt.timedelta(minutes=5)
        assert o["event"] in events.CATALOGUE
    assert [o["level"] for o in objs] == ["warning", "warning", "error"]
    assert objs[0]["reason"] == "too_dark"
    assert objs[1]["message"] == "connection x lost" and objs[1]["logger"] == "paho.client"
    assert "OSError: disk gone" in objs[2]["exception"]


def test_under_systemd_each_line_carries_its_journald_priority(tmp_path, monkeypatch):
    import logging
    import os

    with open(tmp_path / "journal", "w") as stream:
        st = os.fstat(stream.fileno())
        assert not events.stderr_is_journal(stream)
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert events.stderr_is_journal(stream)
    monkeypatch.setenv("JOURNAL_STREAM", "1:2")  # another stream: stderr was redirected away from the journal
    assert not events.stderr_is_journal()
    fmt = events.JsonLineFormatter(journald=True)

    def line(level: int) -> str:
        return fmt.format(logging.LogRecord("t", level, __file__, 1, "m", None, None))

    assert [line(lv)[:3] for lv in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)] == \
        ["<7>", "<6>", "<4>", "<3>"]
    assert line(logging.INFO)[3] == "{"
