"""The systemd units pass `systemd-analyze verify` and keep the least-privilege settings the kit relies on.

verify refuses units whose ExecStart binaries are missing, so the units are copied into a temporary folder
with /opt/tpskit/.venv/bin/* replaced by a stub executable; everything else is verified as written. verify
returns 0 even for an unknown or unparsable directive (it only warns), so the tests also require silence.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[1] / "systemd"
UNITS = ("tpskit-kit.service", "tpskit-kit-fault.service", "tpskit-kiosk.service", "tpskit-district.service",
         "tpskit-national-worker@.service")
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"


def _stage(tmp_path: Path, edit: dict[str, tuple[str, str]] | None = None) -> Path:
    stub = tmp_path / "bin" / "stub"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    for name in UNITS:
        text = (SYSTEMD_DIR / name).read_text()
        text = text.replace("/opt/tpskit/.venv/bin/tpskit", str(stub))
        text = text.replace("/opt/tpskit/.venv/bin/python", str(stub))
        text = text.replace("/usr/bin/cage", str(stub))  # the kiosk's compositor (apt install cage on the kit)
        if edit and name in edit:
            text = text.replace(*edit[name])
        (tmp_path / name).write_text(text)
    # The broker drop-in, on a stand-in for Debian's mosquitto.service.
    (tmp_path / "mosquitto.service").write_text(
        f"[Unit]\nDescription=stand-in for Debian's mosquitto.service\n"
        f"[Service]\nType=notify\nNotifyAccess=main\nExecStart={stub}\n"
    )
    (tmp_path / "mosquitto.service.d").mkdir()
    shutil.copy(SYSTEMD_DIR / "tpskit-district-broker.conf", tmp_path / "mosquitto.service.d" / "tpskit.conf")
    return tmp_path


def _verify(folder: Path) -> subprocess.CompletedProcess[str]:
    units = [str(folder / n) for n in (*UNITS, "mosquitto.service")]
    return subprocess.run([ANALYZE, "verify", "--man=no", "--recursive-errors=no", *units],
                          capture_output=True, text=True, timeout=60, cwd=folder)


def _directives(name: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in (SYSTEMD_DIR / name).read_text().replace("\\\n", " ").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, value = line.split("=", 1)
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_units_pass_systemd_analyze_verify_without_a_single_warning(tmp_path: Path) -> None:
    result = _verify(_stage(tmp_path))
    assert result.returncode == 0, result.stderr
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if any(n in line for n in (*UNITS, "tpskit.conf"))]
    assert ours == []


def test_verify_catches_a_mistyped_directive_so_the_check_above_means_something(tmp_path: Path) -> None:
    folder = _stage(tmp_path, {"tpskit-kit.service": ("ProtectSystem=strict", "ProtectSystem=strcit")})
    result = _verify(folder)
    assert "tpskit-kit.service" in result.stderr and "strcit" in result.stderr


@pytest.mark.parametrize("name", ["tpskit-kit.service", "tpskit-district.service"])
def test_daemon_units_are_notify_with_a_watchdog_restart_and_least_privilege(name: str) -> None:
    d = _directives(name)
    expect = {
        "Type": "notify", "NotifyAccess": "main", "Restart": "always", "User": "tpskit",
        "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes", "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/tpskit", "StateDirectory": "tpskit", "CapabilityBoundingSet": "",
    }
    for key, value in expect.items():
        assert d.get(key) == [value], f"{name}: {key}"
    assert d["WatchdogSec"] and d["StartLimitBurst"] and d["StartLimitIntervalSec"]
    role = name.removeprefix("tpskit-").removesuffix(".service")
    assert d["ExecStartPre"] == [f"/opt/tpskit/.venv/bin/tpskit {role} check-config --config "
                                 f"/etc/tpskit/{role}.toml"]


def test_kit_unit_reaches_only_camera_and_gpio_devices() -> None:
    d = _directives("tpskit-kit.service")
    assert d["DevicePolicy"] == ["closed"]
    allowed = {v.split()[0] for v in d["DeviceAllow"]}
    assert allowed == {"char-video4linux", "char-media", "char-dma_heap", "char-vchiq", "char-gpiochip",
                       "char-*gpiomem*"}
    assert d["SupplementaryGroups"] == ["video gpio"]
    assert d["OnFailure"] == ["tpskit-kit-fault.service"]


def test_national_worker_unit_checks_its_config_restarts_and_keeps_least_privilege() -> None:
    d = _directives("tpskit-national-worker@.service")
    assert d["Restart"] == ["always"]
    assert d["ExecStartPre"] == ["/opt/tpskit/.venv/bin/tpskit national check-config --config "
                                 "/etc/tpskit/national.toml"]
    assert d["ExecStart"] == ["/opt/tpskit/.venv/bin/tpskit national work --config /etc/tpskit/national.toml"]
    assert d["User"] == ["tpskit"] and d["NoNewPrivileges"] == ["yes"] and d["ProtectSystem"] == ["strict"]
    assert d["CapabilityBoundingSet"] == [""] and "ReadWritePaths" not in d


def test_kiosk_shows_the_kit_page_at_its_default_address_as_its_own_user_after_the_kit() -> None:
    from tpskit.edge.config import ScreenSection

    d = _directives("tpskit-kiosk.service")
    screen = ScreenSection()
    [start] = d["ExecStart"]
    argv = start.split()
    assert argv[0] == "/usr/bin/cage" and "/usr/bin/chromium" in argv and "--kiosk" in argv
    assert argv[-1] == f"http://{screen.host}:{screen.port}/"  # what the daemon serves by default
    assert not [a for a in argv if a.startswith("http") and a != argv[-1]]  # nothing else is opened
    assert d["User"] == ["tpskit-kiosk"] and d["User"] != ["tpskit"]  # no access to the kit's key or outbox
    assert "tpskit-kit.service" in d["After"][0].split() and d["Wants"][0] == "tpskit-kit.service"
    assert d["IPAddressDeny"] == ["any"] and d["IPAddressAllow"] == ["localhost"]
    assert d["TTYPath"] == ["/dev/tty1"] and d["Conflicts"] == ["getty@tty1.service"]
