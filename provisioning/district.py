"""District provisioning: the CA, the broker's files, the service identity, kit certificates, revocation.

Two layouts. An installed district (`district-init` without `--dir`) follows the FHS layout of
`tpskit.layout`: the CA's workspace in /var/lib/tpskit-ca, what the service reads in
/etc/tpskit, the broker's files in /etc/mosquitto/tpskit, owners and modes set for the service and
broker users; `sign-csr` and `revoke` republish the revocations, CRL and ACL there. A district folder
(`--dir`: the demo, tests, bench rigs) keeps everything in one folder, with relative paths:

    ca.pem                      the district CA certificate: give it to kits and observers
    private/ca.key              the CA key (0600); keep this folder offline when not issuing
    tps.csv                     the TPS list with registered voters (normalised copy of the input)
    district.toml               the district service configuration
    broker/mosquitto.conf dynamic-security.json crl.pem server.pem server.key ca.pem data/
    service/district.pem district.key      the service's client certificate (also signs acks);
                                service/district-<i>of<n>.pem/.key for `[ingest] processes = n`
    kits.json                   every certificate issued: kit id -> TPS, serial, fingerprint
    revoked.json                revoked kits (the service refuses them; the broker via crl.pem)
    kits/<kit-id>/kit.pem ca.pem kit.toml  what to copy onto each kit
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import replace as replace_field
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding

from tpskit.config import parse_endpoint, toml_dumps
from tpskit.files import write_atomic
from tpskit.layout import (
    BROKER,
    BROKER_STATE,
    BROKER_USER,
    CA_WORKSPACE,
    ETC,
    SERVICE_USER,
    STATE,
    Owner,
    SystemLayout,
    set_owner,
)
from tpskit.provisioning import broker as broker_files
from tpskit.provisioning.pki import (
    ProvisioningError,
    check_ca_usable,
    create_ca,
    issue_role_cert,
    issue_server_cert,
    make_crl,
    mqtt_username,
    utcnow,
)
from tpskit.trust.certs import cert_pem, fingerprint, load_cert, share_identity
from tpskit.trust.csr import keygen
from tpskit.trust.identity import ROLE_DISTRICT, ROLE_KIT, check_kit_id, check_tps, identity_of
from tpskit.trust.keys import create_key, load_key
from tpskit.trust.tps import TpsInfo, read_tps_csv, write_tps_csv


def service_user(district_id: str) -> str:
    return f"district-{district_id}"


def admin_user(district_id: str) -> str:
    """The CN of the provisioning tools' short-lived broker identity (starts with 'district': no kit can
    be issued it)."""
    return f"district-{district_id}-provisioning"


#: The serialNumber of every provisioning certificate: one fixed broker user, whichever certificate.
ADMIN_SUBJECT_SERIAL = "provisioning"


@dataclass(frozen=True)
class Published:
    """Where the files the broker and the service read are written (on disk), and the paths the services
    name them by (installed): the same for a district folder, apart by the prefix for an installed one."""

    config: Path
    service_key: Path
    service_cert: Path
    ca: Path
    tps_csv: Path
    revoked: Path
    broker_dir: Path
    broker_data: Path
    dynsec: Path  # the dynamic security plugin's file: where the broker may write (it rewrites it)
    # as the running services see them
    broker_dir_installed: PurePosixPath | Path
    broker_data_installed: PurePosixPath | Path
    dynsec_installed: PurePosixPath | Path
    config_values: dict


@dataclass(frozen=True)
class District:
    """An initialised district: its CA workspace `root` and where it publishes."""

    root: Path

    @property
    def ca_cert_path(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key_path(self) -> Path:
        return self.root / "private" / "ca.key"

    @property
    def published(self) -> Published:
        return published_paths(self.root, self.settings())

    @property
    def broker_dir(self) -> Path:
        return self.published.broker_dir

    @property
    def config_path(self) -> Path:
        return self.published.config

    @property
    def installed(self) -> bool:
        """The FHS layout (owners and modes for the service and broker users), not a district folder."""
        return self.settings().get("layout") == "system"

    @property
    def owner(self) -> Owner:
        s = self.settings()
        return Owner(s.get("service_user") or SERVICE_USER, s.get("broker_user") or BROKER_USER)

    def settings(self) -> dict:
        return json.loads((self.root / "settings.json").read_text())

    def tps(self) -> dict[str, TpsInfo]:
        return read_tps_csv(self.root / "tps.csv")

    def issued(self) -> dict[str, dict]:
        p = self.root / "kits.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def revoked(self) -> dict[str, dict]:
        p = self.root / "revoked.json"
        return json.loads(p.read_text()) if p.exists() else {}


def published_paths(workspace: Path, settings: dict) -> Published:
    if settings.get("layout") != "system":  # a district folder: everything in it, paths relative to district.toml
        w = workspace
        return Published(
            config=w / "district.toml", service_key=w / "service" / "district.key",
            service_cert=w / "service" / "district.pem", ca=w / "ca.pem", tps_csv=w / "tps.csv",
            revoked=w / "revoked.json", broker_dir=w / "broker", broker_data=w / "broker" / "data",
            dynsec=w / "broker" / "dynamic-security.json",
            broker_dir_installed=w / "broker", broker_data_installed=w / "broker" / "data",
            dynsec_installed=w / "broker" / "dynamic-security.json",
            config_values={"tps_list": "tps.csv", "revocations": "revoked.json", "key": "service/district.key",
                           "certificate": "service/district.pem", "ca": "ca.pem",
                           "database": "sqlite:///district.sqlite"})
    lay = SystemLayout(Path(settings["root"]))
    return Published(
        config=lay.on_disk(ETC / "district.toml"), service_key=lay.on_disk(ETC / "district.key"),
        service_cert=lay.on_disk(ETC / "district.pem"), ca=lay.on_disk(ETC / "ca.pem"),
        tps_csv=lay.on_disk(ETC / "tps.csv"), revoked=lay.on_disk(ETC / "revoked.json"),
        broker_dir=lay.on_disk(BROKER), broker_data=lay.on_disk(BROKER_STATE),
        dynsec=lay.on_disk(BROKER_STATE / "dynamic-security.json"),
        broker_dir_installed=BROKER, broker_data_installed=BROKER_STATE,
        dynsec_installed=BROKER_STATE / "dynamic-security.json",
        config_values={"tps_list": str(ETC / "tps.csv"), "revocations": str(ETC / "revoked.json"),
                       "key": str(ETC / "district.key"), "certificate": str(ETC / "district.pem"),
                       "ca": str(ETC / "ca.pem"), "database": f"sqlite:///{STATE / 'district.sqlite'}"})


def open_district(root: Path) -> District:
    d = District(Path(root).resolve())
    if not d.ca_cert_path.exists() or not (d.root / "settings.json").exists():
        raise ProvisioningError(f"{root} is not a district folder; create one with `tpskit provision district-init`")
    return d


def district_init(root: Path | None, tps_csv: Path, *, district_id: str, broker_host: str = "127.0.0.1",
                  broker_port: int = 8883, bind: str = "0.0.0.0", run_as: str | None = None,
                  ca_days: int = 3650, ca_not_before: dt.datetime | None = None, system_root: Path | None = None,
                  owner: Owner | None = None) -> District:
    """Create a district: in the folder `root`, or installed (FHS) under `system_root` when `root` is None.
    Refuses when a CA already exists there."""
    if (root is None) == (system_root is None):
        raise ProvisioningError("give either a district folder (--dir) or an install root (--root), not both")
    owner = owner or Owner()
    if root is None:
        lay = SystemLayout(Path(system_root).resolve())  # type: ignore[arg-type]
        root = lay.on_disk(CA_WORKSPACE)
        settings_layout = {"layout": "system", "root": str(lay.root), "service_user": owner.service_user,
                           "broker_user": owner.broker_user}
        run_as = run_as or owner.broker_user
        owner.check()
    else:
        settings_layout = {"layout": "folder"}
    root = Path(root).resolve()
    if (root / "ca.pem").exists() or (root / "private" / "ca.key").exists():
        raise ProvisioningError(f"{root} already holds a district CA; refusing to replace it (every kit "
                                "certificate depends on it). Use another folder for a new district")
    if not 1 <= broker_port <= 65535:
        raise ProvisioningError(f"broker port {broker_port} is not a TCP port")
    tps = read_tps_csv(tps_csv)
    settings = {"district_id": district_id, "broker_host": broker_host, "broker_port": broker_port, "bind": bind,
                "run_as": run_as, **settings_layout}
    pub = published_paths(root, settings)
    system = settings["layout"] == "system"
    if system:
        _make_dirs(root, pub, owner)
    d = District(root)
    ca_key = create_key(d.ca_key_path)
    os.chmod(d.ca_key_path.parent, 0o700)
    ca = create_ca(ca_key, district_id, days=ca_days, not_before=ca_not_before)
    write_atomic(d.ca_cert_path, cert_pem(ca))
    check_ca_usable(ca)

    bdir = pub.broker_dir
    server_key = create_key(bdir / "server.key")
    write_atomic(bdir / "server.pem", cert_pem(issue_server_cert(ca_key, ca, server_key, broker_host)))
    write_atomic(bdir / "ca.pem", cert_pem(ca))
    pub.broker_data.mkdir(parents=True, exist_ok=True)

    svc_key = create_key(pub.service_key)
    svc = issue_role_cert(ca_key, ca, svc_key.public_key(), service_user(district_id), ROLE_DISTRICT)
    write_atomic(pub.service_cert, cert_pem(svc))
    # the broker's users of the service (one per certificate), kept in the CA's workspace
    write_atomic(root / "service" / "broker-users.json",
                 json.dumps({mqtt_username(svc): pub.service_cert.name}, indent=2))

    write_tps_csv(root / "tps.csv", tps)
    write_atomic(root / "settings.json", json.dumps(settings, indent=2))
    write_atomic(root / "kits.json", "{}\n")
    write_atomic(root / "revoked.json", "{}\n")
    write_atomic(bdir / "mosquitto.conf", broker_files.mosquitto_conf(
        pub.broker_dir_installed, port=broker_port, bind=bind, run_as=run_as, data_dir=pub.broker_data_installed,
        dynsec_file=pub.dynsec_installed))
    v = pub.config_values
    shown = ETC / "district.toml" if system else "district.toml"
    write_atomic(pub.config, toml_dumps({
        "district": {"id": district_id, "tps_list": v["tps_list"], "revocations": v["revocations"]},
        "identity": {"key": v["key"], "certificate": v["certificate"], "ca": v["ca"]},
        "broker": {"host": broker_host if bind in ("0.0.0.0", "::") else bind, "port": broker_port,
                   "client_id": service_user(district_id)},
        "database": {"url": v["database"]},
    }, header="# District service configuration, generated by `tpskit provision district-init`.\n"
              f"# Check it with: tpskit district check-config --config {shown}"))
    if system:
        write_atomic(pub.ca, cert_pem(ca))
        write_tps_csv(pub.tps_csv, tps)
    _refresh_broker_lists(d)
    _write_dynsec_file(d)
    if system:
        _set_owners(pub, owner)
    return d


def _make_dirs(workspace: Path, pub: Published, owner: Owner) -> None:
    """The installed layout's folders, with their owners and modes (layout.py's table)."""
    lay_root = pub.config.parent
    for path, mode, user, group_of in (
            (workspace, 0o700, None, None),
            (lay_root, 0o750, None, owner.service_user),
            (pub.broker_dir, 0o750, None, owner.broker_user),
            (pub.broker_data, 0o700, owner.broker_user, None),
            (pub.config.parents[2] / STATE.relative_to("/"), 0o750, owner.service_user, None)):
        path.mkdir(parents=True, exist_ok=True)
        set_owner(path, mode, owner, user=user, group_of=group_of)


def _set_owners(pub: Published, owner: Owner) -> None:
    """Keys 0600 owned by the user that reads them; the service configuration readable by its group."""
    set_owner(pub.service_key, 0o600, owner, user=owner.service_user)
    set_owner(pub.broker_dir / "server.key", 0o600, owner, user=owner.broker_user)
    set_owner(pub.config, 0o640, owner, group_of=owner.service_user)


def _refresh_broker_lists(d: District) -> None:
    """Rewrite the CRL from revoked.json (the broker reads it at its next start); an installed district
    also republishes revoked.json where the service reads it."""
    pub = d.published
    revoked = d.revoked()
    ca_key = load_key(d.ca_key_path)
    ca = load_cert(d.ca_cert_path)
    entries = [(int(v["serial"]), dt.datetime.fromisoformat(v["revoked_at"]) if v.get("revoked_at") else utcnow())
               for v in revoked.values()]
    crl = make_crl(ca_key, ca, entries)
    for folder in (pub.broker_dir, *(extra_broker_dir(d, e) for e in extra_brokers(d))):
        write_atomic(folder / "crl.pem", crl.public_bytes(Encoding.PEM))
    if pub.revoked != d.root / "revoked.json":
        write_atomic(pub.revoked, json.dumps(revoked, indent=2))


# ------------------------------------------------------------------------------------------ the broker's users
def _service_clients(d: District) -> list[broker_files.BrokerClient]:
    users = d.root / "service" / "broker-users.json"
    names = json.loads(users.read_text()) if users.exists() else {}
    return [broker_files.BrokerClient(u, broker_files.ROLE_DISTRICT, f"district service ({f})")
            for u, f in names.items()]


def _admin_client(d: District) -> broker_files.BrokerClient:
    user = f"serialNumber={ADMIN_SUBJECT_SERIAL},CN={admin_user(d.settings()['district_id'])}"
    return broker_files.BrokerClient(user, broker_files.ROLE_ADMIN, "tpskit provision (short-lived certificates)")


def _kit_client(kit_id: str, entry: dict) -> broker_files.BrokerClient:
    user = entry.get("mqtt_user") or f"serialNumber={int(entry['serial']):x},CN={kit_id}"
    return broker_files.BrokerClient(user, broker_files.tps_role(entry["tps"]), f"kit {kit_id}, TPS {entry['tps']}")


def _desired_clients(d: District) -> list[broker_files.BrokerClient]:
    revoked = d.revoked()
    kits = [_kit_client(k, v) for k, v in d.issued().items() if k not in revoked]
    return [*_service_clients(d), _admin_client(d), *kits]


def _write_dynsec_file(d: District, path: Path | None = None) -> None:
    """The plugin's file from kits.json, revoked.json and the service identities (broker stopped); `path`:
    another broker's copy (broker-add) instead of the first broker's."""
    cfg = broker_files.dynsec_config(_desired_clients(d), d.tps())
    path = path or d.published.dynsec
    write_atomic(path, json.dumps(cfg, indent=2), mode=0o640)
    if d.installed:  # the plugin rewrites it, as the broker's user
        set_owner(path, 0o600, d.owner, user=d.owner.broker_user)


# ------------------------------------------------------------------------------------------ more brokers
def extra_brokers(d: District) -> list[tuple[str, int]]:
    """The district's brokers after the first (broker-add), in the order kits try them."""
    return [parse_endpoint(e) for e in d.settings().get("failover", [])]


