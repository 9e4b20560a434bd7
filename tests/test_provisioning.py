"""Provisioning refuses bad input clearly and never overwrites a key."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat

import pytest
from conftest import TPS_CODES
from cryptography import x509

from tpskit.cli import main
from tpskit.localhost import free_port
from tpskit.provisioning.district import bench_kit, district_init, revoke, sign_csr
from tpskit.provisioning.pki import ProvisioningError, mqtt_username
from tpskit.trust.certs import load_cert
from tpskit.trust.csr import keygen
from tpskit.trust.identity import TrustError, identity_of
from tpskit.trust.keys import KeyFileError, create_key, load_key


@pytest.fixture
def tps_csv(tmp_path):
    p = tmp_path / "tps.csv"
    rows = "".join(f"{t},250,Desa {i}\n" for i, t in enumerate(TPS_CODES[:3]))
    p.write_text("tps,registered_voters,village\n" + rows)
    return p


@pytest.fixture
def district(tmp_path, tps_csv):
    return district_init(tmp_path / "district", tps_csv, district_id="kab-test", broker_port=free_port())


def _broker_users(district) -> dict[str, str]:
    """user name -> role, from the dynamic security plugin's file (written while the broker is stopped)."""
    cfg = json.loads((district.broker_dir / "dynamic-security.json").read_text())
    return {c["username"]: c["roles"][0]["rolename"] for c in cfg["clients"]}


def test_keygen_creates_a_0600_key_and_refuses_to_overwrite_it(tmp_path):
    key, csr = keygen(tmp_path / "kit", "kit-a", TPS_CODES[0])
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    with pytest.raises(KeyFileError, match="refusing to overwrite"):
        keygen(tmp_path / "kit", "kit-a", TPS_CODES[0])
    assert key.read_bytes() == before
    ident = identity_of(x509.load_pem_x509_csr(csr.read_bytes()))
    assert (ident.common_name, ident.tps, ident.role) == ("kit-a", TPS_CODES[0], "kit")


def test_fails_on_loading_a_key_readable_by_others(tmp_path):
    path = tmp_path / "k.key"
    create_key(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_key(path)


@pytest.mark.parametrize("tps", ["320101200100", "32010120010011", "32010120010a1", ""])
def test_fails_on_malformed_tps_code(tmp_path, tps):
    with pytest.raises(TrustError, match="13 digits"):
        keygen(tmp_path / "kit", "kit-a", tps)
    assert not (tmp_path / "kit" / "kit.key").exists()


def test_fails_on_csr_whose_tps_is_not_in_the_district_list(tmp_path, district):
    _, csr = keygen(tmp_path / "kit", "kit-x", "3271010001001")
    with pytest.raises(ProvisioningError, match="not in this district's TPS list"):
        sign_csr(district.root, csr)


def test_fails_on_expired_ca(tmp_path, tps_csv):
    with pytest.raises(ProvisioningError, match="expired"):
        district_init(tmp_path / "old", tps_csv, district_id="kab-old",
                      ca_not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=20), ca_days=10)


def test_sign_csr_refuses_a_ca_that_expired_since(tmp_path, tps_csv, monkeypatch):
    d = district_init(tmp_path / "d", tps_csv, district_id="kab-test", ca_days=1)
    _, csr = keygen(tmp_path / "kit", "kit-a", TPS_CODES[0])
    import tpskit.provisioning.pki as pki

    monkeypatch.setattr(pki, "utcnow", lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=2))
    with pytest.raises(ProvisioningError, match="CA expired"):
        sign_csr(d.root, csr)


def test_district_init_refuses_to_replace_an_existing_ca(tmp_path, tps_csv, district):
    ca_before = district.ca_cert_path.read_bytes()
    with pytest.raises(ProvisioningError, match="already holds a district CA"):
        district_init(district.root, tps_csv, district_id="kab-test")
    assert district.ca_cert_path.read_bytes() == ca_before


