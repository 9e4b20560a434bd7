"""Small helpers for running our own services on this machine: the demo, the benchmarks and the tests start
their own mosquitto and district service on free loopback ports and wait for them by polling a condition."""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll `cond` until it returns something truthy and return that; TimeoutError naming `what` after
    `timeout` seconds. A bounded wait on a condition, never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def mosquitto_binary() -> str:
    """The Debian mosquitto broker; `make system-deps` installs it where it is missing."""
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
    if not found:
        raise RuntimeError("mosquitto is not installed; run `make system-deps` (apt-get install mosquitto)")
    return found