def extra_broker_dir(d: District, endpoint: tuple[str, int]) -> Path:
    """Where broker-add keeps another broker's files, in the CA's workspace (to install on its machine)."""
    return d.root / "brokers" / f"{endpoint[0]}-{endpoint[1]}"


def broker_add(root: Path, host: str, port: int = 8883) -> Path:
    """Another broker for the district: mosquitto brokers are not clustered, so it is an independent
    broker with the same CA and the same users; kits fail over to it and every service instance
    subscribes to it (docs/failover.md). Writes its files to install on its machine (a server certificate
    for `host`, the CA, the CRL, mosquitto.conf, the dynamic security file with every current user) and
    records it: kit settings issued from now on list it, district.toml's [broker] failover names it, and
    sign-csr, revoke and broker-sync apply every change to it too. Returns the folder of its files."""
    d = open_district(root)
    s = d.settings()
    endpoint = (host, port)
    if not 1 <= port <= 65535:
        raise ProvisioningError(f"broker port {port} is not a TCP port")
    if endpoint == (s["broker_host"], int(s["broker_port"])) or endpoint in extra_brokers(d):
        raise ProvisioningError(f"{host}:{port} is one of this district's brokers already")
    folder = extra_broker_dir(d, endpoint)
    ca, ca_key = load_cert(d.ca_cert_path), load_key(d.ca_key_path)
    check_ca_usable(ca)
    server_key = create_key(folder / "server.key")
    write_atomic(folder / "server.pem", cert_pem(issue_server_cert(ca_key, ca, server_key, host)))
    write_atomic(folder / "ca.pem", cert_pem(ca))
    (folder / "data").mkdir(parents=True, exist_ok=True)
    if d.installed:  # installed on its own machine where the first broker's files are on this one
        conf = broker_files.mosquitto_conf(BROKER, port=port, bind="0.0.0.0", run_as=s.get("run_as"),
                                           data_dir=BROKER_STATE, dynsec_file=BROKER_STATE / "dynamic-security.json")
    else:
        conf = broker_files.mosquitto_conf(folder, port=port, bind=s.get("bind") or "0.0.0.0", run_as=s.get("run_as"),
                                           data_dir=folder / "data", dynsec_file=folder / "dynamic-security.json")
    write_atomic(folder / "mosquitto.conf", conf)
    s["failover"] = [*s.get("failover", []), f"{host}:{port}"]
    write_atomic(d.root / "settings.json", json.dumps(s, indent=2))
    _refresh_broker_lists(d)
    _write_dynsec_file(d, folder / "dynamic-security.json")
    _set_failover(d.published.config, s["failover"])
    return folder


