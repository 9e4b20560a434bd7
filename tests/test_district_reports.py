"""District reports: tally per area, signed export, observer re-verification, and config errors."""

from __future__ import annotations

import json

import pytest
from conftest import TPS_CODES, fake_jpeg, reading_of

from tpskit.cli import main
from tpskit.config import ConfigError
from tpskit.district.config import load_district_config
from tpskit.district.service import build_ingest
from tpskit.edge.config import load_kit_config
from tpskit.edge.submit import build_payload
from tpskit.envelope import payload_bytes, sha256_hex, sign_compact
from tpskit.provisioning.district import bench_kit, district_init
from tpskit.topics import evidence_topic, result_topic
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key


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
        payload = build_payload(reading_of(TPS_CODES[i], votes, status=status), kit_id=f"kit-{i}",
                                tps=TPS_CODES[i], seq=1, submission_id=f"sub-{i:04d}-xxxx",
                                evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
        compact = sign_compact(payload_bytes(payload), load_key(k.folder / "kit.key"),
                               load_certs(k.folder / "kit.pem"))
        msgs += [(evidence_topic(TPS_CODES[i], f"sub-{i:04d}-xxxx"), photo),
                 (result_topic(TPS_CODES[i]), compact.encode())]
    acks = ingest.process(msgs)
    assert len(acks) == 3
    ingest.engine.dispose()
    return d


def test_tally_sums_ok_results_per_area_and_counts_reported_and_review(filled, tmp_path, capsys):
    out_csv, out_json = tmp_path / "t.csv", tmp_path / "t.json"
    assert main(["district", "tally", "--config", str(filled.config_path), "--csv", str(out_csv),
                 "--json", str(out_json), "--table"]) == 0
    text = capsys.readouterr().out
    assert "regency" in text and "3/4" in text
    assert main(["district", "tally", "--config", str(filled.config_path)]) == 0  # piped: JSON, not the table
    assert json.loads(capsys.readouterr().out) == json.loads(out_json.read_text())
    [t] = json.loads(out_json.read_text())
    regency = next(a for a in t["areas"] if a["level"] == "regency")
    assert (regency["reported"], regency["in_review"], regency["tps_total"]) == (3, 1, 4)
    assert regency["totals"]["paslon_01"] == 70 and regency["totals"]["suara_sah"] == 210  # review left out
    assert "Kab Uji" in out_csv.read_text()


def _export(d, path) -> list[dict]:
    assert main(["district", "export", "--config", str(d.config_path), "--signed", str(path)]) == 0
    return [json.loads(line) for line in path.read_text().splitlines()]


def _write(path, objs: list[dict]) -> None:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))


def test_signed_export_reverifies_line_by_line_and_names_a_tampered_line(filled, tmp_path, capsys):
    out = tmp_path / "signed.jsonl"
    objs = _export(filled, out)
    capsys.readouterr()
    ca = str(filled.ca_cert_path)
    assert main(["verify", str(out), "--ca", ca, "--table"]) == 0
    assert "3 verified, 0 failed" in capsys.readouterr().out
    h, p, s = objs[2]["envelope"].split(".")
    objs[2]["envelope"] = f"{h}.{p[:-4]}AAAA.{s}"
    _write(out, objs)
    assert main(["verify", str(out), "--ca", ca, "--table"]) == 1
    report = capsys.readouterr().out
    assert "line 3: FAIL" in report and "line 2: OK" in report and "2 verified, 1 failed" in report


@pytest.mark.parametrize("content", ["", "\n\n", "header-only", "all-fail"])
def test_verify_exits_1_when_the_file_holds_no_verified_result(content, filled, tmp_path, capsys):
    out = tmp_path / "signed.jsonl"
    objs = _export(filled, out)
    if content == "header-only":
        _write(out, objs[:1])
    elif content == "all-fail":
        for o in objs[1:]:
            o["envelope"] = o["envelope"][:-8] + "AAAAAAAA"
        _write(out, objs)
    else:
        out.write_text(content)
    capsys.readouterr()
    assert main(["verify", str(out), "--ca", str(filled.ca_cert_path), "--table"]) == 1
    text = capsys.readouterr().out
    assert "0 verified" in text
    if content != "all-fail":
        assert "holds no signed result" in text


def test_verify_prints_a_summary_per_tps_and_json_lines_when_piped(filled, tmp_path, capsys):
    out = tmp_path / "signed.jsonl"
    _export(filled, out)
    capsys.readouterr()
    assert main(["verify", str(out), "--ca", str(filled.ca_cert_path), "--table"]) == 0
    text = capsys.readouterr().out
    assert "per TPS:" in text and f"{TPS_CODES[2]}  c-hasil-ppwp-2024  1         0       0           sub-0002-xxxx" \
        "  review" in text
    assert main(["verify", str(out), "--ca", str(filled.ca_cert_path)]) == 0  # stdout is not a terminal here
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["line"] for r in rows if "line" in r] == [2, 3, 4]
    assert {r["per_tps"]["tps"] for r in rows if "per_tps" in r} == set(TPS_CODES[:3])
    assert rows[-1]["summary"] == {"verified": 3, "failed": 0, "problems": []}


