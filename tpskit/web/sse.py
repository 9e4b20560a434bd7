"""Server-sent events: a page keeps one `EventSource` open and is told when what it shows has changed.

The service bumps a `Version` (from whichever thread notices the change); every open stream waits on it
and sends one `changed` event per new version (a burst of changes makes one event per wait, not one per
change), plus a comment every `heartbeat_s` so that proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import StreamingResponse


class Version:
    """A counter a thread bumps and async streams watch."""

    def __init__(self) -> None:
        self._n = 0
        self._lock = threading.Lock()
        self.closing = False

    @property
    def n(self) -> int:
        return self._n

    def bump(self) -> int:
        with self._lock:
            self._n += 1
            return self._n


def sse_event(event: str, data: Any, event_id: int | None = None) -> str:
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines += [f"data: {line}" for line in json.dumps(data, ensure_ascii=False).splitlines()]
    return "\n".join(lines) + "\n\n"


async def event_stream(request: Request, version: Version, payload: Callable[[], Any], *, poll_s: float = 0.05,
                       heartbeat_s: float = 15.0) -> AsyncIterator[str]:
    seen = version.n
    yield sse_event("hello", payload(), seen)
    quiet = 0.0
    while not version.closing:
        await asyncio.sleep(poll_s)
        if version.n != seen:
            seen = version.n
            quiet = 0.0
            yield sse_event("changed", payload(), seen)
            continue
        quiet += poll_s
        if quiet >= heartbeat_s:
            quiet = 0.0
            if await request.is_disconnected():
                return
            yield ": keep-alive\n\n"


def sse_response(request: Request, version: Version, payload: Callable[[], Any], **kw: Any) -> StreamingResponse:
    # X-Accel-Buffering: nginx (the documented reverse proxy) would otherwise hold the events back.
    return StreamingResponse(event_stream(request, version, payload, **kw), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