def _set_failover(config: Path, failover: list[str]) -> None:
    """Write `failover = [...]` into the [broker] table of a generated district.toml or kit.toml."""
    text = config.read_text()
    line = "failover = [" + ", ".join(f'"{e}"' for e in failover) + "]"
    head, sep, rest = text.partition("\n[broker]\n")
    if not sep:
        raise ProvisioningError(f"{config} has no [broker] table; add {line} to it by hand")
    table, nxt, after = rest.partition("\n[")
    kept = [x for x in table.split("\n") if not x.startswith("failover =")]
    write_atomic(config, head + sep + "\n".join([line, *kept]) + nxt + after)


def _broker_admin(d: District, endpoint: tuple[str, int] | None = None) -> broker_files.BrokerAdmin:
    """A connection to this district's broker as the provisioning user, with a certificate the CA issues
    for 15 minutes (its key never touches the disk but for the TLS library's temporary file)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    s = d.settings()
    ca = load_cert(d.ca_cert_path)
    key = Ed25519PrivateKey.generate()
    cert = issue_role_cert(load_key(d.ca_key_path), ca, key.public_key(), admin_user(s["district_id"]),
                           "provisioning", minutes=15, subject_serial=ADMIN_SUBJECT_SERIAL)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if endpoint is None:
        host = s.get("bind") if s.get("bind") not in (None, "", "0.0.0.0", "::") else "127.0.0.1"
        endpoint = (host, int(s["broker_port"]))
    return broker_files.BrokerAdmin(endpoint[0], endpoint[1], d.ca_cert_path, cert_pem(cert), pem)


def _apply_to_broker(d: District, commands: list[dict], ignore: tuple[str, ...]) -> str:
    """Apply a change to the running broker (no reload), or to the plugin's file when it is stopped; then
    to the district's other brokers (broker-add). Returns what happened, for the technician."""
    admin = _broker_admin(d)
    try:
        if not admin.reachable():
            _write_dynsec_file(d)
            said = "the broker is not running: it will read the change when it starts"
        else:
            admin.run(commands, ignore=ignore)
            said = "the running broker applied the change (no reload needed)"
    except broker_files.BrokerError as e:
        raise ProvisioningError(f"{e}. The district's files are updated; once the broker runs, apply them with "
                                f"`tpskit provision broker-sync --dir {d.root}`") from e
    for endpoint in extra_brokers(d):
        where = f"{endpoint[0]}:{endpoint[1]}"
        _write_dynsec_file(d, extra_broker_dir(d, endpoint) / "dynamic-security.json")  # for a reinstall
        admin = _broker_admin(d, endpoint)
        try:
            if not admin.reachable():
                said += (f"; the broker at {where} is not reachable: run `tpskit provision broker-sync --dir "
                         f"{d.root}` once it is (until then a revoked kit may still publish there)")
                continue
            admin.run(commands, ignore=ignore)
        except broker_files.BrokerError as e:
            raise ProvisioningError(f"the broker at {where}: {e}. Once it runs, apply the change with "
                                    f"`tpskit provision broker-sync --dir {d.root}`") from e
        said += f"; the broker at {where} too"
    return said


