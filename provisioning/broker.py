"""mosquitto configuration and access control for a district broker.

Identity is bound to the certificate, at the broker: `use_subject_as_username` makes the certificate's
whole subject (CN = kit id, serialNumber = that certificate's serial) the MQTT user name, and
`use_username_as_clientid` makes it the client id as well. So no certificate can take another
client's session (before, kit-b's certificate could take the district service's client id and kick it
off, discarding what its session held), one certificate holds at most one connection (a second one
takes the first one's place), and a replaced certificate of a kit is another, powerless user.

Access control is mosquitto's dynamic security plugin (shipped with Debian's mosquitto 2.0), not an ACL
file: one role per TPS (write its result and evidence topics, read its ack topic), one for the
district service, one for the provisioning tools; one client per certificate. `sign-csr` and `revoke`
change it at run time through the plugin's `$CONTROL/dynamic-security/v1` topic (a revoked certificate's
client is deleted, which disconnects it at once and leaves it no topic at all), so the broker is never
reloaded on a routine path: mosquitto 2.0.11 segfaulted (session_expiry__remove) under SIGHUP reloads
mixed with connections and client-id churn, 3 runs out of 3. When the broker is not running, the tools
write the plugin's file instead, which the broker reads at start. The CRL is still generated (the
broker checks it at the TLS handshake from its next start); until then a revoked certificate may
complete TLS but may not publish, subscribe or receive anything.

Persistence: the broker saves its state every `autosave_interval` seconds and at shutdown; a crash can
lose what arrived since (queued messages for offline clients). Nothing is lost end to end: a kit keeps
every result until the district's signed ack arrives and publishes again without one; the district
acknowledges a message to the broker only after its database commit (bench/chaos.py measures it).
"""

from __future__ import annotations

import glob
import json
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

from tpskit import topics

PLUGIN_NAME = "mosquitto_dynamic_security.so"
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
ROLE_DISTRICT = "district"
ROLE_ADMIN = "provisioning"
#: Largest MQTT packet the broker takes: the largest evidence photo a result may announce, plus room
#: for the topic and properties (tpskit.envelope.MAX_EVIDENCE_BYTES).
MAX_PACKET_BYTES = 16 * 1024 * 1024 + 4096
#: Bytes of QoS 1 messages the broker holds for one offline session (the district service's, while it is
#: down; a dead failover instance's, for good). Without a cap every photo queues in the broker's memory and
#: in the file it rewrites every autosave: a 10,000-TPS regency's peak hour is gigabytes, and a kit
#: republishing for want of an ack queues its photo again each time. Beyond the cap the broker drops; the
#: kit keeps the signed result in its outbox until the district's signed ack and publishes it again.
MAX_QUEUED_BYTES = 256 * 1024 * 1024


class BrokerError(Exception):
    """The broker could not be reached or refused a change; the message says what to do."""


def find_plugin() -> str | None:
    """Where Debian (any architecture) or a source build installs the dynamic security plugin."""
    for pattern in (f"/usr/lib/*/{PLUGIN_NAME}", f"/usr/lib/{PLUGIN_NAME}", f"/usr/local/lib/{PLUGIN_NAME}",
                    f"/usr/lib/*/mosquitto/{PLUGIN_NAME}"):
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def tps_role(tps: str) -> str:
    return f"tps-{tps}"


def kit_role_acls(tps: str) -> list[dict[str, Any]]:
    """What every kit of one TPS may do: write its result and evidence, read its acks."""
    return [
        {"acltype": "publishClientSend", "topic": topics.result_topic(tps), "allow": True},
        {"acltype": "publishClientSend", "topic": topics.evidence_filter(tps), "allow": True},
        {"acltype": "subscribeLiteral", "topic": topics.ack_topic(tps), "allow": True},
        {"acltype": "publishClientReceive", "topic": topics.ack_topic(tps), "allow": True},
    ]


DISTRICT_ACLS: list[dict[str, Any]] = [
    {"acltype": "subscribePattern", "topic": topics.ALL_RESULTS, "allow": True},
    {"acltype": "subscribePattern", "topic": topics.ALL_EVIDENCE, "allow": True},
    {"acltype": "publishClientReceive", "topic": topics.ALL_RESULTS, "allow": True},
    {"acltype": "publishClientReceive", "topic": topics.ALL_EVIDENCE, "allow": True},
    {"acltype": "publishClientSend", "topic": topics.ALL_ACKS, "allow": True},
]

