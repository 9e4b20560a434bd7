"""The district service's MQTT side: the only district module that imports paho.

Persistent session (clean_start=False, long session expiry), QoS 1 subscriptions to every TPS's
results and evidence, and *manual* acknowledgement: a message is PUBACKed to the broker only after the
batch it belongs to committed to the database, so a service killed mid-stream gets every unconfirmed
message again from the broker when it comes back. The district's acks are QoS 1 publishes; one the
broker has not confirmed when the connection drops is published again after the reconnect.

Two readers of the same protocol: paho's public API (the default: on_message, `ack(mid, 1)` after the
commit, `publish` for the acks, whose in-flight ones paho re-sends itself), and, with `[ingest] lean =
true`, _LeanClient, which overrides paho internals to read inbound PUBLISH packets and write PUBACKs and
acks in bulk. Those internals are not paho's API: the lean reader runs only on the paho minor release it
was written against (LEAN_PAHO), checked at start-up (`lean_problem`).

A district with several brokers (`[broker] failover`; mosquitto brokers are not clustered) has one link
per broker, all feeding one inbox: every service instance subscribes to every broker, so whichever
broker a kit reaches and whichever instance survives, its messages arrive; the database decides what is
new (see tpskit.district.ingest). A message remembers the link it came through (`via`): its PUBACK and
the acks it causes go back through that broker, the one the kit is connected to.
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tpskit import topics
from tpskit.district.config import DistrictConfig
from tpskit.events import Event, log_event, register
from tpskit.trust.keys import client_tls_context

log = logging.getLogger("tpskit.district.transport")

register(
    Event("district.ack_refused", "error", "The broker refused an ack the district published (PUBACK reason code "
          "0x80 or above): that kit gets no receipt for it until it publishes its result again."),
    Event("district.lean_unsupported", "error", "[ingest] lean = true on a paho-mqtt release the lean reader was not "
          "written against; the service does not start (set lean = false or install the named release)."),
)

SUBSCRIPTIONS = (topics.ALL_RESULTS, topics.ALL_EVIDENCE)

# paho's PUBLISH path costs more than everything else the service does per message except the
# signature check: it copies the payload three times and builds a Properties object and an
# MQTTMessage for each. _LeanClient overrides these paho internals, as paho 2.2 has them; pyproject.toml
# pins paho-mqtt to 2.2.x, and lean_problem refuses any other installed minor release.
LEAN_PAHO = "2.2"
_LEAN_INTERNALS = ("_handle_publish", "_handle_pubackcomp", "_packet_queue", "_mid_generate", "_in_packet")
PUBACK = 0x40  # MQTT control packet type, fixed header byte
_PUBACK = struct.Struct("!BBH")


def lean_problem(version: str | None = None) -> str | None:
    """Why the lean reader must not run with the installed paho (None: it may)."""
    version = version or paho.mqtt.__version__
    if ".".join(version.split(".")[:2]) != LEAN_PAHO:
        return (f"[ingest] lean = true needs paho-mqtt {LEAN_PAHO}.x (its reader overrides that release's "
                f"internals) but {version} is installed. Fix: set lean = false (paho's public API, the default), "
                f"or install paho-mqtt=={LEAN_PAHO}.*")
    missing = [a for a in _LEAN_INTERNALS[:4] if not hasattr(mqtt.Client, a)]
    if missing:
        return f"[ingest] lean = true: this paho-mqtt {version} lacks {', '.join(missing)}. Fix: set lean = false"
    return None


def split_publish(packet: bytes | bytearray) -> tuple[str, int, bytes]:
    """(topic, packet id, payload) of the variable header and payload of an MQTT v5 QoS 1 PUBLISH;
    its properties are skipped (we use none). ValueError when malformed."""
    view = memoryview(packet)
    try:
        n = int.from_bytes(view[0:2])
        topic = bytes(view[2:2 + n]).decode("utf-8")
        pos = 2 + n
        mid = int.from_bytes(view[pos:pos + 2])
        pos += 2
        props, shift = 0, 0
        while True:  # property length: a variable byte integer
            byte = view[pos]
            pos += 1
            props |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if shift > 21:
                raise ValueError("property length too long")
        if len(view) < pos + props or mid == 0 or n == 0:
            raise ValueError("truncated PUBLISH")
        return topic, mid, bytes(view[pos + props:])
    except (IndexError, UnicodeDecodeError) as e:
        raise ValueError(f"malformed PUBLISH: {e}") from e


def publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    """A whole MQTT v5 QoS 1 PUBLISH packet, no properties."""
    t = topic.encode("utf-8")
    n = 2 + len(t) + 2 + 1 + len(payload)
    length = bytearray()
    while True:  # remaining length: a variable byte integer
        n, digit = divmod(n, 128)
        length.append(digit | (0x80 if n else 0))
        if not n:
            break
    return b"".join((b"\x32", length, len(t).to_bytes(2, "big"), t, mid.to_bytes(2, "big"), b"\x00", payload))


class _LeanClient(mqtt.Client):
    """paho, with a lean path for inbound QoS 1 PUBLISH, PUBACKs written in bulk, and the district's acks
    published in bulk: packets built here, packet ids from paho's own counter, in-flight ones kept here
    until the broker's PUBACK (`resend_owed` publishes them again on a new connection: paho forgets the
    packets it had queued), never more in flight than the broker's receive maximum."""

    on_qos1: Callable[[str, bytes, int], None] | None = None
    on_refused: Callable[[str, int], None] | None = None  # (topic, PUBACK reason code) of a refused ack
    broker_receive_maximum = 65535

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._owed_lock = threading.Lock()
        self.owed: dict[int, tuple[str, bytes]] = {}  # packet id -> ack not yet confirmed by the broker

    def _handle_publish(self) -> MQTTErrorCode:
        handler = self.on_qos1
        if handler is None or (self._in_packet["command"] & 0x06) != 0x02:
            return super()._handle_publish()
        try:
            topic, mid, payload = split_publish(self._in_packet["packet"])
        except ValueError:
            return super()._handle_publish()  # paho's own handling of what it cannot parse either
        handler(topic, payload, mid)  # PUBACKed later, by puback_many (manual_ack)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def puback_many(self, mids: Sequence[int]) -> None:
        """One write for many PUBACKs (v5, success: no reason code), queued like any of paho's packets."""
        self._packet_queue(PUBACK, b"".join(_PUBACK.pack(PUBACK, 2, m) for m in mids), 0, 0)

    def publish_many(self, msgs: Sequence[tuple[str, bytes]]) -> int:
        """QoS 1 PUBLISHes in one write, as many as the broker's receive maximum leaves room for;
        returns how many were taken (the caller publishes the rest through paho)."""
        with self._owed_lock:
            room = max(0, self.broker_receive_maximum - len(self.owed))
            packets = []
            for topic, payload in msgs[:room]:
                mid = self._mid_generate()
                self.owed[mid] = (topic, payload)
                packets.append(publish_packet(topic, payload, mid))
        if packets:
            # Labelled PUBACK for paho's writer, which would treat a PUBLISH label as its own message.
            self._packet_queue(PUBACK, b"".join(packets), 0, 0)
        return len(packets)

    def resend_owed(self) -> list[tuple[str, bytes]]:
        """On a new connection: the acks the broker never confirmed, forgotten here, for publishing again
        (with new packet ids: the old ones meant nothing to the new connection's packet stream)."""
        with self._owed_lock:
            owed = list(self.owed.values())
            self.owed.clear()
        return owed

    def _handle_pubackcomp(self, cmd: Literal["PUBACK", "PUBCOMP"]) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd == "PUBACK" and len(packet) >= 2:
            mid = int.from_bytes(packet[0:2])
            with self._owed_lock:
                sent = self.owed.pop(mid, None)
            if sent is not None:
                if len(packet) > 2 and packet[2] >= 0x80 and self.on_refused is not None:
                    self.on_refused(sent[0], packet[2])
                return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._handle_pubackcomp(cmd)