def broker_sync(root: Path) -> str:
    """Make the running broker (or its file, when stopped) match kits.json, revoked.json and the service
    identities: every current client created, every revoked certificate's client deleted."""
    d = open_district(root)
    commands = [{"command": "createRole", "rolename": broker_files.tps_role(t), "acls": broker_files.kit_role_acls(t)}
                for t in d.tps()]
    commands += [c for client in _desired_clients(d) for c in broker_files.create_commands(client)]
    issued = d.issued()
    for name, entry in d.revoked().items():
        kit = name.split("@")[0]
        commands.append({"command": "deleteClient", "username": _kit_client(kit, entry).username})
        if name in issued:
            commands.append({"command": "deleteClient", "username": _kit_client(kit, issued[name]).username})
    return _apply_to_broker(d, commands, broker_files.ALREADY + broker_files.GONE)


def service_shares(root: Path, processes: int) -> list[Path]:
    """Issue one service certificate per process for `[ingest] processes = N` (N > 1) and tell the broker."""
    if not 2 <= processes <= 32:
        raise ProvisioningError(f"{processes} processes: give 2 to 32 (one process needs no extra identity)")
    d = open_district(root)
    s = d.settings()
    ca, ca_key = load_cert(d.ca_cert_path), load_key(d.ca_key_path)
    check_ca_usable(ca)
    users_path = d.root / "service" / "broker-users.json"
    users = json.loads(users_path.read_text()) if users_path.exists() else {}
    made, commands = [], []
    pub = d.published
    for i in range(processes):
        cert_path, key_path = share_identity(pub.service_cert, pub.service_key, i, processes)
        if cert_path.exists():
            continue
        key = create_key(key_path)
        if d.installed:  # the service's user owns its keys
            set_owner(key_path, 0o600, d.owner, user=d.owner.service_user)
        cert = issue_role_cert(ca_key, ca, key.public_key(), f"{service_user(s['district_id'])}-{i + 1}of{processes}",
                               ROLE_DISTRICT)
        write_atomic(cert_path, cert_pem(cert))
        users[mqtt_username(cert)] = cert_path.name
        commands += broker_files.create_commands(broker_files.BrokerClient(
            mqtt_username(cert), broker_files.ROLE_DISTRICT, f"district service ({cert_path.name})"))
        made.append(cert_path)
    write_atomic(users_path, json.dumps(users, indent=2))
    _apply_to_broker(d, commands, broker_files.ALREADY)
    return made


