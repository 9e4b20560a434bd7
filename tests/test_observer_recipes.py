"""The observer's recipes in docs/trust-chain.md, run exactly as printed there: OpenSSL only, and Python with
joserfc. Each must accept the district's export and stop with a non-zero status on a bad line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TPS_CODES, reading_of
from test_district_reports import filled  # noqa: F401 - the fixture: a district with three accepted results

from tpskit.cli import main
from tpskit.edge.submit import build_payload
from tpskit.envelope import payload_bytes, sign_compact
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key

DOC = Path(__file__).resolve().parent.parent / "docs" / "trust-chain.md"


def _block(marker: str) -> str:
    m = re.search(rf"<!-- {marker}:.*?-->\n```\w+\n(.*?)```", DOC.read_text(), re.S)
    assert m, f"no {marker} block in {DOC}"
    return m.group(1)


@pytest.fixture
def export(filled, tmp_path):  # noqa: F811
    out = tmp_path / "signed.jsonl"
    assert main(["district", "export", "--config", str(filled.config_path), "--signed", str(out)]) == 0
    return out, filled.ca_cert_path, [json.loads(line) for line in out.read_text().splitlines()]


def _openssl(tmp_path: Path, export: Path, ca: Path) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "verify-export.sh"
    script.write_text(_block("openssl-recipe"))
    return subprocess.run(["sh", str(script), str(export), str(ca)], capture_output=True, text=True, timeout=120)


def _rewrite(path: Path, objs: list[dict]) -> None:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))


def test_openssl_recipe_accepts_the_districts_export(export, tmp_path):
    path, ca, _ = export
    done = _openssl(tmp_path, path, ca)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": OK (TPS ") == 3 and "3 results verified" in done.stdout


@pytest.mark.parametrize("bad", ["tampered-payload", "tps-not-the-certificates", "no-envelope", "no-result"])
def test_openssl_recipe_exits_non_zero_on_a_bad_line(bad, export, filled, tmp_path):  # noqa: F811
    path, ca, objs = export
    if bad == "tampered-payload":
        h, p, s = objs[2]["envelope"].split(".")
        objs[2]["envelope"] = f"{h}.{p[:-4]}AAAA.{s}"
    elif bad == "tps-not-the-certificates":  # kit-0 signs a result for another TPS: a valid signature
        folder = tmp_path / "kit0"
        payload = build_payload(reading_of(TPS_CODES[1]), kit_id="kit-0", tps=TPS_CODES[1], seq=9,
                                submission_id="sub-forged-0001", evidence_sha256="0" * 64, evidence_bytes=2048)
        objs[1]["envelope"] = sign_compact(payload_bytes(payload), load_key(folder / "kit.key"),
                                           load_certs(folder / "kit.pem"))
    elif bad == "no-envelope":
        del objs[3]["envelope"]
    else:
        objs = objs[:1]
    _rewrite(path, objs)
    done = _openssl(tmp_path, path, ca)
    assert done.returncode != 0, done.stdout
    expected = {"tampered-payload": "result 2: FAIL (signature does not verify)",
                "tps-not-the-certificates": "result 1: FAIL (payload TPS is not the certificate's)",
                "no-envelope": "a line holds no envelope", "no-result": "no signed result"}[bad]
    assert expected in done.stderr


def test_python_recipe_verifies_every_line_and_adds_up_the_current_results(export, tmp_path):
    path, ca, objs = export
    script = tmp_path / "recount.py"
    script.write_text(_block("python-recipe"))
    done = subprocess.run([sys.executable, str(script), str(path), str(ca)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str({"paslon_01": 70, "paslon_02": 70, "paslon_03": 70})
    h, p, s = objs[1]["envelope"].split(".")
    objs[1]["envelope"] = f"{h}.{p[:-4]}AAAA.{s}"
    _rewrite(path, objs)
    done = subprocess.run([sys.executable, str(script), str(path), str(ca)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
