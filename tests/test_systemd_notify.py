"""The systemd notify helper speaks the datagram protocol and is silent without NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from tpskit.systemd import SystemdNotifier


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    n = SystemdNotifier({})
    assert not n.enabled and not n.ready() and not n.watchdog() and n.feed_every_s() is None


def test_ready_watchdog_status_and_stopping_reach_the_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        server.settimeout(5)
        n = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "30000000",
                             "WATCHDOG_PID": str(os.getpid())})
        assert n.ready("reading sheets") and n.watchdog() and n.status("queued 1") and n.stopping()
        got = [server.recv(4096).decode() for _ in range(4)]
    assert got == ["READY=1\nSTATUS=reading sheets", "WATCHDOG=1", "STATUS=queued 1", "STOPPING=1"]
    assert n.feed_every_s() == 15.0


def test_abstract_socket_address_and_a_watchdog_meant_for_another_pid() -> None:
    name = f"tpskit-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        n = SystemdNotifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
        assert n.watchdog()
        assert server.recv(64) == b"WATCHDOG=1"
    assert n.feed_every_s() is None