def service_instance(root: Path, name: str) -> tuple[Path, Path]:
    """Issue the identity of another district service instance (a second machine ingesting into the same
    database; docs/failover.md): its own certificate and key next to the first one's, `<name>` in their
    file names and CN, and tell the broker. Returns (certificate, key); refuses a name already issued."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,30}", name):
        raise ProvisioningError(f"{name!r}: an instance name is lower-case letters, digits and '-' (e.g. 'b')")
    d = open_district(root)
    s = d.settings()
    ca, ca_key = load_cert(d.ca_cert_path), load_key(d.ca_key_path)
    check_ca_usable(ca)
    pub = d.published
    cert_path = pub.service_cert.with_name(f"{pub.service_cert.stem}-{name}{pub.service_cert.suffix}")
    key_path = pub.service_key.with_name(f"{pub.service_key.stem}-{name}{pub.service_key.suffix}")
    if cert_path.exists() or key_path.exists():
        raise ProvisioningError(f"{cert_path} exists: instance {name!r} was issued already")
    key = create_key(key_path)
    if d.installed:  # the service's user owns its keys
        set_owner(key_path, 0o600, d.owner, user=d.owner.service_user)
    cert = issue_role_cert(ca_key, ca, key.public_key(), f"{service_user(s['district_id'])}-{name}", ROLE_DISTRICT)
    write_atomic(cert_path, cert_pem(cert))
    users_path = d.root / "service" / "broker-users.json"
    users = json.loads(users_path.read_text()) if users_path.exists() else {}
    users[mqtt_username(cert)] = cert_path.name
    write_atomic(users_path, json.dumps(users, indent=2))
    _apply_to_broker(d, broker_files.create_commands(broker_files.BrokerClient(
        mqtt_username(cert), broker_files.ROLE_DISTRICT, f"district service ({cert_path.name})")),
        broker_files.ALREADY)
    return cert_path, key_path


@dataclass(frozen=True)
class IssuedKit:
    kit_id: str
    tps: str
    folder: Path  # holds kit.pem, ca.pem, kit.toml for the kit
    broker: str = ""  # what the broker did with the change, for the technician


@dataclass(frozen=True)
class _Request:
    """A kit's CSR, checked: its file, public key and identity."""

    path: Path
    key: Ed25519PublicKey
    kit_id: str
    tps: str