def share_subscriptions(tps_codes: Iterable[str], share: int, shares: int) -> list[str]:
    """The topic filters of one service process out of `shares`: the result and evidence topics of
    every TPS whose code modulo `shares` is `share`. A TPS's messages therefore always reach the same
    process (per-kit order and photo pairing stay local); a TPS outside the list reaches none."""
    return [f for t in sorted(tps_codes) if int(t) % shares == share for f in topics.tps_filters(t)]


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection it came on: a mid means nothing on another connection
    via: int = 0  # which broker link it came through (DistrictService.links)


class DistrictLink:
    def __init__(self, cfg: DistrictConfig, on_status: Callable[[str, str | None], None] | None = None, *,
                 client_id: str | None = None, subscriptions: Sequence[str] = SUBSCRIPTIONS,
                 endpoint: tuple[str, int] | None = None, via: int = 0,
                 inbox: queue.SimpleQueue[Inbound] | None = None):
        self.cfg = cfg
        self.endpoint = endpoint or (cfg.broker.host, cfg.broker.port)
        self.via = via
        self.subscriptions = list(subscriptions)
        self._suback_due: set[int] = set()
        # C-level: cheap per message; shared by the links of a district with several brokers
        self.inbox: queue.SimpleQueue[Inbound] = inbox if inbox is not None else queue.SimpleQueue()
        self.subscribed = threading.Event()
        self.on_status = on_status
        self.generation = 0
        b = cfg.broker
        self.lean = cfg.ingest.lean
        if self.lean and (problem := lean_problem()) is not None:
            raise RuntimeError(problem)
        kind = _LeanClient if self.lean else mqtt.Client
        c = kind(CallbackAPIVersion.VERSION2, client_id=client_id or b.client_id or "tpskit-district",
                 protocol=mqtt.MQTTv5, manual_ack=True)
        if isinstance(c, _LeanClient):
            c.on_qos1 = self._on_qos1
            c.on_refused = self._on_refused
        c.tls_set_context(client_tls_context(cfg.identity.ca, cfg.identity.certificate, cfg.identity.key))
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.max_inflight_messages_set(65535)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        self.client = c
        self._props = Properties(PacketTypes.CONNECT)
        self._props.SessionExpiryInterval = b.session_expiry_s
        self._props.ReceiveMaximum = b.receive_maximum

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object) -> None:
        if rc.is_failure:
            self._status("refused", str(rc))
            return
        self.generation += 1
        subs = self.subscriptions
        # A share of a long TPS list is many topic filters: a few SUBSCRIBE packets of bounded size.
        self._suback_due = {client.subscribe([(t, 1) for t in subs[i:i + 500]])[1] for i in range(0, len(subs), 500)}
        if isinstance(client, _LeanClient):
            client.broker_receive_maximum = getattr(props, "ReceiveMaximum", 65535)
            self.publish_many(client.resend_owed())  # paho re-sends its own in-flight publishes itself
        self._status("connected", None)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, rcs: list[ReasonCode],
                      props: object) -> None:
        bad = [str(r) for r in rcs if r.is_failure]
        if bad:
            self._status("subscribe_refused", ", ".join(sorted(set(bad))))
            return
        self._suback_due.discard(mid)
        if self._suback_due:
            return
        self.subscribed.set()
        self._status("subscribed", None)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode,
                       props: object) -> None:
        self.subscribed.clear()
        self._status("disconnected", str(rc))

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Inbound(msg.topic, msg.payload, msg.mid, msg.qos, self.generation, self.via))

    def _on_qos1(self, topic: str, payload: bytes, mid: int) -> None:
        self.inbox.put(Inbound(topic, payload, mid, 1, self.generation, self.via))

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: ReasonCode, props: object) -> None:
        if rc.is_failure:  # paho's path: it keeps no topic per packet id
            log_event(log, "district.ack_refused", mid=mid, reason_code=f"0x{rc.value:02x}", reason=str(rc))

    def _on_refused(self, topic: str, reason: int) -> None:
        log_event(log, "district.ack_refused", topic=topic, reason_code=f"0x{reason:02x}")

    def _status(self, what: str, detail: str | None) -> None:
        if self.on_status is not None:
            self.on_status(what, detail)

    def start(self) -> None:
        b = self.cfg.broker
        host, port = self.endpoint
        self.client.connect_async(host, port, keepalive=b.keepalive_s, clean_start=False, properties=self._props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish_many(self, msgs: Sequence[tuple[str, bytes]]) -> None:
        """QoS 1 publishes, not awaited (in one write on the lean path). One the broker has not confirmed
        when the connection drops is published again after the reconnect; an ack still lost (the service
        stopped) is recovered by the kit publishing again, answered `duplicate`."""
        c = self.client
        done = c.publish_many(msgs) if isinstance(c, _LeanClient) else 0
        for topic, payload in msgs[done:]:
            c.publish(topic, payload, qos=1, retain=False)

    def confirm_many(self, msgs: Sequence[Inbound]) -> None:
        """PUBACK inbound messages, all in one write: call only after they are safely committed. One
        from an earlier connection is skipped: the broker redelivers it, and we answer that copy."""
        mids = [m.mid for m in msgs if m.qos == 1 and m.generation == self.generation and m.via == self.via]
        if not mids:
            return
        if isinstance(self.client, _LeanClient):
            self.client.puback_many(mids)
        else:
            for mid in mids:
                self.client.ack(mid, 1)
