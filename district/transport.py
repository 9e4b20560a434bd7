"""The district service's MQTT side: the only district module that imports paho.

Persistent session (clean_start=False, long session expiry), QoS 1 subscriptions to every TPS's
results and evidence, and *manual* acknowledgement: a message is PUBACKed to the broker only after the
batch it belongs to committed to the database, so a service killed mid-stream gets every unconfirmed
message again from the broker when it comes back.
"""

from __future__ import annotations

import queue
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tpskit.config import DistrictConfig

SUBSCRIPTIONS = ("tps/+/result", "tps/+/evidence/+")


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    generation: int  # which connection it came on: a mid means nothing on another connection


class DistrictLink:
    def __init__(self, cfg: DistrictConfig, on_status: Callable[[str, str | None], None] | None = None):
        self.cfg = cfg
        self.inbox: queue.SimpleQueue[Inbound] = queue.SimpleQueue()  # C-level: cheap per message
        self.subscribed = threading.Event()
        self.on_status = on_status
        self.generation = 0
        b = cfg.broker
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=b.client_id or "tpskit-district",
                        protocol=mqtt.MQTTv5, manual_ack=True)
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cfg.identity.ca))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(cfg.identity.certificate), str(cfg.identity.key))
        c.tls_set_context(ctx)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.max_inflight_messages_set(65535)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        self.client = c
        self._props = Properties(PacketTypes.CONNECT)
        self._props.SessionExpiryInterval = b.session_expiry_s
        self._props.ReceiveMaximum = b.receive_maximum

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode, props: object) -> None:
        if rc.is_failure:
            self._status("refused", str(rc))
            return
        self.generation += 1
        client.subscribe([(t, 1) for t in SUBSCRIPTIONS])
        self._status("connected", None)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int, rcs: list[ReasonCode],
                      props: object) -> None:
        bad = [str(r) for r in rcs if r.is_failure]
        if bad:
            self._status("subscribe_refused", ", ".join(bad))
            return
        self.subscribed.set()
        self._status("subscribed", None)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode,
                       props: object) -> None:
        self.subscribed.clear()
        self._status("disconnected", str(rc))

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        self.inbox.put(Inbound(msg.topic, msg.payload, msg.mid, msg.qos, self.generation))

    def _status(self, what: str, detail: str | None) -> None:
        if self.on_status is not None:
            self.on_status(what, detail)

    def start(self) -> None:
        b = self.cfg.broker
        self.client.connect_async(b.host, b.port, keepalive=b.keepalive_s, clean_start=False,
                                  properties=self._props)
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: str | bytes) -> None:
        """QoS 1, not awaited: a lost ack is recovered by the kit republishing (answered `duplicate`)."""
        self.client.publish(topic, payload, qos=1, retain=False)

    def confirm(self, msg: Inbound) -> None:
        """PUBACK an inbound message: call only after it is safely committed."""
        if msg.qos > 0 and msg.generation == self.generation:
            self.client.ack(msg.mid, msg.qos)
        # else: the broker redelivers it on the new connection, and we answer that copy instead