def _check_csr(d: District, csr_path: Path, tps_list: Mapping[str, TpsInfo], revoked: Mapping[str, Any]) -> _Request:
    try:
        csr = x509.load_pem_x509_csr(Path(csr_path).read_bytes())
    except OSError as e:
        raise ProvisioningError(f"cannot read the CSR {csr_path}: {e.strerror}") from e
    except ValueError as e:
        raise ProvisioningError(f"{csr_path} is not a PEM certificate request (made by `tpskit kit keygen`)") from e
    if not csr.is_signature_valid:
        raise ProvisioningError(f"{csr_path}: the request's signature is invalid (corrupted or altered)")
    pub = csr.public_key()
    if not isinstance(pub, Ed25519PublicKey):
        raise ProvisioningError(f"{csr_path}: the kit key must be Ed25519 (made by `tpskit kit keygen`)")
    try:
        ident = identity_of(csr)
    except ValueError as e:
        raise ProvisioningError(f"{csr_path}: the request's name or extensions do not parse ({e})") from e
    check_kit_id(ident.common_name)
    if ident.common_name.startswith("district"):
        raise ProvisioningError(f"{csr_path}: kit id {ident.common_name!r} may not start with 'district' (reserved)")
    if ident.role != ROLE_KIT or ident.tps is None:
        raise ProvisioningError(f"{csr_path}: the request does not name exactly one TPS and the kit role")
    check_tps(ident.tps)
    if ident.tps not in tps_list:
        raise ProvisioningError(f"{csr_path}: TPS {ident.tps} in the request is not in this district's TPS list "
                                f"({len(tps_list)} TPS in {d.root / 'tps.csv'}); check the code on the kit")
    if ident.common_name in revoked:
        raise ProvisioningError(f"{csr_path}: kit {ident.common_name} was revoked; give the replacement kit a new id")
    return _Request(Path(csr_path), pub, ident.common_name, ident.tps)


