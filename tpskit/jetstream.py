"""The one module that speaks NATS JetStream (nats-py), for the district's forwarder and the national workers.

A client is given every node of the cluster and reconnects to whichever is up, for ever; a publish waits for
JetStream's ack (the stream's quorum stored it) and a pull consumer is durable (the cluster remembers what
was acknowledged). All calls are asyncio; each user runs its own event loop in its own thread or process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from tpskit.events import Event, log_event, register
from tpskit.forwarded import DUPLICATE_WINDOW_S, STREAM, SUBJECT_PREFIX

log = logging.getLogger("tpskit.jetstream")

register(
    Event("nats.error", "warning", "A NATS connection failed or lost its server; the client reconnects to any node "
          "of the cluster on its own (one line, no traceback)."),
)


@dataclass(frozen=True)
class Published:
    stream_seq: int
    duplicate: bool


@dataclass
class Pulled:
    """One message from a pull consumer: its bytes, how often it was delivered, and its ack."""

    data: bytes
    stream_seq: int
    delivered: int
    _msg: Any

    async def ack(self) -> None:
        await self._msg.ack()


class JetStream:
    """A connection to the cluster and its JetStream context."""

    def __init__(self, nc: Any, timeout: float):
        self.nc = nc
        self.js = nc.jetstream(timeout=timeout)
        self.timeout = timeout

    @classmethod
    async def connect(cls, servers: Sequence[str], name: str, timeout: float = 5.0) -> JetStream:
        """Connect to any node up; raises (OSError, nats errors) when none is. Reconnects for ever after."""
        async def on_error(e: Exception) -> None:  # nats-py's default logs a traceback per failed attempt
            log_event(log, "nats.error", client=name, error=f"{type(e).__name__}: {e}"[:200])

        nc = await nats.connect(servers=list(servers), name=name, connect_timeout=2, allow_reconnect=True,
                                max_reconnect_attempts=-1, reconnect_time_wait=0.5, error_cb=on_error)
        return cls(nc, timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a connection whose servers are all gone may fail
            await self.nc.close()

    async def ensure_stream(self, replicas: int, deadline_s: float = 60.0) -> None:
        """Create the results stream (file storage, `replicas` copies, the duplicate window) unless it
        exists. Retried until `deadline_s`: a fresh cluster elects its JetStream leader in a few seconds."""
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline_s
        while True:
            try:
                try:
                    await self.js.stream_info(STREAM)
                    return
                except NotFoundError:
                    await self.js.add_stream(StreamConfig(
                        name=STREAM, subjects=[f"{SUBJECT_PREFIX}.>"], storage=StorageType.FILE,
                        num_replicas=replicas, duplicate_window=DUPLICATE_WINDOW_S))
                    return
            except Exception:
                if loop.time() > end:
                    raise
                await asyncio.sleep(0.5)

    async def publish(self, subject: str, data: bytes, msg_id: str) -> Published:
        """Publish and wait for the stream's ack; a message id seen within the window is not stored twice."""
        ack = await self.js.publish(subject, data, timeout=self.timeout, headers={"Nats-Msg-Id": msg_id})
        return Published(ack.seq, bool(ack.duplicate))

    async def pull_consumer(self, durable: str, ack_wait_s: float, max_ack_pending: int = 20_000) -> Any:
        """A durable pull consumer of the whole stream, shared by every worker that names it."""
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
                                ack_wait=ack_wait_s, max_ack_pending=max_ack_pending)
        return await self.js.pull_subscribe(f"{SUBJECT_PREFIX}.>", durable=durable, stream=STREAM, config=config)

    @staticmethod
    async def fetch(sub: Any, batch: int, timeout: float) -> list[Pulled]:
        """Up to `batch` messages, or none after `timeout` seconds."""
        try:
            msgs = await sub.fetch(batch, timeout=timeout)
        except TimeoutError:  # nats-py raises its own (a subclass) or, once its deadline has passed, the builtin one
            return []
        return [Pulled(m.data, m.metadata.sequence.stream, m.metadata.num_delivered, m) for m in msgs]

    async def stream_messages(self) -> int:
        """Messages the stream holds."""
        info = await self.js.stream_info(STREAM)
        return int(info.state.messages)

    async def pending(self, durable: str) -> int:
        """Messages of the stream the consumer has not had acknowledged yet (the national queue's depth)."""
        info = await self.js.consumer_info(STREAM, durable)
        return int(info.num_pending) + int(info.num_ack_pending)

    async def delete_consumer(self, durable: str) -> None:
        with contextlib.suppress(NotFoundError):
            await self.js.delete_consumer(STREAM, durable)


def run_with(servers: Sequence[str], fn: Callable[[JetStream], Awaitable[Any]], name: str) -> Any:
    """`await fn(js)` on a fresh connection, closed after; for callers without an event loop of their own
    (the benches and the tests talk to the stream directly)."""

    async def main() -> Any:
        js = await JetStream.connect(servers, name=name)
        try:
            return await fn(js)
        finally:
            await js.close()

    return asyncio.run(main())
