"""Client side of the simulated controls' socket: press a button, read the lights, from another process."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


def send(socket_path: str | Path, line: str, timeout: float = 5.0) -> str:
    """Send one command line and return the reply line (without the newline)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path))
        s.sendall((line.strip() + "\n").encode())
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
    return reply.decode().rstrip("\n")


def press(socket_path: str | Path, button: str) -> None:
    """Press `capture` or `confirm` on a kit running simulated controls."""
    reply = send(socket_path, f"press {button}")
    if reply != "ok":
        raise ValueError(reply)


def state(socket_path: str | Path) -> dict[str, Any]:
    """Current lights, last beep, last signal and last officer message."""
    return json.loads(send(socket_path, "state"))


def history(socket_path: str | Path) -> list[dict[str, Any]]:
    """Every light, beep, signal and message change so far, in order."""
    return json.loads(send(socket_path, "history"))
