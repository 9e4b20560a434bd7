"""The README's district install, followed line by line into a temporary root, then mosquitto and the
district service started from exactly the files it produced, as their own non-root users.

The temporary root: a private mount namespace (as root) whose /etc, /var, /run and /opt are overlays with
their upper layers in a temporary folder, so every file the steps write (useradd's /etc/passwd included)
lands there and the machine's own files are never changed. The clone and its .venv stand in for
`git clone` and `pip install` (bound at /opt/tpskit); the Debian packages must already be installed
(`make system-deps`). `systemctl` is played by the test from the installed unit files: Debian's
mosquitto.service with our drop-in (its ExecStart as root; mosquitto drops to its user), and
tpskit-district.service (ExecStartPre and ExecStart as `User=` through setpriv, its Environment,
WorkingDirectory and StateDirectory, READY and WATCHDOG read from $NOTIFY_SOCKET). The sandboxing
directives (ProtectSystem= and the like) are systemd's and are checked by test_systemd_units.py instead.
The machine's Python lives under a folder closed to other users (/root here): the namespace opens just
that folder's search bit (an overlay again), as a system Python in /usr would be open.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import tomllib
import uuid
from pathlib import Path

import pytest
from conftest import fake_jpeg, reading_of

from tpskit.localhost import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TPS = "3201012001001"
DEBIAN_MOSQUITTO = Path("/lib/systemd/system/mosquitto.service")  # installed with Debian's mosquitto package
# What an overlay namespace needs; stated once so that the test's own helper is small.
SETUP = r"""
set -e
R=$1; P=$2; shift 2
for d in etc var run opt; do
  mkdir -p "$R/$d" "$R/.overlay/$d"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$R/$d,workdir=$R/.overlay/$d" "/$d"
done
mkdir -p /opt/tpskit
mount --bind "$P" /opt/tpskit
i=0
for closed in "$@"; do  # folders other users may not search: open them, in this namespace only
  i=$((i + 1)); mkdir -p "$R/.open/$i/up" "$R/.open/$i/work"
  mount -t overlay overlay -o "lowerdir=$closed,upperdir=$R/.open/$i/up,workdir=$R/.open/$i/work" "$closed"
  chmod o+x "$closed"
done
echo ready
exec sleep infinity
"""

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs as root (owners, users, mount namespaces); CI runs "
                                                 "as root"),
]


def readme_block(marker: str) -> list[str]:
    m = re.search(rf"<!-- {marker}:.*?-->\n```sh\n(.*?)```", README.read_text(), re.S)
    assert m, f"README.md has no {marker} block"
    return [line for line in m.group(1).splitlines() if line.strip()]


def _closed_folders(*paths: Path) -> list[str]:
    """Folders on the way to `paths` that other users may not search (mode without o+x), outermost first."""
    out: list[str] = []
    for p in paths:
        for a in reversed(Path(p).resolve().parents):
            if a != Path("/") and not os.stat(a).st_mode & stat.S_IXOTH and str(a) not in out:
                out.append(str(a))
    return out


class Notify:
    """systemd's end of $NOTIFY_SOCKET (abstract, so any user can reach it): collects what a service says."""

    def __init__(self, name: str) -> None:
        self.address = f"@tpskit-install-{uuid.uuid4().hex[:12]}-{name}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.settimeout(0.2)
        self.messages: list[str] = []
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def said(self, field: str) -> bool:
        return any(field in m.splitlines() for m in list(self.messages))

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close()