def test_fails_on_tps_csv_with_bad_rows(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("tps,registered_voters\n3201012001001,250\n3201012001001,200\n")
    with pytest.raises(TrustError, match="line 3: TPS 3201012001001 is listed twice"):
        district_init(tmp_path / "d", bad, district_id="kab-test")
    bad.write_text("tps,registered_voters\n3201012001001,lots\n")
    with pytest.raises(TrustError, match="line 2: registered_voters 'lots'"):
        district_init(tmp_path / "d2", bad, district_id="kab-test")


def test_sign_csr_issues_certificate_with_tps_and_gives_the_broker_its_user_and_the_kit_settings(tmp_path, district):
    kit = bench_kit(district.root, "kit-a", TPS_CODES[0], tmp_path / "kit")
    cert = load_cert(kit.folder / "kit.pem")
    ident = identity_of(cert)
    assert (ident.common_name, ident.tps, ident.role) == ("kit-a", TPS_CODES[0], "kit")
    # The broker's user is the certificate's subject, unique to this certificate, with its TPS's role.
    assert mqtt_username(cert) == f"serialNumber={cert.serial_number:x},CN=kit-a"
    assert _broker_users(district)[mqtt_username(cert)] == f"tps-{TPS_CODES[0]}"
    roles = json.loads((district.broker_dir / "dynamic-security.json").read_text())["roles"]
    kit_role = next(r for r in roles if r["rolename"] == f"tps-{TPS_CODES[0]}")
    assert {(a["acltype"], a["topic"]) for a in kit_role["acls"]} == {
        ("publishClientSend", f"tps/{TPS_CODES[0]}/result"), ("publishClientSend", f"tps/{TPS_CODES[0]}/evidence/+"),
        ("subscribeLiteral", f"tps/{TPS_CODES[0]}/ack"), ("publishClientReceive", f"tps/{TPS_CODES[0]}/ack")}
    assert "registered_voters = 250" in (kit.folder / "kit.toml").read_text()
    _, csr2 = keygen(tmp_path / "kit2", "kit-a", TPS_CODES[0])
    with pytest.raises(ProvisioningError, match="already has a certificate"):
        sign_csr(district.root, csr2)


def test_revoke_removes_the_kit_from_the_broker_and_lists_its_serial_in_the_crl(tmp_path, district):
    kit = bench_kit(district.root, "kit-a", TPS_CODES[0], tmp_path / "kit")
    entry = revoke(district.root, "kit-a", "stolen")
    assert mqtt_username(load_cert(kit.folder / "kit.pem")) not in _broker_users(district)
    crl = x509.load_pem_x509_crl((district.broker_dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(int(entry["serial"])) is not None
    with pytest.raises(ProvisioningError, match="was revoked"):
        sign_csr(district.root, keygen(tmp_path / "kit3", "kit-a", TPS_CODES[0])[1], replace=True)


def test_replacing_a_kit_certificate_revokes_the_old_one_but_not_the_kit(tmp_path, district):
    old = bench_kit(district.root, "kit-a", TPS_CODES[0], tmp_path / "kit")
    old_serial = load_cert(old.folder / "kit.pem").serial_number
    new = sign_csr(district.root, keygen(tmp_path / "kit2", "kit-a", TPS_CODES[0])[1],
                   out_dir=tmp_path / "kit2", replace=True)
    new_serial = load_cert(new.folder / "kit.pem").serial_number
    crl = x509.load_pem_x509_crl((district.broker_dir / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(old_serial) is not None
    assert crl.get_revoked_certificate_by_serial_number(new_serial) is None
    users = _broker_users(district)
    assert mqtt_username(load_cert(new.folder / "kit.pem")) in users
    assert mqtt_username(load_cert(old.folder / "kit.pem")) not in users
    # The district service and `tpskit verify` load revoked.json the same way: serials and kit names.
    data = district.revoked()
    assert old_serial in {int(v["serial"]) for v in data.values()}
    assert "kit-a" not in data


def test_cli_refuses_unknown_kit_for_revoke_with_a_message(tmp_path, district, capsys):
    assert main(["provision", "revoke", "kit-zz", "--dir", str(district.root)]) == 1
    assert "no certificate was issued to 'kit-zz'" in capsys.readouterr().err


def test_cli_district_init_then_keygen_then_sign_csr(tmp_path, tps_csv, capsys):
    d = tmp_path / "d"
    assert main(["provision", "district-init", "--dir", str(d), "--tps-csv", str(tps_csv),
                 "--district-id", "kab-cli"]) == 0
    key = tmp_path / "kit" / "kit.key"
    # as root, keygen gives the key to the kit service's user: here the test's own (root)
    assert main(["kit", "keygen", "--kit-id", "kit-cli", "--tps", TPS_CODES[1], "--key", str(key),
                 "--user", "root"]) == 0
    assert main(["provision", "sign-csr", str(key.parent / "kit.csr"), "--dir", str(d)]) == 0
    assert (d / "kits" / "kit-cli" / "kit.pem").exists()
    assert main(["kit", "keygen", "--kit-id", "kit-cli", "--tps", TPS_CODES[1], "--key", str(key),
                 "--user", "root"]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    if os.geteuid() == 0:  # a service user that does not exist is named before anything is written
        other = tmp_path / "other" / "kit.key"
        assert main(["kit", "keygen", "--kit-id", "kit-cli", "--tps", TPS_CODES[1], "--key", str(other),
                     "--user", "no-such-user-here"]) == 1
        assert "user 'no-such-user-here' does not exist" in capsys.readouterr().err and not other.exists()


def test_sign_csr_refuses_a_kit_id_ending_in_a_newline_that_would_split_its_acl_line(tmp_path, district):
    # "user kit-a\n" in the ACL would give the kit-a block this CSR's TPS as well.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import NameOID

    san = x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:tpskit:role:kit"),
                                       x509.UniformResourceIdentifier(f"urn:tps:{TPS_CODES[1]}")])
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kit-a\n")]))
           .add_extension(san, critical=False).sign(Ed25519PrivateKey.generate(), None))
    (tmp_path / "kit.csr").write_bytes(csr.public_bytes(Encoding.PEM))
    with pytest.raises(TrustError, match="not usable"):
        sign_csr(district.root, tmp_path / "kit.csr")
    assert not any("kit-a" in u for u in _broker_users(district))


def test_district_init_where_it_may_not_write_says_so_in_one_line(tmp_path, tps_csv, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "var").write_text("a file where the install needs a folder")  # refused as root too
    owners = ["--user", "root", "--broker-user", "root"] if os.geteuid() == 0 else []  # users that exist here
    assert main(["provision", "district-init", "--root", str(locked), "--tps-csv", str(tps_csv),
                 "--district-id", "kab-x", *owners]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: cannot write ") and str(locked) in err[0], err


def test_a_batch_of_csrs_is_signed_with_the_lists_and_the_broker_written_once(tmp_path, district, monkeypatch):
    # One at a time, each kit rewrote kits.json, the CRL and the broker's users with every kit issued so
    # far: a district's thousand kits took the better part of an hour.
    from tpskit.provisioning import district as prov
    from tpskit.provisioning.broker import tps_role

    csrs = [keygen(tmp_path / f"kit{i}", f"kit-{i}", TPS_CODES[i])[1] for i in range(3)]
    writes = {"lists": 0, "broker": 0}
    real_refresh, real_apply = prov._refresh_broker_lists, prov._apply_to_broker
    monkeypatch.setattr(prov, "_refresh_broker_lists",
                        lambda d: (writes.__setitem__("lists", writes["lists"] + 1), real_refresh(d))[1])
    monkeypatch.setattr(prov, "_apply_to_broker",
                        lambda d, c, i: (writes.__setitem__("broker", writes["broker"] + 1), real_apply(d, c, i))[1])
    kits = prov.sign_csrs(district.root, csrs)
    assert writes == {"lists": 1, "broker": 1}
    assert [(k.kit_id, k.tps) for k in kits] == [(f"kit-{i}", TPS_CODES[i]) for i in range(3)]
    issued = json.loads((district.root / "kits.json").read_text())
    assert sorted(issued) == ["kit-0", "kit-1", "kit-2"]
    users = _broker_users(district)
    for i, k in enumerate(kits):
        cert = load_cert(k.folder / "kit.pem")
        assert identity_of(cert).tps == TPS_CODES[i]
        assert users[mqtt_username(cert)] == tps_role(TPS_CODES[i])


def test_one_bad_csr_in_a_batch_issues_no_certificate_and_names_its_file(tmp_path, district):
    good = keygen(tmp_path / "kit0", "kit-0", TPS_CODES[0])[1]
    bad = keygen(tmp_path / "kit9", "kit-9", "3271010001001")[1]  # a TPS of another district
    from tpskit.provisioning.district import sign_csrs

    with pytest.raises(ProvisioningError, match="3271010001001") as e:
        sign_csrs(district.root, [good, bad])
    assert str(bad) in str(e.value)
    assert json.loads((district.root / "kits.json").read_text()) == {}
    assert not (district.root / "kits" / "kit-0").exists()


def test_two_csrs_of_one_batch_asking_for_the_same_kit_id_are_refused(tmp_path, district):
    from tpskit.provisioning.district import sign_csrs

    a = keygen(tmp_path / "a", "kit-a", TPS_CODES[0])[1]
    b = keygen(tmp_path / "b", "kit-a", TPS_CODES[1])[1]
    with pytest.raises(ProvisioningError, match="both ask for kit id kit-a"):
        sign_csrs(district.root, [a, b])
    assert json.loads((district.root / "kits.json").read_text()) == {}


def test_cli_sign_csr_takes_many_csrs_and_refuses_out_with_more_than_one(tmp_path, district, capsys):
    csrs = [str(keygen(tmp_path / f"kit{i}", f"kit-{i}", TPS_CODES[i])[1]) for i in range(2)]
    assert main(["provision", "sign-csr", *csrs, "--dir", str(district.root), "--out", str(tmp_path / "out")]) == 1
    assert "give it one CSR" in capsys.readouterr().err
    assert main(["provision", "sign-csr", *csrs, "--dir", str(district.root)]) == 0
    out = capsys.readouterr().out
    assert "kit kit-0 for TPS" in out and "kit kit-1 for TPS" in out and out.count("broker:") == 1
