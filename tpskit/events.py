"""The catalogue of log events. Every log line tpskit writes is one of these, as one JSON object.

Each event has a stable id, a type and one sentence of documentation (tests check that every event used
is in the catalogue). Fields name who, what, TPS and submission; never keys, tokens or passwords.

A line is `{"ts": "2024-02-14T13:05:00.123Z", "level": "info", "event": ..., "type": ..., **fields}`: the
time in ISO 8601 UTC, the level one of debug/info/warning/error. `setup_logging` makes every line on
stderr such an object (a library's own message becomes a `log.message` event) and, when stderr is the
systemd journal, prefixes it with the syslog priority (`<6>`) so that journald files it at that level.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import traceback
from dataclasses import dataclass
from typing import IO, Any, Literal

EventType = Literal["info", "action", "warning", "error", "security"]


@dataclass(frozen=True)
class Event:
    id: str
    type: EventType
    doc: str


_EVENTS: list[Event] = [
    # reader
    Event("read.done", "info", "A photo was read; status ok, review or rejected."),
    Event("read.rejected", "warning", "A capture was refused before reading; the reason says what to fix."),
    # anything logged by a library rather than through log_event
    Event("log.message", "info", "A message logged by a library, kept as text with its logger's name."),
]

CATALOGUE: dict[str, Event] = {e.id: e for e in _EVENTS}

_FORBIDDEN_KEYS = {"key", "private_key", "password", "secret", "token"}


def register(*events: Event) -> None:
    """Roles add their events at import time; ids must be unique."""
    for e in events:
        if e.id in CATALOGUE and CATALOGUE[e.id] != e:
            raise ValueError(f"log event id {e.id} registered twice")
        CATALOGUE[e.id] = e


def log_event(logger: logging.Logger, event_id: str, **fields: Any) -> None:
    """Write one structured line: {"ts":..., "level":..., "event":..., "type":..., **fields}."""
    event = CATALOGUE.get(event_id)
    if event is None:
        raise KeyError(f"log event {event_id!r} is not in the catalogue (tpskit.events)")
    leaked = _FORBIDDEN_KEYS.intersection(fields)
    if leaked:
        raise ValueError(f"log event {event_id} must not carry secrets: {sorted(leaked)}")
    level = _LEVEL_OF_TYPE[event.type]
    if not logger.isEnabledFor(level):
        return
    record = {"ts": iso_utc(), "level": logging.getLevelName(level).lower(), "event": event.id,
              "type": event.type, **fields}
    logger.log(level, json.dumps(record, default=str, sort_keys=False), extra={_MARK: True})


_LEVEL_OF_TYPE = {"info": logging.INFO, "action": logging.INFO, "warning": logging.WARNING,
                  "error": logging.ERROR, "security": logging.WARNING}
_MARK = "tpskit_event"  # set on records whose message already is an event's JSON line
# syslog priorities (sd-daemon(3)): what journald reads from a "<N>" prefix
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def iso_utc(at: float | None = None) -> str:
    """`2024-02-14T13:05:00.123Z`: ISO 8601, UTC, milliseconds."""
    when = dt.datetime.now(dt.UTC) if at is None else dt.datetime.fromtimestamp(at, dt.UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line whatever logged it; with `journald`, each line starts with its syslog
    priority in angle brackets (journald strips it and files the line at that priority)."""

    def __init__(self, journald: bool = False) -> None:
        super().__init__()
        self.journald = journald

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, _MARK, False):
            line = record.getMessage()
        else:
            out: dict[str, Any] = {"ts": iso_utc(record.created), "level": record.levelname.lower(),
                                   "event": "log.message", "type": "info", "logger": record.name,
                                   "message": record.getMessage()}
            if record.exc_info:
                out["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            line = json.dumps(out, default=str)
        if self.journald:
            level = max((lv for lv in _PRIORITY if lv <= record.levelno), default=logging.DEBUG)
            line = f"<{_PRIORITY[level]}>{line}"
        return line


def stderr_is_journal(stream: IO[str] | None = None) -> bool:
    """True when `stream` (stderr) is connected to the journal: systemd sets JOURNAL_STREAM to the
    "device:inode" of that socket (systemd.exec(5)); a redirected stderr no longer matches it."""
    want = os.environ.get("JOURNAL_STREAM")
    if not want:
        return False
    try:
        st = os.fstat((stream or sys.stderr).fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return want == f"{st.st_dev}:{st.st_ino}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time of each line (as logging's last-resort handler does),
    so a handler set up once keeps working when stderr is replaced (tests capture it per test)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:  # type: ignore[override]
        return sys.stderr


def setup_logging(level: int = logging.INFO) -> None:
    """The process's logging: JSON lines on stderr at `level` and above (journald priorities when
    stderr is the journal). Calling it again replaces the handler it set before, and no other."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if isinstance(h, _StderrHandler):
            root.removeHandler(h)
    handler = _StderrHandler()
    handler.setFormatter(JsonLineFormatter(journald=stderr_is_journal()))
    root.addHandler(handler)
    root.setLevel(level)