ADMIN_ACLS: list[dict[str, Any]] = [
    {"acltype": "publishClientSend", "topic": CONTROL_TOPIC, "allow": True},
    {"acltype": "subscribeLiteral", "topic": RESPONSE_TOPIC, "allow": True},
    {"acltype": "publishClientReceive", "topic": RESPONSE_TOPIC, "allow": True},
]


@dataclass(frozen=True)
class BrokerClient:
    """One certificate the broker knows: its MQTT user name (the subject) and its role."""

    username: str
    role: str
    note: str = ""


def dynsec_config(clients: Iterable[BrokerClient], tps_codes: Iterable[str]) -> dict[str, Any]:
    """The plugin's whole file: deny by default, one role per TPS, the district's and the tools' roles."""
    roles = [{"rolename": ROLE_DISTRICT, "acls": DISTRICT_ACLS}, {"rolename": ROLE_ADMIN, "acls": ADMIN_ACLS}]
    roles += [{"rolename": tps_role(t), "acls": kit_role_acls(t)} for t in sorted(set(tps_codes))]
    return {
        "defaultACLAccess": {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                             "unsubscribe": True},
        "clients": [{"username": c.username, "textname": c.note, "roles": [{"rolename": c.role}]}
                    for c in sorted(clients, key=lambda c: c.username)],
        "groups": [],
        "roles": roles,
    }