@pytest.fixture
def corrected(filled, tmp_path):
    """`filled`, plus a TPS that sent sequence 1, 2 and 4 (2 and 4 corrections) and another TPS whose
    kit was replaced (a second kit's result supersedes the first kit's)."""
    cfg = load_district_config(filled.config_path)
    ingest = build_ingest(cfg)
    k = bench_kit(filled.root, "kit-c", TPS_CODES[3], tmp_path / "kitc")
    k2 = bench_kit(filled.root, "kit-0b", TPS_CODES[0], tmp_path / "kit0b")
    for kit, tps, seq, votes in [(k, TPS_CODES[3], 1, (5, 5, 5)), (k, TPS_CODES[3], 2, (6, 6, 6)),
                                 (k, TPS_CODES[3], 4, (7, 8, 9)), (k2, TPS_CODES[0], 1, (61, 50, 40))]:
        photo = fake_jpeg(f"c{seq}{tps}")
        sid = f"sub-{tps[-4:]}-seq{seq}"
        payload = build_payload(reading_of(tps, votes), kit_id=kit.kit_id, tps=tps, seq=seq, submission_id=sid,
                                evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
        compact = sign_compact(payload_bytes(payload), load_key(kit.folder / "kit.key"),
                               load_certs(kit.folder / "kit.pem"))
        acks = ingest.process([(evidence_topic(tps, sid), photo), (result_topic(tps), compact.encode())])
        assert len(acks) == 1
    ingest.engine.dispose()
    return filled


def test_export_marks_each_result_current_or_superseded_and_the_recount_equals_the_district_tally(
        corrected, tmp_path, capsys):
    out = tmp_path / "signed.jsonl"
    objs = _export(corrected, out)
    header, lines = objs[0], objs[1:]
    assert header["export"] == "tpskit/signed-results" and len(header["tps"]) == 4 and header["results"] == 7
    by_sid = {o["submission_id"]: o for o in lines}
    tps3 = [o for o in lines if o["tps"] == TPS_CODES[3]]
    assert [(o["submission_id"], o["state"], o["superseded_by"]) for o in tps3] == [
        (f"sub-{TPS_CODES[3][-4:]}-seq1", "superseded", f"sub-{TPS_CODES[3][-4:]}-seq2"),
        (f"sub-{TPS_CODES[3][-4:]}-seq2", "superseded", f"sub-{TPS_CODES[3][-4:]}-seq4"),
        (f"sub-{TPS_CODES[3][-4:]}-seq4", "current", None)]
    assert by_sid["sub-0000-xxxx"]["superseded_by"] == f"sub-{TPS_CODES[0][-4:]}-seq1"  # the replacement kit's
    assert sum(o["state"] == "current" for o in lines) == 4

    district_json, observer_json = tmp_path / "district.json", tmp_path / "observer.json"
    assert main(["district", "tally", "--config", str(corrected.config_path), "--json", str(district_json)]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "--ca", str(corrected.ca_cert_path), "--tally-json", str(observer_json),
                 "--table"]) == 0
    text = capsys.readouterr().out
    assert "7 verified, 0 failed" in text and "recount from the export" in text
    assert json.loads(observer_json.read_text()) == json.loads(district_json.read_text())
    [t] = json.loads(observer_json.read_text())
    regency = next(a for a in t["areas"] if a["level"] == "regency")
    # paslon_01: 61 (TPS 0's replacement) + 10 (TPS 1) + 7 (TPS 3's seq 4); TPS 2 is in review
    assert (regency["reported"], regency["in_review"], regency["totals"]["paslon_01"]) == (4, 1, 78)


@pytest.mark.parametrize("change", ["superseded-marked-current", "current-marked-superseded", "wrong-successor",
                                    "dropped-current", "tps-not-listed"])
def test_verify_tally_fails_when_a_mark_disagrees_with_the_rule(change, corrected, tmp_path, capsys):
    out = tmp_path / "signed.jsonl"
    objs = _export(corrected, out)
    lines = objs[1:]
    seq1, seq2, seq4 = (next(o for o in lines if o["submission_id"] == f"sub-{TPS_CODES[3][-4:]}-seq{n}")
                        for n in (1, 2, 4))
    if change == "superseded-marked-current":
        seq1.update(state="current", superseded_by=None)
    elif change == "current-marked-superseded":
        seq4.update(state="superseded", superseded_by=seq1["submission_id"])
    elif change == "wrong-successor":
        seq1["superseded_by"] = seq4["submission_id"]
    elif change == "dropped-current":  # hiding a correction: the older result would then count
        objs.remove(seq4)
        seq2.update(state="current", superseded_by=None)
    else:
        objs[0]["tps"] = [t for t in objs[0]["tps"] if t["tps"] != TPS_CODES[3]]
    _write(out, objs)
    capsys.readouterr()
    assert main(["verify", str(out), "--ca", str(corrected.ca_cert_path), "--tally", "--table"]) == 1
    assert "PROBLEM" in capsys.readouterr().out


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


def test_verify_fails_a_line_whose_words_contradict_its_signed_result(filled, tmp_path, capsys):
    out = tmp_path / "signed.jsonl"
    objs = _export(filled, out)
    objs[1]["tps"] = TPS_CODES[3]  # the district's words say another TPS than the kit signed
    _write(out, objs)
    capsys.readouterr()
    assert main(["verify", str(out), "--ca", str(filled.ca_cert_path), "--table"]) == 1
    assert "line 2: FAIL line_mismatch" in capsys.readouterr().out
