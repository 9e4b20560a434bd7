"""Write the committed seed corpus of the fuzzers (run once; the output is committed, so that the suite's
short runs and `make fuzz` start from the same inputs):

    .venv/bin/python tests/fuzz/make_corpus.py

reader: small photos (JPEG, PNG, BMP, TIFF) of the reference sheet; verifier: tokens of a throwaway district
(its ca.pem is committed next to the corpus): a good result, a good ack, and the hostile shapes found
before; payload: result payloads, which the payload fuzzer signs with the throwaway kit's key (kit.key,
committed: it belongs to this test district only); export: a district export of the good token, and the
token alone; template: the shipped templates; config: a kit and a district file.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))


def write(folder: str, name: str, data: bytes) -> None:
    d = HERE / "corpus" / folder
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def reader() -> None:
    gray = cv2.imread(str(ROOT / "edge" / "reference" / "reference-sheet.jpg"), cv2.IMREAD_GRAYSCALE)
    small = cv2.resize(gray, (360, 510), interpolation=cv2.INTER_AREA)
    write("reader", "sheet.jpg", cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 40])[1].tobytes())
    write("reader", "sheet.png", cv2.imencode(".png", cv2.resize(small, (240, 340)))[1].tobytes())
    write("reader", "sheet.bmp", cv2.imencode(".bmp", cv2.resize(small, (200, 284)))[1].tobytes())
    write("reader", "sheet.tif", cv2.imencode(".tif", cv2.resize(small, (200, 284)))[1].tobytes())
    write("reader", "noise.jpg", cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (240, 240),
                                                                                       np.uint8))[1].tobytes())


def verifier() -> None:
    from conftest import fake_jpeg, make_reading
    from hostile import der, signed_over

    from tpskit.edge.reading import Reading
    from tpskit.edge.submit import build_payload
    from tpskit.envelope import CompactSigner, payload_bytes, sha256_hex, sign_compact
    from tpskit.provisioning.district import bench_kit, district_init
    from tpskit.trust.certs import load_certs
    from tpskit.trust.keys import load_key

    tmp = Path(tempfile.mkdtemp())
    tps = "3201012001001"
    (tmp / "tps.csv").write_text(f"tps,registered_voters\n{tps},250\n")
    d = district_init(tmp / "d", tmp / "tps.csv", district_id="kab-fuzz")
    k = bench_kit(d.root, "kit-fuzz", tps, tmp / "kit")
    shutil.copy(d.ca_cert_path, HERE / "ca.pem")
    # The payload fuzzer signs what it makes with this throwaway kit of this throwaway district.
    shutil.copy(k.folder / "kit.key", HERE / "kit.key")
    shutil.copy(k.folder / "kit.pem", HERE / "kit.pem")
    key, chain = load_key(k.folder / "kit.key"), load_certs(k.folder / "kit.pem")
    photo = fake_jpeg("fuzz")
    body = payload_bytes(build_payload(Reading.from_dict(make_reading(tps)), kit_id="kit-fuzz", tps=tps, seq=7,
                                       submission_id="5d0e8b2a-0000-4000-8000-00000000f022",
                                       evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo)))
    write("verifier", "result.jws", sign_compact(body, key, chain).encode())
    write("payload", "result.json", body)
    write("payload", "review.json", payload_bytes(build_payload(
        Reading.from_dict(make_reading(tps, status="review")), kit_id="kit-fuzz", tps=tps, seq=8,
        submission_id="5d0e8b2a-0000-4000-8000-00000000f023", evidence_sha256=sha256_hex(photo),
        evidence_bytes=len(photo))))
    twice = body.replace(b'"fields":', b'"fields":{},"fields":', 1)
    write("verifier", "fields-twice.jws", signed_over(twice, key, [der(chain[0])]).encode())
    write("verifier", "nan.jws", signed_over(body.replace(b'"confidence":0.999', b'"confidence":NaN', 1), key,
                                             [der(chain[0])]).encode())
    ack = json.dumps({"district": "kab-fuzz", "envelope_sha256": "0" * 64, "evidence_sha256": None,
                      "kit_id": "kit-fuzz", "reason": None, "received_at": "2025-11-02T10:00:00Z",
                      "schema": "tpskit-ack/1", "status": "accepted", "submission_id": "abcdef12-0001",
                      "tps": tps}, separators=(",", ":")).encode()
    svc = CompactSigner(load_key(d.root / "service" / "district.key"), load_certs(d.root / "service" / "district.pem"))
    write("verifier", "ack.jws", svc.sign(ack).encode())
    shutil.rmtree(tmp)


def export() -> None:
    """`tpskit verify`'s input: a district export (header line, then one result line) of the verifier's good
    token, received a minute after its capture; and plain token lines."""
    import base64
    import datetime as dt

    from tpskit.district.tally import EXPORT_FORMAT, EXPORT_VERSION, RULE

    token = (HERE / "corpus" / "verifier" / "result.jws").read_text()
    part = token.split(".")[1]
    body = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    received = dt.datetime.fromisoformat(body["captured_at"]) + dt.timedelta(minutes=1)
    header = {"export": EXPORT_FORMAT, "version": EXPORT_VERSION, "district": "kab-fuzz",
              "exported_at": (received + dt.timedelta(hours=1)).isoformat(), "results": 1, "rule": RULE,
              "tps": [{"tps": body["tps"], "registered_voters": 250, "village": "Desa", "kecamatan": "Kec",
                       "regency": "Kab"}]}
    line = {"tps": body["tps"], "template": body["template_id"], "submission_id": body["submission_id"],
            "received_at": received.isoformat(), "state": "current", "superseded_by": None, "envelope": token}
    write("export", "export.jsonl", (json.dumps(header, separators=(",", ":")) + "\n"
                                     + json.dumps(line, separators=(",", ":")) + "\n").encode())
    write("export", "tokens.txt", (token + "\n").encode())


def template() -> None:
    for path in sorted((ROOT / "tpskit" / "templates").glob("*.json")):
        write("template", path.name, path.read_bytes())


def config() -> None:
    write("config", "kit.toml", b'[kit]\nid = "kit-a"\ntps = "3201012001001"\nregistered_voters = 250\n'
          b'data_dir = "data"\n\n[identity]\nkey = "kit.key"\n\n[broker]\nhost = "127.0.0.1"\nport = 8883\n'
          b'\n[delivery]\nack_timeout_s = 60.0\n\n[camera]\nbackend = "simulated"\n')
    write("config", "district.toml", b'[district]\nid = "kab-x"\ntps_list = "tps.csv"\n\n[broker]\n'
          b'port = 8883\nclient_id = "district-kab-x"\n\n[database]\nurl = "sqlite:///d.sqlite"\n\n[ingest]\n'
          b'processes = 2\n\n[limits]\nmin_free_mb = 100\n')


if __name__ == "__main__":
    shutil.rmtree(HERE / "corpus", ignore_errors=True)
    reader()
    verifier()
    export()
    template()
    config()
    print(sorted(str(p.relative_to(HERE)) for p in (HERE / "corpus").rglob("*") if p.is_file()))
