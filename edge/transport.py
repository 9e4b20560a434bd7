"""The kit's MQTT transport: the only kit module that imports paho.

paho-mqtt 2.x, callback API version 2, MQTT v5, TLS with the kit certificate, QoS 1 and a persistent
session (clean_start=False plus a session expiry), so acknowledgements published while the kit was
offline wait for it at the broker. A publish counts as delivered only when the broker's PUBACK carries
a success reason code: an ACL denial arrives as PUBACK 0x87 "Not authorized" and is reported as a
refusal, in plain words, never as a delivery.

Reconnection is ours, not paho's (`reconnect_on_failure=False`): a supervisor thread connects
synchronously (to learn, and say, why a connection fails), hands the session to paho's network thread
(`loop_start`, so publishing from other threads is safe), and after a drop waits with exponential
backoff before trying again.

Several brokers (`[broker] failover`): a district may run more than one mosquitto (they are not
clustered; every district service instance subscribes to each). When the broker in use cannot be
reached or drops the session, the link tries the next one in the list at once, and backs off only after
a whole round failed. It stays where it is connected ("sticky"): it does not move back to the first
broker when that one returns, because nothing is gained by moving (every broker is served by every
instance), and a returning broker would otherwise pull every kit of the district over at once.
"""

from __future__ import annotations

import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from tpskit.config import BrokerSection
from tpskit.edge.config import DeliverySection
from tpskit.trust.keys import client_tls_context


@dataclass(frozen=True)
class PublishOutcome:
    delivered: bool
    reason_code: int | None  # the PUBACK reason code; None when no PUBACK came
    reason: str  # plain words


@dataclass(frozen=True)
class TlsIdentity:
    ca: str
    certificate: str
    key: str


def tls_context(identity: TlsIdentity) -> ssl.SSLContext:
    return client_tls_context(identity.ca, identity.certificate, identity.key)


