"""The catalogue of log events. Every log line tpskit writes is one of these, as one JSON object.

Each event has a stable id, a type and one sentence of documentation (tests check that every event used
is in the catalogue). Fields name who, what, TPS and submission; never keys, tokens or passwords.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

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
    """Write one structured line: {"ts":..., "event":..., "type":..., **fields}."""
    event = CATALOGUE.get(event_id)
    if event is None:
        raise KeyError(f"log event {event_id!r} is not in the catalogue (tpskit.events)")
    leaked = _FORBIDDEN_KEYS.intersection(fields)
    if leaked:
        raise ValueError(f"log event {event_id} must not carry secrets: {sorted(leaked)}")
    level = {"info": logging.INFO, "action": logging.INFO, "warning": logging.WARNING,
             "error": logging.ERROR, "security": logging.WARNING}[event.type]
    record = {"ts": round(time.time(), 3), "event": event.id, "type": event.type, **fields}
    logger.log(level, json.dumps(record, default=str, sort_keys=False))
