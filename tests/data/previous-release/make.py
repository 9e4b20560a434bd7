"""How the previous release's files in this folder were made (run once, at main 021ea96, before the
schemas had versions; kept to document them, not run by the tests):

    .venv/bin/python tests/data/previous-release/make.py

- district.sqlite: the district database as that release's `create_all` made it, filled by its own
  ingest (no broker): three accepted results with their photos, one result still waiting for its photo
  (pending), and two refusals (a result on another TPS's topic, a malformed message);
- outbox.sqlite: kit-01's outbox as that release's code made it: seq 1 and 2 acknowledged (the district's
  signed acks as receipts), seq 3 sent (the district holds it as pending), seq 4 queued;
- postgresql-schema.sql: the DDL that release's `create_all` ran on PostgreSQL (the tests build the
  previous PostgreSQL database from it and copy district.sqlite's rows in);
- ca.pem: the district CA that signed every certificate in the envelopes and acks (public; no key is kept).

The kits' captured_at and the certificates date from the day this ran: the tests verify the envelopes at
their own signing time.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))  # tests/: make_reading, fake_jpeg

from conftest import fake_jpeg, make_reading  # noqa: E402
from sqlalchemy.dialects import postgresql  # noqa: E402
from sqlalchemy.schema import CreateIndex, CreateTable  # noqa: E402

from tpskit.district.config import load_district_config  # noqa: E402
from tpskit.district.db import metadata  # noqa: E402
from tpskit.district.service import build_ingest  # noqa: E402
from tpskit.edge.config import load_kit_config  # noqa: E402
from tpskit.edge.outbox import Outbox  # noqa: E402
from tpskit.edge.submit import sign_and_queue  # noqa: E402
from tpskit.envelope import Verifier, parse_ack  # noqa: E402
from tpskit.provisioning.district import bench_kit, district_init  # noqa: E402
from tpskit.trust.certs import load_certs  # noqa: E402

TPS = ["3201012001001", "3201012001002"]


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="tpskit-prev-"))
    csv = work / "tps.csv"
    csv.write_text("tps,registered_voters\n" + "".join(f"{t},250\n" for t in TPS))
    d = district_init(work / "district", csv, district_id="kab-prev", broker_host="127.0.0.1", broker_port=8883,
                      bind="127.0.0.1")
    kits = [load_kit_config(bench_kit(d.root, f"kit-{i + 1:02d}", t, work / f"kit-{i + 1:02d}").folder / "kit.toml")
            for i, t in enumerate(TPS)]
    cfg = load_district_config(d.config_path)
    os.chdir(d.root)  # the service runs in its folder: its database URL is relative to it
    ingest = build_ingest(cfg)
    verifier = Verifier(load_certs(cfg.identity.ca))

    def deliver(row, photo: bool = True) -> list[str]:  # type: ignore[no-untyped-def]
        msgs = [(f"tps/{row.tps}/result", row.envelope.encode())]
        if photo:
            msgs.append((f"tps/{row.tps}/evidence/{row.submission_id}", row.evidence))
        return [a.jws for a in ingest.process(msgs)]

    box = Outbox(kits[0].outbox_path)
    rows = [sign_and_queue(kits[0], make_reading(TPS[0], (60 + i, 50, 40)), fake_jpeg(f"kit-01 sheet {i}"),
                           outbox=box) for i in range(4)]
    for row in rows[:2]:
        (ack,) = deliver(row)
        got = parse_ack(verifier.verify(ack, role="district"))
        box.mark_sent(row.submission_id)
        assert box.mark_answered(row.submission_id, got.status, got.reason, ack)
    deliver(rows[2], photo=False)  # the district waits for its photo
    box.mark_sent(rows[2].submission_id)
    box.close()

    other = Outbox(work / "kit-02-outbox.sqlite")
    theirs = sign_and_queue(kits[1], make_reading(TPS[1], (70, 20, 30)), fake_jpeg("kit-02 sheet"), outbox=other)
    other.close()
    deliver(theirs)
    ingest.process([(f"tps/{TPS[1]}/result", rows[0].envelope.encode()),  # kit-01's result on TPS 2's topic
                    (f"tps/{TPS[0]}/result", b"not a signed result")])
    ingest.close()
    ingest.engine.dispose()

    db = Path(cfg.database.url[len("sqlite:///"):])
    if not db.is_absolute():
        db = d.root / db
    for src, name in ((db, "district.sqlite"), (kits[0].outbox_path, "outbox.sqlite")):
        con = sqlite3.connect(src)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        con.close()
        shutil.copyfile(src, HERE / name)
    shutil.copyfile(cfg.identity.ca, HERE / "ca.pem")
    dialect = postgresql.dialect()
    ddl = [str(CreateTable(t).compile(dialect=dialect)).strip() for t in metadata.sorted_tables]
    ddl += [str(CreateIndex(i).compile(dialect=dialect)).strip() for t in metadata.sorted_tables for i in t.indexes]
    (HERE / "postgresql-schema.sql").write_text(";\n\n".join(ddl) + ";\n")
    shutil.rmtree(work)
    print(f"written to {HERE}")


if __name__ == "__main__":
    main()
