"""The kit daemon's local control socket: one command a line in, one JSON line out.

A touch page, `tpskit kit control` (status, pending, correct FIELD VALUE) and the tests talk to the running
daemon here. The server only carries lines: each is handed to the daemon (which answers from its main loop,
so a command never races the state machine) and the answer is written back. Unix socket, mode 0660: the
`tpskit` group only.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: How long one command may wait for the daemon's answer before the connection moves on.
REPLY_TIMEOUT_S = 10.0


class ControlServer:
    """Listens on `path`; `answer(line)` returns the reply line for one command (it may block)."""

    def __init__(self, path: Path, answer: Callable[[str], str]) -> None:
        self.path = path
        self.answer = answer
        self._server: socket.socket | None = None

    def open(self) -> threading.Thread:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # stale, from a killed daemon
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(str(self.path))
        os.chmod(self.path, 0o660)
        srv.listen(8)
        self._server = srv
        thread = threading.Thread(target=self._serve, name="kit-control", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        if self._server is None:
            return
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _serve(self) -> None:
        assert self._server is not None
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    for line in conn.makefile("r", encoding="utf-8"):
                        conn.sendall((self.answer(line.strip()) + "\n").encode())
                except (OSError, ValueError, queue.Empty):
                    continue


def control(socket_path: Path, line: str, timeout: float = 10.0) -> Any:
    """Send one command to a running daemon's control socket; returns the decoded JSON reply."""
    from tpskit.firmware.sim_client import send

    return json.loads(send(socket_path, line, timeout))
