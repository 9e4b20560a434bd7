"""`tpskit kit check-config`: exit 0 on a ready kit, 1 with the key path and the fix on anything else."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tpskit.cli import main
from tpskit.edge.config import load_kit_config
from tpskit.edge.readiness import BUILD_DATE, startup_problems

TPS, OTHER_TPS = "3201012001001", "3201012001002"


@pytest.fixture
def district(tmp_path: Path) -> Path:
    from tpskit.provisioning.district import district_init

    csv = tmp_path / "tps.csv"
    csv.write_text(f"tps,registered_voters\n{TPS},250\n{OTHER_TPS},300\n")
    return district_init(tmp_path / "district", csv, district_id="kab-test", bind="127.0.0.1").root


def kit(district: Path, tmp_path: Path, kit_id: str = "kit-01", tps: str = TPS) -> Path:
    from tpskit.provisioning.district import bench_kit

    return bench_kit(district, kit_id, tps, tmp_path / kit_id).folder / "kit.toml"


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["kit", "check-config", "--config", str(config)])
    out = capsys.readouterr()
    return code, out.out + out.err


def test_a_freshly_provisioned_kit_passes(district, tmp_path, capsys):
    code, out = check(kit(district, tmp_path), capsys)
    assert code == 0, out
    assert "ok (kit kit-01, TPS 3201012001001, camera picamera2, controls gpio)" in out


def test_fails_on_simulated_camera_on_a_provisioned_kit_naming_the_key_and_the_fix(district, tmp_path, capsys):
    path = kit(district, tmp_path)
    with open(path, "a") as f:
        f.write('\n[camera]\nbackend = "simulated"\n')
    code, out = check(path, capsys)
    assert code == 1
    assert "camera.backend" in out and 'backend = "picamera2"' in out and "allow_simulated_hardware" in out
    with open(path, "a") as f:
        f.write("\n[dev]\nallow_simulated_hardware = true\n")
    assert check(path, capsys)[0] == 0  # a test bench may, and says so in its file


def test_fails_on_an_unknown_key_in_the_daemon_section(district, tmp_path, capsys):
    path = kit(district, tmp_path)
    with open(path, "a") as f:
        f.write("\n[daemon]\nauto_send = true\n")
    code, out = check(path, capsys)
    assert code == 1 and "daemon.auto_send: unknown key" in out


@pytest.mark.parametrize("table, why", [('host = "0.0.0.0"', "loopback only"),
                                        ("kiosk = true", "screen.kiosk: unknown key")])
def test_the_review_page_binds_to_loopback_only_and_its_section_is_strict(district, tmp_path, capsys, table, why):
    path = kit(district, tmp_path)
    assert load_kit_config(path).screen.host == "127.0.0.1"  # the default: a kit's own loopback
    with open(path, "a") as f:
        f.write(f"\n[screen]\n{table}\n")
    code, out = check(path, capsys)
    assert code == 1 and why in out


def test_fails_on_a_key_that_does_not_match_the_certificate(district, tmp_path, capsys):
    path = kit(district, tmp_path)
    other = kit(district, tmp_path, "kit-02", OTHER_TPS)
    (path.parent / "kit.pem").write_bytes((other.parent / "kit.pem").read_bytes())
    code, out = check(path, capsys)
    assert code == 1
    assert "identity.key: the key" in out and "does not match the certificate" in out
    assert "kit.tps: kit.tps is 3201012001001 but the certificate is for TPS 3201012001002" in out


def test_fails_when_the_key_is_missing(district, tmp_path, capsys):
    path = kit(district, tmp_path)
    (path.parent / "kit.key").unlink()
    code, out = check(path, capsys)
    assert code == 1 and "identity.key" in out and "tpskit kit keygen" in out


def test_a_clock_before_the_build_date_or_the_certificate_refuses_capture(district, tmp_path):
    cfg = load_kit_config(kit(district, tmp_path))
    [p] = startup_problems(cfg, BUILD_DATE - dt.timedelta(days=1))
    assert p.key == "clock" and p.transient and "NTP" in p.message
    cert_start = startup_problems(cfg, dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert [q.key for q in cert_start] == ["clock"]  # an hour before the certificate was issued
    assert startup_problems(cfg) == []


def test_several_brokers_are_tried_in_the_listed_order_and_one_broker_stays_valid(district, tmp_path, capsys):
    config = kit(district, tmp_path)
    single = load_kit_config(config)
    assert single.broker.endpoints == [(single.broker.host, single.broker.port)]
    config.write_text(config.read_text().replace(
        "[broker]\n", '[broker]\nfailover = ["broker2.example.org:8883", "[fd00::2]:8884"]\n'))
    code, out = check(config, capsys)
    assert code == 0, out
    assert load_kit_config(config).broker.endpoints == [(single.broker.host, single.broker.port),
                                                        ("broker2.example.org", 8883), ("fd00::2", 8884)]


def test_fails_on_a_failover_broker_without_a_port_naming_the_form(district, tmp_path, capsys):
    config = kit(district, tmp_path)
    config.write_text(config.read_text().replace("[broker]\n", '[broker]\nfailover = ["broker2.example.org"]\n'))
    code, out = check(config, capsys)
    assert code == 1
    assert "broker.failover" in out and "host:port" in out