def sign_csr(root: Path, csr_path: Path, *, out_dir: Path | None = None, kit_paths: str = "system",
             replace: bool = False) -> IssuedKit:
    """Issue a kit certificate from its CSR, and the kit's settings file.

    `kit_paths="system"` writes /etc/tpskit and /var/lib/tpskit paths into kit.toml (a real kit);
    `"relative"` writes paths next to kit.toml (bench rigs, tests, the demo).
    """
    return sign_csrs(root, [csr_path], out_dir=out_dir, kit_paths=kit_paths, replace=replace)[0]


def sign_csrs(root: Path, csr_paths: Sequence[Path], *, out_dir: Path | None = None, kit_paths: str = "system",
              replace: bool = False) -> list[IssuedKit]:
    """`sign_csr` for many kits at once: every request is checked before any certificate is issued (one bad
    request issues nothing), then the district's lists, the CRL and the broker's users are written once for
    the whole batch. One at a time, each kit rewrote them all with every kit issued so far: provisioning a
    district's thousand kits took the better part of an hour."""
    if out_dir is not None and len(csr_paths) != 1:
        raise ProvisioningError("--out names one kit's folder: give it one CSR (without it, each kit's files go "
                                "to the workspace's kits/KIT-ID)")
    d = open_district(root)
    tps_list, revoked, issued = d.tps(), d.revoked(), d.issued()
    requests = [_check_csr(d, p, tps_list, revoked) for p in csr_paths]
    seen: dict[str, Path] = {}
    for r in requests:
        if r.kit_id in seen:
            raise ProvisioningError(f"{r.path} and {seen[r.kit_id]} both ask for kit id {r.kit_id}: give each kit "
                                    "its own id")
        seen[r.kit_id] = r.path
        previous = issued.get(r.kit_id)
        if previous is not None and not replace:
            raise ProvisioningError(f"kit {r.kit_id} already has a certificate (serial {previous['serial']}); "
                                    "pass --replace to issue a new one")
    ca = load_cert(d.ca_cert_path)
    check_ca_usable(ca)
    ca_key = load_key(d.ca_key_path)
    s = d.settings()
    if kit_paths == "relative":
        identity = {"key": "kit.key", "certificate": "kit.pem", "ca": "ca.pem"}
        data_dir = "data"
    else:
        identity = {"key": "/var/lib/tpskit/kit.key", "certificate": "/etc/tpskit/kit.pem", "ca": "/etc/tpskit/ca.pem"}
        data_dir = "/var/lib/tpskit"
    done: list[IssuedKit] = []
    commands: list[dict] = []
    replaced = False
    for r in requests:
        cert = issue_role_cert(ca_key, ca, r.key, r.kit_id, ROLE_KIT, r.tps)
        folder = Path(out_dir) if out_dir else d.root / "kits" / r.kit_id
        write_atomic(folder / "kit.pem", cert_pem(cert))
        write_atomic(folder / "ca.pem", cert_pem(ca))
        write_atomic(folder / "kit.toml", toml_dumps({
            "kit": {"id": r.kit_id, "tps": r.tps, "registered_voters": tps_list[r.tps].registered_voters,
                    "data_dir": data_dir},
            "identity": identity,
            "broker": {"host": s["broker_host"], "port": s["broker_port"], "failover": s.get("failover") or None},
        }, header=f"# Kit settings issued by district {s['district_id']} on {utcnow():%Y-%m-%d}.\n"
                  "# Check them with: tpskit kit check-config --config kit.toml"))
        previous = issued.get(r.kit_id)
        issued[r.kit_id] = {"tps": r.tps, "serial": str(cert.serial_number), "mqtt_user": mqtt_username(cert),
                            "fingerprint": fingerprint(cert), "issued_at": utcnow().isoformat()}
        commands += broker_files.create_commands(_kit_client(r.kit_id, issued[r.kit_id]), r.tps)
        if previous is not None:
            # The replaced certificate must stop working too (a lost or stolen kit key is the usual reason to
            # replace): revoke its serial. The key "<kit>@<serial>" can never be a kit id ('@' is not allowed
            # in one), so the kit itself, under its new certificate, is not revoked by name. Its broker user
            # goes at once: disconnected, powerless.
            revoked[f"{r.kit_id}@{previous['serial']}"] = {
                "serial": previous["serial"], "tps": previous["tps"], "reason": "superseded",
                "revoked_at": utcnow().isoformat(), "mqtt_user": _kit_client(r.kit_id, previous).username}
            commands.append({"command": "deleteClient", "username": _kit_client(r.kit_id, previous).username})
            replaced = True
        done.append(IssuedKit(r.kit_id, r.tps, folder))
    write_atomic(d.root / "kits.json", json.dumps(issued, indent=2))
    if replaced:
        write_atomic(d.root / "revoked.json", json.dumps(revoked, indent=2))
    _refresh_broker_lists(d)
    broker = _apply_to_broker(d, commands, broker_files.ALREADY + broker_files.GONE)
    return [replace_field(k, broker=broker) for k in done]


