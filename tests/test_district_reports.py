"""District reports: tally per area, signed export, observer re-verification, and config errors."""

from __future__ import annotations

import json

import pytest
from conftest import TPS_CODES, fake_jpeg, make_reading

from tpskit.cli import main
from tpskit.config import ConfigError, load_district_config, load_kit_config
from tpskit.district.service import build_ingest
from tpskit.edge.submit import build_payload
from tpskit.envelope import payload_bytes, sha256_hex, sign_compact
from tpskit.keys import load_key
from tpskit.provisioning.district import bench_kit, district_init
from tpskit.provisioning.pki import load_certs


@pytest.fixture
def filled(tmp_path):
    """A district whose database holds three accepted results (one in review) via the real ingest code."""
    csv = tmp_path / "tps.csv"
    csv.write_text("tps,registered_voters,village,kecamatan,regency\n"
                   + "".join(f"{t},250,Desa {t[-4:]},Kec Satu,Kab Uji\n" for t in TPS_CODES[:4]))
    d = district_init(tmp_path / "d", csv, district_id="kab-test")
    cfg = load_district_config(d.config_path)
    ingest = build_ingest(cfg)
    msgs = []
    for i, (votes, status) in enumerate([((60, 50, 40), "ok"), ((10, 20, 30), "ok"), ((1, 2, 3), "review")]):
        k = bench_kit(d.root, f"kit-{i}", TPS_CODES[i], tmp_path / f"kit{i}")
        photo = fake_jpeg(f"r{i}")
        payload = build_payload(make_reading(TPS_CODES[i], votes, status=status), kit_id=f"kit-{i}",
                                tps=TPS_CODES[i], seq=1, submission_id=f"sub-{i:04d}-xxxx",
                                evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
        compact = sign_compact(payload_bytes(payload), load_key(k.folder / "kit.key"),
                               load_certs(k.folder / "kit.pem"))
        msgs += [(f"tps/{TPS_CODES[i]}/evidence/sub-{i:04d}-xxxx", photo),
                 (f"tps/{TPS_CODES[i]}/result", compact.encode())]
    acks = ingest.process(msgs)
    assert len(acks) == 3
    ingest.engine.dispose()
    return d


def test_tally_sums_ok_results_per_area_and_counts_reported_and_review(filled, tmp_path, capsys):
    out_csv, out_json = tmp_path / "t.csv", tmp_path / "t.json"
    assert main(["district", "tally", "--config", str(filled.config_path), "--csv", str(out_csv),
                 "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "regency" in text and "3/4" in text
    [t] = json.loads(out_json.read_text())
    regency = next(a for a in t["areas"] if a["level"] == "regency")
    assert (regency["reported"], regency["in_review"], regency["tps_total"]) == (3, 1, 4)
    assert regency["totals"]["paslon_01"] == 70 and regency["totals"]["suara_sah"] == 210  # review left out
    assert "Kab Uji" in out_csv.read_text()


def test_signed_export_reverifies_line_by_line_and_names_a_tampered_line(filled, tmp_path, capsys):
    out = tmp_path / "signed.jsonl"
    assert main(["district", "export", "--config", str(filled.config_path), "--signed", str(out)]) == 0
    ca = str(filled.ca_cert_path)
    assert main(["verify", str(out), "--ca", ca]) == 0
    assert "3 verified, 0 failed" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    h, p, s = lines[1].split(".")
    lines[1] = f"{h}.{p[:-4]}AAAA.{s}"
    out.write_text("\n".join(lines) + "\n")
    assert main(["verify", str(out), "--ca", ca]) == 1
    report = capsys.readouterr().out
    assert "line 2: FAIL" in report and "line 1: OK" in report and "2 verified, 1 failed" in report


def test_fails_on_kit_config_with_bad_value_naming_key_value_and_fix(tmp_path):
    p = tmp_path / "kit.toml"
    p.write_text('[kit]\nid = "kit-a"\ntps = "12345"\n[broker]\nport = 99999\nhots = "x"\n')
    with pytest.raises(ConfigError) as e:
        load_kit_config(p)
    msg = str(e.value)
    assert "kit.tps = '12345'" in msg and "13 digits" in msg
    assert "broker.port = 99999" in msg and "TLS port" in msg
    assert "broker.hots: unknown key" in msg


def test_district_check_config_exits_0_on_generated_config_and_1_on_bad_one(filled, tmp_path, capsys):
    assert main(["district", "check-config", "--config", str(filled.config_path)]) == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[district]\nid = "kab-test"\n[database]\nurl = "mysql://x"\n')
    assert main(["district", "check-config", "--config", str(bad)]) == 1
    assert "database.url = 'mysql://x'" in capsys.readouterr().err