def describe_connect_error(e: BaseException, host: str, port: int) -> str:
    """Why a connection failed, for a technician reading the kit's screen or log."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"the broker at {host}:{port} does not present a certificate from the district CA ({e.verify_message})"
    if isinstance(e, ssl.SSLError):
        text = str(e).lower()
        if any(w in text for w in ("unknown ca", "bad certificate", "certificate required", "revoked",
                                   "certificate verify failed", "alert")):
            return f"the broker at {host}:{port} refused this kit's certificate (revoked, expired or from another CA)"
        return f"TLS with {host}:{port} failed: {e.reason or e}"
    if isinstance(e, ConnectionRefusedError):
        return f"nothing is accepting connections at {host}:{port} (broker stopped or wrong port)"
    if isinstance(e, TimeoutError):
        return f"no answer from {host}:{port} (network down?)"
    if isinstance(e, OSError):
        return f"cannot reach {host}:{port}: {e.strerror or e}"
    return f"connection to {host}:{port} failed: {e}"


class MqttLink:
    """One client connection with our own reconnect loop, PUBACK reason codes and message callbacks.

    Used by the kit (subscribes to its ack topic) and by tests and benches that need a raw client.
    """

    def __init__(self, client_id: str, identity: TlsIdentity, broker: BrokerSection, *,
                 subscriptions: list[str] | None = None, retry: DeliverySection | None = None,
                 on_message: Callable[[str, bytes], None] | None = None,
                 on_status: Callable[[bool, str | None], None] | None = None,
                 receive_maximum: int | None = None):
        self.broker = broker
        self.endpoints = broker.endpoints
        self._at = 0  # index in `endpoints` of the broker in use, or tried next
        self.connected_to: tuple[str, int] | None = None  # the broker of the current (or last) session
        self.identity = identity
        self.subscriptions = subscriptions or []
        self.retry = retry or DeliverySection()
        self.on_message_cb = on_message
        self.on_status_cb = on_status
        self.last_error: str | None = None
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._down = threading.Event()  # set by on_disconnect: the supervisor reconnects
        self._thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._pubacks: dict[int, ReasonCode | None] = {}
        self._sessions = 0
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                        reconnect_on_failure=False)
        c.tls_set_context(tls_context(identity))
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        self._props = Properties(PacketTypes.CONNECT)
        self._props.SessionExpiryInterval = broker.session_expiry_s
        if receive_maximum:
            self._props.ReceiveMaximum = receive_maximum
        self.client = c

    # -- paho callbacks (network thread)
    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode,
                    props: object) -> None:
        if rc.is_failure:
            self.last_error = f"the broker refused the connection: {rc}"
            self._status(False)
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        self.last_error = None
        self._sessions += 1
        self.connected_to = self.endpoints[self._at]
        self.connected.set()
        self._status(True)

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, rc: ReasonCode,
                       props: object) -> None:
        self.connected.clear()
        self._down.set()
        if rc.is_failure and not self._stop.is_set():
            self.last_error = f"disconnected by the broker or network: {rc}"
        with self._cond:
            self._cond.notify_all()
        self._status(False)

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, rc: ReasonCode, props: object) -> None:
        with self._cond:
            self._pubacks[mid] = rc
            self._cond.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        if self.on_message_cb is not None:
            self.on_message_cb(msg.topic, msg.payload)

    def _status(self, up: bool) -> None:
        if self.on_status_cb is not None:
            self.on_status_cb(up, self.last_error)

    # -- our connection loop
    def _run(self) -> None:
        """Connect synchronously (so a failure comes with its exception, which we put in plain words),
        then let paho's own network thread (loop_start) run the session until it drops."""
        failures = 0
        while not self._stop.is_set():
            self._down.clear()
            host, port = self.endpoints[self._at]
            try:
                self.client.connect(host, port, keepalive=self.broker.keepalive_s,
                                    clean_start=False, properties=self._props)
            except (OSError, ssl.SSLError) as e:
                self.last_error = describe_connect_error(e, host, port)
                self._status(False)
            else:
                before = self._sessions
                self.client.loop_start()
                while not self._stop.is_set() and not self._down.wait(0.5):
                    pass
                if self._stop.is_set():
                    self.client.disconnect()
                self.client.loop_stop()
                self.connected.clear()
                if self._sessions != before:
                    failures = 0  # we were connected: start the backoff afresh
            if self._stop.is_set():
                break
            failures += 1
            self._at = (self._at + 1) % len(self.endpoints)  # the next broker of the district, at once
            if failures % len(self.endpoints):
                continue
            rounds = failures // len(self.endpoints)  # every broker failed: back off
            delay = min(self.retry.retry_max_s, self.retry.retry_initial_s * 2 ** min(rounds - 1, 16))
            self._stop.wait(delay * random.uniform(0.8, 1.0))

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._down.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._cond:
            self._cond.notify_all()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)

    def publish(self, topic: str, payload: bytes | str, timeout: float, *, wait: bool = True) -> PublishOutcome:
        """Publish QoS 1 and wait for the PUBACK; a failure reason code is a refusal."""
        if not self.connected.is_set():
            return PublishOutcome(False, None, self.last_error or "not connected to the broker")
        info = self.client.publish(topic, payload, qos=1, retain=False)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return PublishOutcome(False, None, f"could not send: {mqtt.error_string(info.rc)}")
        if not wait:
            return PublishOutcome(True, None, "sent (PUBACK not awaited)")
        with self._cond:
            ok = self._cond.wait_for(lambda: info.mid in self._pubacks or not self.connected.is_set(), timeout)
            rc = self._pubacks.pop(info.mid, None)
        if rc is None:
            why = "connection lost before the broker confirmed" if ok else f"no PUBACK within {timeout:.0f} s"
            return PublishOutcome(False, None, why)
        if rc.is_failure:
            return PublishOutcome(False, rc.value,
                                  f"the broker refused the publish on {topic}: {rc} (0x{rc.value:02x})")
        return PublishOutcome(True, rc.value, "delivered to the broker")