def revoke(root: Path, kit_id: str, reason: str = "unspecified") -> dict:
    d = open_district(root)
    issued = d.issued()
    if kit_id not in issued:
        raise ProvisioningError(f"no certificate was issued to {kit_id!r} by this district "
                                f"(known kits: {', '.join(sorted(issued)) or 'none'})")
    revoked = d.revoked()
    user = _kit_client(kit_id, issued[kit_id]).username
    entry = {"serial": issued[kit_id]["serial"], "tps": issued[kit_id]["tps"], "reason": reason,
             "revoked_at": utcnow().isoformat(), "mqtt_user": user}
    revoked[kit_id] = entry
    write_atomic(d.root / "revoked.json", json.dumps(revoked, indent=2))
    _refresh_broker_lists(d)
    # Deleting its broker user disconnects the kit at once and leaves it no topic (no reload).
    entry = {**entry, "broker": _apply_to_broker(d, [{"command": "deleteClient", "username": user}],
                                                 broker_files.GONE)}
    return entry


def bench_kit(root: Path, kit_id: str, tps: str, kit_dir: Path) -> IssuedKit:
    """Test rigs only: keygen + sign-csr in one step, through the same CSR path, into one folder."""
    _, csr = keygen(kit_dir, kit_id, tps)
    return sign_csr(root, csr, out_dir=kit_dir, kit_paths="relative")


def current_user() -> str:
    return getpass.getuser()