class InstallRoot:
    """The namespace: a holder process keeps it; commands enter it with nsenter."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root.parent / "namespace.log"
        closed = _closed_folders(Path(sys.executable), ROOT, ROOT / ".venv")
        assert not any(str(root).startswith(c + "/") for c in closed), "the temporary root sits in a closed folder"
        out = open(self.log, "w")  # noqa: SIM115 - the holder keeps it
        self.holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", SETUP, "sh",
                                        str(root), str(ROOT), *closed], stdout=out, stderr=out)
        wait_for(lambda: self._ready(), 20, "the install namespace")
        self.procs: list[subprocess.Popen[bytes]] = []

    def _ready(self) -> bool:
        if self.holder.poll() is not None:
            raise AssertionError(f"namespace setup failed: {self.log.read_text()}")
        return "ready" in self.log.read_text()

    def argv(self, argv: list[str], user: str | None = None, cwd: Path | str | None = None) -> list[str]:
        enter = ["nsenter", "-t", str(self.holder.pid), "-m", "--"]
        if user is not None:
            enter += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--no-new-privs",
                      "--inh-caps=-all", "--bounding-set=-all", "--"]
        return [*enter, "env", "-C", str(cwd or "/"), "--", *argv]  # the folder as seen inside, by the user

    def run(self, argv: list[str], *, user: str | None = None, cwd: Path | str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(argv, user, cwd), capture_output=True, text=True, timeout=120,
                              env=env or _base_env())
        assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def start(self, argv: list[str], log: Path, *, user: str | None = None, cwd: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log, "ab") as out:
            p = subprocess.Popen(self.argv(argv, user, cwd), stdout=out, stderr=out, env=env or _base_env())
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        self.holder.kill()
        self.holder.wait(5)


def _base_env() -> dict[str, str]:
    """What systemd gives a service: a plain PATH and locale, nothing of the test's environment."""
    return {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def unit(path: Path, dropins: list[Path] = ()) -> dict[str, list[str]]:  # type: ignore[assignment]
    """[Service] and [Unit] directives of a unit file and its drop-ins; an empty value resets a list."""
    out: dict[str, list[str]] = {}
    for p in [path, *dropins]:
        for line in p.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith(("#", ";", "[")) or "=" not in line:
                continue
            key, value = (x.strip() for x in line.split("=", 1))
            if value == "":
                out[key] = []
            else:
                out.setdefault(key, []).append(value)
    return out


def _uid(root: Path, user: str) -> int:
    for line in (root / "etc" / "passwd").read_text().splitlines():
        name, _, uid, *_ = line.split(":")
        if name == user:
            return int(uid)
    raise AssertionError(f"no user {user} in the installed /etc/passwd")


def _gid(root: Path, group: str) -> int:
    for line in (root / "etc" / "group").read_text().splitlines():
        name, _, gid, *_ = line.split(":")
        if name == group:
            return int(gid)
    raise AssertionError(f"no group {group} in the installed /etc/group")


def _process_uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(pid)


def _owner_mode(p: Path) -> tuple[int, int, int]:
    st = p.lstat()
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


def test_readme_district_install_runs_broker_and_service_as_their_users_and_accepts_a_kit(tmp_path):
    from tpskit.edge.config import load_kit_config
    from tpskit.edge.deliver import Delivery
    from tpskit.edge.submit import sign_and_queue

    root, work, kit_dir = tmp_path / "root", tmp_path / "work", tmp_path / "kit"
    for d in (root, work, kit_dir):
        d.mkdir()
    (work / "tps.csv").write_text(f"tps,registered_voters,village,kecamatan,regency\n{TPS},250,Desa,Kec,Kab\n"
                                  f"{TPS[:-1]}2,260,Desa,Kec,Kab\n")
    port = free_port()
    ns = InstallRoot(root)
    notify = {name: Notify(name) for name in ("broker", "district")}
    broker: subprocess.Popen[bytes] | None = None
    service: subprocess.Popen[bytes] | None = None

    def systemctl(args: list[str]) -> None:
        nonlocal broker, service
        etc_units = root / "etc" / "systemd" / "system"
        if args == ["daemon-reload"]:
            return
        if args == ["restart", "mosquitto"]:
            u = unit(DEBIAN_MOSQUITTO, sorted((etc_units / "mosquitto.service.d").glob("*.conf")))
            for pre in u.get("ExecStartPre", []):
                ns.run(shlex.split(pre))
            [start] = u["ExecStart"]
            broker = ns.start(shlex.split(start), tmp_path / "mosquitto.log",
                              env={**_base_env(), "NOTIFY_SOCKET": notify["broker"].address})
            wait_for(lambda: notify["broker"].said("READY=1") or broker.poll() is not None, 20, "mosquitto READY=1")
            assert broker.poll() is None, (tmp_path / "mosquitto.log").read_text()
            return
        if args == ["enable", "--now", "tpskit-district"]:
            u = unit(etc_units / "tpskit-district.service")
            [user], [group] = u["User"], u["Group"]
            assert user == group == "tpskit"
            state = root / "var" / "lib" / u["StateDirectory"][0]
            # systemd would chown a StateDirectory that is not the user's, recursively: it must already be
            assert state.is_dir() and state.stat().st_uid == _uid(root, user)
            env = {**_base_env(), **dict(e.split("=", 1) for e in u.get("Environment", [])),
                   "HOME": f"/var/lib/{u['StateDirectory'][0]}", "USER": user,
                   "NOTIFY_SOCKET": notify["district"].address,
                   "WATCHDOG_USEC": "2000000"}  # systemd passes WatchdogSec (60 s); 2 s here to see it fed
            [cwd] = u["WorkingDirectory"]
            for pre in u["ExecStartPre"]:
                ns.run(shlex.split(pre), user=user, cwd=cwd, env=env)
            [start] = u["ExecStart"]
            service = ns.start(shlex.split(start), tmp_path / "district.log", user=user, cwd=cwd, env=env)
            wait_for(lambda: notify["district"].said("READY=1") or service.poll() is not None, 60,
                     "the district service's READY=1")
            assert service.poll() is None, (tmp_path / "district.log").read_text()
            return
        raise AssertionError(f"the README asks for `systemctl {shlex.join(args)}`, which this test cannot play")

    def follow(line: str, cwd: Path) -> None:
        """One README line, as written: run in the namespace, or played where the test stands in."""
        assert line.startswith("sudo "), f"README install lines run as root: {line}"
        for part in line[len("sudo "):].split(" && "):
            argv = shlex.split(part.replace("sudo ", ""))
            if argv[0] == "apt-get":
                assert argv[1] == "install" and "mosquitto" in argv
                assert Path("/usr/sbin/mosquitto").exists(), "make system-deps installs mosquitto"
            elif argv[0] == "git":
                assert argv[1] == "clone" and argv[-1] == "/opt/tpskit"  # the clone is bound there
            elif argv[:3] == ["python3", "-m", "venv"]:
                assert argv[-1] == "/opt/tpskit/.venv" and (ROOT / ".venv" / "bin" / "tpskit").exists()
            elif argv[0] == "/opt/tpskit/.venv/bin/pip":
                assert argv[1:] == ["install", "/opt/tpskit"]
            elif argv[0] == "systemctl":
                systemctl(argv[1:])
            elif argv[0] == "/opt/tpskit/.venv/bin/tpskit" and argv[1:3] == ["provision", "district-init"]:
                # the only change: this machine's loopback and a free port instead of the public name and 8883
                argv[argv.index("--broker-host") + 1] = "127.0.0.1"
                argv[argv.index("--broker-port") + 1] = str(port)
                ns.run([*argv, "--bind", "127.0.0.1"], cwd=cwd)
            elif argv[0] in ("useradd", "install", "/opt/tpskit/.venv/bin/tpskit"):
                ns.run(argv, cwd=cwd)
            else:
                raise AssertionError(f"README step this test does not know: {part}")

    try:
        for line in readme_block("install-district"):
            follow(line, work)
        tpskit_uid, mosquitto_uid = _uid(root, "tpskit"), _uid(root, "mosquitto")
        tpskit_gid, mosquitto_gid = _gid(root, "tpskit"), _gid(root, "mosquitto")

        # The layout, owners and modes (provisioning/layout.py).
        etc, broker_dir = root / "etc/tpskit", root / "etc/mosquitto/tpskit"
        assert _owner_mode(etc) == (0, tpskit_gid, 0o750)
        assert _owner_mode(etc / "district.key")[::2] == (tpskit_uid, 0o600)
        assert _owner_mode(etc / "district.toml") == (0, tpskit_gid, 0o640)
        assert _owner_mode(broker_dir) == (0, mosquitto_gid, 0o750)
        assert _owner_mode(broker_dir / "server.key")[::2] == (mosquitto_uid, 0o600)
        assert _owner_mode(root / "var/lib/mosquitto/dynamic-security.json")[::2] == (mosquitto_uid, 0o600)
        assert _owner_mode(root / "var/lib/tpskit-ca")[::2] == (0, 0o700)
        assert _owner_mode(root / "var/lib/tpskit-ca/private/ca.key")[::2] == (0, 0o600)
        assert 'database' in (etc / "district.toml").read_text() and "/var/lib/tpskit/district.sqlite" in \
            (etc / "district.toml").read_text()

        # Both run as their own users, from the installed files.
        assert broker is not None and service is not None
        wait_for(lambda: _process_uid(broker.pid) == mosquitto_uid, 10, "mosquitto dropping to its user")
        assert _process_uid(service.pid) == tpskit_uid
        wait_for(lambda: notify["district"].said("WATCHDOG=1"), 10, "the district service feeding its watchdog")

        # A kit: its key and request as on the kit, then the README's add-kit steps at the district.
        ns.run(["/opt/tpskit/.venv/bin/tpskit", "kit", "keygen", "--kit-id", "kit-install-a", "--tps", TPS,
                "--key", str(kit_dir / "kit.key")])
        assert _owner_mode(kit_dir / "kit.key")[::2] == (tpskit_uid, 0o600)
        for line in readme_block("add-kit"):
            follow(line, kit_dir)
        # the running broker took the kit through its plugin, which rewrote its file as its own user
        assert ",CN=kit-install-a" in (root / "var/lib/mosquitto/dynamic-security.json").read_text()
        assert _owner_mode(root / "var/lib/mosquitto/dynamic-security.json")[0] == mosquitto_uid
        issued = root / "var/lib/tpskit-ca/kits/kit-install-a"
        settings = tomllib.loads((issued / "kit.toml").read_text())
        assert settings["identity"] == {"key": "/var/lib/tpskit/kit.key", "certificate": "/etc/tpskit/kit.pem",
                                        "ca": "/etc/tpskit/ca.pem"}
        os.chown(kit_dir / "kit.key", 0, 0)  # this test is the kit now, outside the namespace
        (kit_dir / "kit.toml").write_text(
            f'[kit]\nid = "kit-install-a"\ntps = "{TPS}"\nregistered_voters = 250\ndata_dir = "data"\n'
            f'[identity]\nkey = "kit.key"\ncertificate = "{issued / "kit.pem"}"\nca = "{issued / "ca.pem"}"\n'
            f'[broker]\nhost = "{settings["broker"]["host"]}"\nport = {settings["broker"]["port"]}\n'
            '[delivery]\nack_timeout_s = 5.0\nretry_initial_s = 0.3\nretry_max_s = 2.0\n')
        cfg = load_kit_config(kit_dir / "kit.toml")
        row = sign_and_queue(cfg, reading_of(TPS), fake_jpeg("install"))
        with Delivery(cfg) as d:
            receipt = d.wait_answered(row.submission_id, 60)
        assert receipt is not None and receipt.ack_status == "accepted", receipt

        # The district's own tally, read as the service's user from the installed configuration.
        db = root / "var/lib/tpskit/district.sqlite"
        assert db.stat().st_uid == tpskit_uid
        out = ns.run(["/opt/tpskit/.venv/bin/tpskit", "district", "tally", "--config", "/etc/tpskit/district.toml"],
                     user="tpskit", cwd="/var/lib/tpskit").stdout
        [t] = json.loads(out)
        regency = next(a for a in t["areas"] if a["level"] == "regency")
        assert (regency["reported"], regency["tps_total"], regency["totals"]["paslon_01"]) == (1, 2, 60)

        # --root: the same files, owners and modes under another prefix (DESTDIR-style).
        other = tmp_path / "other-root"
        ns.run(["/opt/tpskit/.venv/bin/tpskit", "provision", "district-init", "--root", str(other), "--tps-csv",
                "tps.csv", "--district-id", "kab-bogor", "--broker-host", "127.0.0.1", "--broker-port", str(port)],
               cwd=work)
        made = {p.relative_to(other): _owner_mode(p) for p in other.rglob("*")}
        assert made, "--root wrote nothing"
        for rel, owner_mode in made.items():
            assert (root / rel).exists(), f"--root wrote {rel}, which the README's install did not"
            assert _owner_mode(root / rel) == owner_mode, rel
        assert str(other) not in (other / "etc/tpskit/district.toml").read_text()  # named by installed paths
    finally:
        ns.close()
        for n in notify.values():
            n.close()
