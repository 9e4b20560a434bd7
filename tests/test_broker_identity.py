"""Identity is bound to the certificate at the broker: the client id is the certificate's subject, so no
certificate can take another client's session, one certificate holds one connection, and a replaced
certificate is a powerless stranger. Through a real mosquitto with the district's generated config."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from conftest import fake_jpeg, make_reading, wait_for
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tpskit.district.service import client_ids
from tpskit.provisioning.district import sign_csr
from tpskit.provisioning.pki import mqtt_username
from tpskit.topics import result_topic
from tpskit.trust.certs import load_cert
from tpskit.trust.csr import keygen

pytestmark = pytest.mark.broker


class Client:
    """A bare paho client with any certificate and any client id, that never reconnects by itself."""

    def __init__(self, port: int, ca: Path, cert: Path, key: Path, client_id: str, *, clean: bool = False):
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                                  reconnect_on_failure=False)
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
        self.client.tls_set_context(ctx)
        self.connected = threading.Event()
        self.dropped: list[str] = []
        self.assigned: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda c, u, f, rc, p: (self.connected.clear(), self.dropped.append(str(rc)))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0 if clean else 3600
        self.client.connect("127.0.0.1", port, clean_start=clean, properties=props)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        if not rc.is_failure:
            self.connected.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _kit_files(handle):
    cfg = handle.config()
    return cfg.identity.ca, cfg.identity.certificate, cfg.identity.key


def test_a_kit_certificate_cannot_take_the_district_service_session_nor_empty_its_queue(rig_factory,
                                                                                          raw_kit_factory):
    rig = rig_factory(2)
    service = rig.serve_inprocess()
    drops: list[str] = []
    service.link.on_status = lambda what, detail: drops.append(what) if what == "disconnected" else None
    # The id the service asks for, and the one the broker really gives it (its certificate's subject).
    ids = [client_ids(rig.district_cfg())[0], mqtt_username(load_cert(rig.root / "service" / "district.pem"))]
    # kit-b's certificate asks for the service's client ids, six times: the broker gives it its own.
    port = rig.broker.port
    for i in range(6):
        c = Client(port, *_kit_files(rig.kit(1)), client_id=ids[i % 2], clean=True)
        assert c.connected.wait(10)
        c.close()
    time.sleep(0.5)  # the service would have been kicked by now; nothing to poll for an absence
    assert drops == [] and service.link.subscribed.is_set()
    # While the service is stopped, three results wait in its persistent session; the takeover attempt
    # with a clean start would have discarded them.
    service.stop()
    kit = raw_kit_factory(rig.kit(0))
    sent = []
    for seq in (1, 2, 3):
        photo = fake_jpeg(f"queued-{seq}")
        sid, compact = kit.signed(make_reading(kit.cfg.kit.tps, (seq, 20, 30)), photo, seq=seq)
        kit.send(sid, compact, photo)
        sent.append(sid)
    for district_id in ids:
        c = Client(port, *_kit_files(rig.kit(1)), client_id=district_id, clean=True)
        assert c.connected.wait(10)
        c.close()
    rig.serve_inprocess()
    wait_for(lambda: rig.count_stored() == 3, 20, "the three queued results stored")
    assert sorted(r["submission_id"] for r in rig.stored()) == sorted(sent)


def test_one_certificate_holds_one_connection_whatever_client_ids_it_asks_for(rig_factory):
    rig = rig_factory(1)
    clients = []
    for i in range(5):
        clients.append(Client(rig.broker.port, *_kit_files(rig.kit(0)), client_id=f"flood-{i}"))
        assert clients[-1].connected.wait(10)
    wait_for(lambda: sum(c.connected.is_set() for c in clients) == 1, 10, "one connection left")
    assert clients[-1].connected.is_set()  # each new connection took the previous one's place
    assert all(c.dropped for c in clients[:-1])
    for c in clients:
        c.close()


def test_a_replaced_certificate_is_disconnected_and_cannot_disturb_the_new_one(rig_factory, raw_kit_factory,
                                                                                tmp_path):
    rig = rig_factory(1)
    rig.serve_inprocess()
    old = rig.kit(0)
    thief = Client(rig.broker.port, *_kit_files(old), client_id="x")
    assert thief.connected.wait(10)
    # The kit gets a new key and certificate under the same kit id (the old key was stolen).
    _, csr = keygen(tmp_path / "new", old.kit_id, old.tps)
    new = sign_csr(rig.root, csr, out_dir=tmp_path / "new", kit_paths="relative", replace=True)
    wait_for(lambda: thief.dropped, 10, "the broker to disconnect the replaced certificate")
    (new.folder / "kit.toml").write_text((old.folder / "kit.toml").read_text())
    from conftest import KitHandle

    kit = raw_kit_factory(KitHandle(old.kit_id, old.tps, new.folder))
    # The old certificate connects again: it may publish nothing, and the new one stays connected.
    thief = Client(rig.broker.port, *_kit_files(old), client_id="x")
    assert thief.connected.wait(10)
    photo = fake_jpeg("stolen")
    info = thief.client.publish(result_topic(old.tps), b"forged", qos=1)
    info.wait_for_publish(10)
    assert kit.link.connected.is_set()
    sid, compact = kit.signed(make_reading(old.tps), photo, seq=1)
    kit.send(sid, compact, photo)
    assert kit.wait_ack(sid).status == "accepted"
    assert rig.rejections() == []  # the forged publish never reached the district
    thief.close()
