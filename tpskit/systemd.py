"""systemd notify protocol, by hand: READY=1, WATCHDOG=1, STATUS=..., STOPPING=1 to $NOTIFY_SOCKET.

A datagram on a Unix socket is all it takes, so no dependency. Every call is a no-op when NOTIFY_SOCKET is
unset (tests, the demo, a shell), so daemons call it unconditionally.
"""

from __future__ import annotations

import os
import socket


class SystemdNotifier:
    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET", "")
        # An address starting with "@" is in the abstract namespace.
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_interval_s: float | None = int(usec) / 1e6 if usec.isdigit() and mine else None

    @property
    def enabled(self) -> bool:
        return bool(self._addr)

    def notify(self, *fields: str) -> bool:
        """Send `KEY=value` lines; returns False when there is no one to tell."""
        if not self._addr:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(self._addr)
            s.sendall("\n".join(fields).encode())
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")

    def feed_every_s(self) -> float | None:
        """How often to send WATCHDOG=1: half of WatchdogSec, as sd_watchdog_enabled(3) advises."""
        return self.watchdog_interval_s / 2 if self.watchdog_interval_s else None
