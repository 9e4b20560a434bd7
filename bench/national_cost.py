"""Where a national worker's CPU goes, stage by stage, on the messages of an election night.

Reads the forwarded messages from the district databases of a work folder kept by `bench/election.py --keep`
(each district's forward_outbox holds exactly what it published) and the national.toml next to them, and
times each step of the national check over all of them (process CPU, microseconds per message), with a
fresh certificate cache (every kit met for the first time, as in a replay or on election night: a kit sends
one result) and a warm one.

    .venv/bin/python bench/election.py --quick --keep        # prints its work folder
    .venv/bin/python bench/national_cost.py /tmp/tpskit-election-XXXX
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("work", type=Path, help="a work folder kept by bench/election.py --keep")
    ap.add_argument("--rounds", type=int, default=3, help="the median of this many passes is shown")
    args = ap.parse_args()

    from cryptography import x509

    from tpskit.envelope import parse_ack, verify_result
    from tpskit.envelope.recheck import check_result_content
    from tpskit.envelope.signing import unb64url
    from tpskit.envelope.verify import parse_result, strict_json
    from tpskit.forwarded import parse_forwarded
    from tpskit.national.config import load_national_config
    from tpskit.national.verify import NationalChecker
    from tpskit.trust.identity import signer_of

    cfg = load_national_config(args.work / "national.toml")
    msgs: list[bytes] = []
    for d in sorted(p for p in args.work.iterdir() if (p / "district" / "district.sqlite").exists()):
        con = sqlite3.connect(d / "district" / "district.sqlite")
        msgs += [r[0].encode() for r in con.execute("SELECT message FROM forward_outbox ORDER BY id")]
        con.close()
    n = len(msgs)
    results: dict[str, list[float]] = {}

    def stage(label: str, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        cpu = time.process_time()
        out = [fn(x) for x in items]
        results.setdefault(label, []).append(1e6 * (time.process_time() - cpu) / len(items))
        return out

    def one_pass() -> None:
        checker = NationalChecker(cfg.districts)
        stage("whole check, fresh certificate cache", checker.check, msgs)
        stage("whole check, warm certificate cache", checker.check, msgs)
        fw = stage("forwarded message: strict JSON + schema", parse_forwarded, msgs)
        checker = NationalChecker(cfg.districts)
        verifier = [checker.districts[f.district].verifier for f in fw]
        idx = range(n)
        accs = stage("acceptance: verify (Ed25519; its certificate cached)", lambda i: verifier[i].verify(
            fw[i].acceptance, role="district", check_validity=False), idx)
        acks = stage("acceptance: schema", parse_ack, accs)
        arrived = [a.received_at.astimezone(dt.UTC) for a in acks]
        x5c = [strict_json(unb64url(f.envelope.split(".")[0]))["x5c"][0] for f in fw]
        stage("kit certificate, new: DER, CA signature (Ed25519), names", lambda i: verifier[i]._leaf(x5c[i]), idx)
        certs = [x509.load_der_x509_certificate(base64.b64decode(x)) for x in x5c]
        stage("  of which the CA signature (Ed25519)",
              lambda i: certs[i].verify_directly_issued_by(verifier[i].ca_certs[0]), idx)
        stage("  of which reading its names (subject, SAN)", signer_of, certs)
        stage("kit result, certificate new (all but the content checks)",
              lambda i: verify_result(verifier[i], fw[i].envelope, arrived=arrived[i]), idx)
        verified = stage("kit result, certificate cached", lambda i: verify_result(
            verifier[i], fw[i].envelope, arrived=arrived[i]), idx)
        keys = [c.public_key() for c in certs]
        signed = [(f.envelope.rsplit(".", 1)[0].encode(), unb64url(f.envelope.rsplit(".", 1)[1])) for f in fw]
        stage("  of which the kit's signature (Ed25519)", lambda i: keys[i].verify(signed[i][1], signed[i][0]), idx)
        stage("  of which its payload: strict JSON", lambda f: strict_json(unb64url(f.envelope.split(".")[1])), fw)
        stage("  of which its payload: schema", lambda v: parse_result(v[0]), verified)
        tps = checker.tps
        stage("content: template arithmetic, registered voters", lambda v: check_result_content(
            v[1], checker.templates.get(v[1].template_id), tps[v[1].tps].registered_voters), verified)

    for _ in range(args.rounds):
        one_pass()

    print(f"{n} forwarded messages from {args.work}; CPU per message, median of {args.rounds} passes")
    print("| step | us per message |")
    print("|---|---|")
    for label, values in results.items():
        print(f"| {label} | {sorted(values)[len(values) // 2]:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