def mosquitto_conf(broker_dir: PurePath, *, port: int, bind: str, run_as: str | None = None,
                   plugin: str | None = None, data_dir: PurePath | None = None,
                   dynsec_file: PurePath | None = None) -> str:
    """The broker's configuration. The paths are the ones mosquitto sees when it runs (an installed
    district's, or a district folder's): `broker_dir` holds its certificates and CRL; `data_dir` (default
    broker_dir/data) its persistence; `dynsec_file` (default broker_dir/dynamic-security.json) the
    plugin's file, which the plugin rewrites at every change: it must lie where mosquitto may write."""
    d = Path(broker_dir).resolve() if isinstance(broker_dir, Path) else broker_dir
    data = data_dir if data_dir is not None else d / "data"
    dynsec = dynsec_file if dynsec_file is not None else d / "dynamic-security.json"
    plugin = plugin or find_plugin() or f"/usr/lib/x86_64-linux-gnu/{PLUGIN_NAME}"
    lines = [
        "# Generated by `tpskit provision district-init`. Start with: mosquitto -c " + str(d / "mosquitto.conf"),
        "# Access control is the dynamic security plugin, changed at run time by `tpskit provision` (sign-csr,",
        "# revoke): never reload this broker (SIGHUP) on a routine path; a restart is safe.",
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {plugin}",
        f"plugin_opt_config_file {dynsec}",
        "persistence true",
        f"persistence_location {data}/",
        "# Saved every 10 s and at shutdown; a crash loses at most that, and the kits publish again (nothing",
        "# is deleted on a kit before the district's signed ack).",
        "autosave_interval 10",
        "# Keep queued messages for the district's persistent session (0 would mean the default 1000), up to a",
        "# byte cap: past it the broker drops, and the kits, which keep every result until its signed ack,",
        "# publish again.",
        "max_queued_messages 1000000",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        "max_inflight_messages 0",
        f"max_packet_size {MAX_PACKET_BYTES}",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_type information",
        "log_dest stderr",
    ]
    if run_as:
        lines.append(f"user {run_as}")
    lines += [
        "",
        f"listener {port} {bind}",
        "protocol mqtt",
        f"cafile {d / 'ca.pem'}",
        f"certfile {d / 'server.pem'}",
        f"keyfile {d / 'server.key'}",
        f"crlfile {d / 'crl.pem'}",
        "# the minimum version: TLS 1.2 and 1.3 are accepted, 1.1 and older refused (also on older builds)",
        "tls_version tlsv1.2",
        "require_certificate true",
        "# The certificate's subject (CN = kit id, serialNumber = certificate serial) is the user name and the",
        "# client id: no certificate can take another one's session, and one certificate holds one connection.",
        "use_subject_as_username true",
        "use_username_as_clientid true",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ run time
class BrokerAdmin:
    """Commands to the running broker's dynamic security plugin, as the provisioning identity.

    `cert_pem`/`key_pem` are a short-lived certificate the CA just issued for the fixed provisioning
    user (see provisioning.district); they live in a private temporary folder only while connected.
    """

    def __init__(self, host: str, port: int, ca: Path, cert_pem: bytes, key_pem: bytes, timeout: float = 10.0):
        self.host, self.port, self.ca, self.timeout = host, port, ca, timeout
        self._cert_pem, self._key_pem = cert_pem, key_pem

    def reachable(self) -> bool:
        """False when nothing listens on the port (the broker is stopped): the plugin's file is then ours."""
        import socket

        try:
            with socket.create_connection((self.host, self.port), timeout=self.timeout):
                return True
        except ConnectionRefusedError:
            return False
        except OSError as e:
            raise BrokerError(f"cannot reach the broker at {self.host}:{self.port}: {e}") from e

    def run(self, commands: list[dict[str, Any]], ignore: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """Send `commands`, wait for every response; BrokerError on an error not in `ignore` (e.g.
        "Client already exists" when a command is repeated)."""
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        if not commands:
            return []
        correlation = {str(uuid.uuid4()): c for c in commands}
        for cid, c in correlation.items():
            c["correlationData"] = cid
        got: dict[str, dict[str, Any]] = {}
        done, subscribed = threading.Event(), threading.Event()
        errors: list[str] = []

        def on_connect(client, userdata, flags, rc, props):  # type: ignore[no-untyped-def]
            if rc.is_failure:
                errors.append(f"the broker refused the provisioning connection: {rc}")
                done.set()
                return
            client.subscribe(RESPONSE_TOPIC, qos=1)

        def on_subscribe(client, userdata, mid, rcs, props):  # type: ignore[no-untyped-def]
            if any(r.is_failure for r in rcs):
                errors.append("the broker refused the provisioning identity its response topic (is the dynamic "
                              "security plugin loaded, and this district's file in place?)")
                done.set()
                return
            subscribed.set()

        def on_message(client, userdata, msg):  # type: ignore[no-untyped-def]
            try:
                for r in json.loads(msg.payload).get("responses", []):
                    if r.get("correlationData") in correlation:
                        got[r["correlationData"]] = r
            except (ValueError, AttributeError):
                return
            if len(got) == len(correlation):
                done.set()

        def on_disconnect(client, userdata, flags, rc, props):  # type: ignore[no-untyped-def]
            if not done.is_set():
                errors.append(f"the broker closed the provisioning connection: {rc}")
                done.set()

        with tempfile.TemporaryDirectory(prefix="tpskit-admin-") as tmp:
            cert, key = Path(tmp) / "admin.pem", Path(tmp) / "admin.key"
            cert.write_bytes(self._cert_pem)
            key.touch(0o600)
            key.write_bytes(self._key_pem)
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(str(cert), str(key))
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", protocol=mqtt.MQTTv5)
        client.tls_set_context(ctx)
        client.on_connect, client.on_subscribe = on_connect, on_subscribe
        client.on_message, client.on_disconnect = on_message, on_disconnect
        try:
            client.connect(self.host, self.port, keepalive=30)
        except ssl.SSLCertVerificationError as e:
            raise BrokerError(f"the server at {self.host}:{self.port} is not this district's broker "
                              f"({e.verify_message})") from e
        except (OSError, ssl.SSLError) as e:
            raise BrokerError(f"cannot connect to the broker at {self.host}:{self.port}: {e}") from e
        client.loop_start()
        try:
            if not subscribed.wait(self.timeout) and not errors:
                errors.append("no answer from the broker (subscribe)")
            if not errors:
                client.publish(CONTROL_TOPIC, json.dumps({"commands": commands}), qos=1)
                if not done.wait(self.timeout):
                    errors.append("the broker did not answer every command in time")
        finally:
            client.disconnect()
            client.loop_stop()
        if errors:
            raise BrokerError(errors[0])
        out = [got[cid] for cid in correlation]
        bad = [f"{r.get('command')}: {r['error']}" for r in out if r.get("error") and r["error"] not in ignore]
        if bad:
            raise BrokerError("the broker refused: " + "; ".join(bad))
        return out


def create_commands(client: BrokerClient, tps: str | None = None) -> list[dict[str, Any]]:
    """Commands that add one client (and its TPS role, when new): idempotent with the ignored errors."""
    out: list[dict[str, Any]] = []
    if tps is not None:
        out.append({"command": "createRole", "rolename": tps_role(tps), "acls": kit_role_acls(tps)})
    out.append({"command": "createClient", "username": client.username, "textname": client.note,
                "roles": [{"rolename": client.role}]})
    return out


ALREADY = ("Role already exists", "Client already exists")
GONE = ("Client not found",)
