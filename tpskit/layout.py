"""Where the district's and the kit's files live once installed: one layout (FHS), written in one place.

    /etc/tpskit/                     0750 root:tpskit    configuration the services read
        district.toml                0640 root:tpskit    the district service configuration
        ca.pem tps.csv revoked.json  0644                CA certificate, TPS list, revocations (republished)
        district.pem                 0644                the service's certificate
        district.key                 0600 tpskit         the service's key (also signs acknowledgements)
        kit.toml kit.pem ca.pem      0640/0644           on a kit: its settings and certificates
    /etc/mosquitto/tpskit/           0750 root:mosquitto the district broker
        mosquitto.conf acl crl.pem ca.pem server.pem     0644
        server.key                   0600 mosquitto
    /var/lib/tpskit/                 0750 tpskit         state: district.sqlite; on a kit kit.key (0600) and the outbox
    /var/lib/tpskit-ca/              0700 root           the CA's workspace: private/ca.key, kits.json,
                                                         revoked.json, kits/<kit-id>/; never the service's
    /var/lib/mosquitto/              mosquitto           the broker's persistence (Debian's)
    /run/tpskit/                     0750 tpskit         runtime: the kit's control socket (systemd makes it)

`root` is a DESTDIR-style prefix: files are written under it, and name each other by their installed
paths (without it). `/` is a real install; a test installs into a temporary folder.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ETC = PurePosixPath("/etc/tpskit")
STATE = PurePosixPath("/var/lib/tpskit")
CA_WORKSPACE = PurePosixPath("/var/lib/tpskit-ca")
BROKER = PurePosixPath("/etc/mosquitto/tpskit")
BROKER_STATE = PurePosixPath("/var/lib/mosquitto")
RUN = PurePosixPath("/run/tpskit")
SERVICE_USER = "tpskit"
BROKER_USER = "mosquitto"


class LayoutError(ValueError):
    """The layout cannot be written as asked (a user that does not exist); the message says what to do."""


@dataclass(frozen=True)
class Owner:
    """Who owns what: applied only when running as root (otherwise files stay the caller's)."""

    service_user: str = SERVICE_USER
    broker_user: str = BROKER_USER

    def ids(self, user: str) -> tuple[int, int]:
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            raise LayoutError(
                f"user {user!r} does not exist; create it first (README, 'Install the district server': "
                f"useradd --system --user-group ... {user})") from None
        return pw.pw_uid, pw.pw_gid

    def check(self) -> None:
        """Refuse early, before anything is written, when a user is missing (as root only)."""
        if os.geteuid() == 0:
            self.ids(self.service_user)
            self.ids(self.broker_user)


def set_owner(path: Path, mode: int, owner: Owner, *, user: str | None = None, group_of: str | None = None) -> None:
    """chmod `path`, and as root chown it: to `user` (its user and group), or to root with the group of
    `group_of` (a directory or file the service may read but not change)."""
    os.chmod(path, mode)
    if os.geteuid() != 0 or (user is None and group_of is None):
        return
    if user is not None:
        uid, gid = owner.ids(user)
    else:
        uid, gid = 0, owner.ids(group_of)[1]  # type: ignore[arg-type]
    os.chown(path, uid, gid)


@dataclass(frozen=True)
class SystemLayout:
    root: Path = Path("/")

    def on_disk(self, installed: PurePosixPath) -> Path:
        """Where an installed path is written: under `root`."""
        return self.root / installed.relative_to("/")
