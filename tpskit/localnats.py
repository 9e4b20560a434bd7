"""A NATS JetStream cluster of our own on this machine: three (or more) Debian `nats-server` processes on
free loopback ports, each with its own store folder, routed to each other. The tests, the demo and
bench/election.py start one and kill and restart its nodes; nothing here touches the machine's own NATS
on 4222.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tpskit.localhost import free_port, wait_for

CLUSTER_NAME = "tpskit"


def nats_server_binary() -> str:
    """Debian's nats-server; `make system-deps` installs it where it is missing."""
    found = shutil.which("nats-server") or ("/usr/sbin/nats-server" if os.path.exists("/usr/sbin/nats-server")
                                            else None)
    if not found:
        raise RuntimeError("nats-server is not installed; run `make system-deps` (apt-get install nats-server)")
    return found


@dataclass
class NatsNode:
    name: str
    port: int
    cluster_port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def log(self) -> Path:
        return self.folder / "nats.log"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class NatsCluster:
    """`start()` the nodes, `kill(i)` one (SIGKILL: no goodbye to the others), `restart(i)` it on the same
    ports and store, `stop()` them all."""

    folder: Path
    size: int = 3
    nodes: list[NatsNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.nodes:
            for i in range(self.size):
                node = NatsNode(f"n{i + 1}", free_port(), free_port(), self.folder / f"n{i + 1}")
                node.folder.mkdir(parents=True, exist_ok=True)
                self.nodes.append(node)
            for node in self.nodes:
                self._write_config(node)

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def _write_config(self, node: NatsNode) -> None:
        routes = ", ".join(f"nats-route://127.0.0.1:{o.cluster_port}" for o in self.nodes if o is not node)
        (node.folder / "nats.conf").write_text(f"""\
server_name: {node.name}
listen: 127.0.0.1:{node.port}
jetstream {{
  store_dir: "{node.folder / 'store'}"
  max_memory_store: 64MB
  max_file_store: 4GB
}}
cluster {{
  name: {CLUSTER_NAME}
  listen: 127.0.0.1:{node.cluster_port}
  routes: [{routes}]
}}
""")

    def _launch(self, node: NatsNode) -> None:
        with open(node.log, "ab") as out:
            node.proc = subprocess.Popen([nats_server_binary(), "-c", str(node.folder / "nats.conf")],
                                         stdout=out, stderr=out)

    def _listening(self, node: NatsNode) -> bool:
        if node.proc is not None and node.proc.poll() is not None:
            raise RuntimeError(f"nats-server {node.name} exited with {node.proc.returncode}:\n"
                               f"{node.log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", node.port), timeout=0.2):
                return True
        except OSError:
            return False

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for node in self.nodes:
            self._launch(node)
        for node in self.nodes:
            wait_for(lambda node=node: self._listening(node), timeout, f"nats-server {node.name}")
        return self

    def kill(self, i: int) -> None:
        node = self.nodes[i]
        if node.alive():
            assert node.proc is not None
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(10)

    def restart(self, i: int, timeout: float = 30.0) -> None:
        node = self.nodes[i]
        self.kill(i)
        self._launch(node)
        wait_for(lambda: self._listening(node), timeout, f"nats-server {node.name} again")

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                assert node.proc is not None
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    node.proc.kill()
                    node.proc.wait(5)
            node.proc = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
