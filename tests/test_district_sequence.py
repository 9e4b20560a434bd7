"""A kit's results out of sequence at the district: an older one that completes (or arrives) after a later
one of the same kit and form is refused as `superseded` and never stored, so it can never become the
current result; a sequence number signed twice is a `replay`; a kit's results for different forms do not
supersede each other. The district's export and `tpskit verify` agree on what is current."""

from __future__ import annotations

import pytest
from conftest import TPS_CODES, fake_jpeg, make_reading

from tpskit.district.config import load_district_config
from tpskit.district.service import build_ingest
from tpskit.district.tally import export_signed
from tpskit.district.verify_cli import recount_export, verify_export
from tpskit.edge.reading import Reading
from tpskit.edge.submit import build_payload
from tpskit.envelope import Verifier, parse_ack, payload_bytes, sha256_hex, sign_compact
from tpskit.forms import load_templates
from tpskit.provisioning.district import bench_kit, district_init
from tpskit.topics import evidence_topic, result_topic
from tpskit.trust.certs import load_certs
from tpskit.trust.keys import load_key
from tpskit.trust.tps import read_tps_csv

KWK = "c-hasil-kwk-4"


def _kwk_reading(tps: str) -> dict:
    """A reading of the KWK form (four candidate pairs) whose numbers pass every check of its template."""
    r = make_reading(tps)
    r["fields"]["paslon_04"] = {"value": 0, "confidence": 0.999, "status": "ok", "boxes": []}
    values = {n: f["value"] for n, f in r["fields"].items()}
    template = next(t for t in load_templates().values() if t.id == KWK)
    return {**r, "template": KWK, "form_code": "KWK",
            "checks": [{"id": ch.id, "passed": ch.holds(values)} for ch in template.checks]}


class _Rig:
    def __init__(self, tmp_path):
        csv = tmp_path / "tps.csv"
        csv.write_text("tps,registered_voters\n" + "".join(f"{t},250\n" for t in TPS_CODES[:2]))
        self.tmp, self.d = tmp_path, district_init(tmp_path / "d", csv, district_id="kab-test")
        self.cfg = load_district_config(self.d.config_path)
        self.ingest = build_ingest(self.cfg)
        self.ca = Verifier(load_certs(self.d.ca_cert_path))

    def signed(self, kit: str, tps: str, seq: int, sid: str, reading: dict | None = None
               ) -> tuple[tuple[str, bytes], tuple[str, bytes]]:
        """(result message, photo message) of one signed result."""
        folder = self.tmp / kit
        if not folder.exists():
            bench_kit(self.d.root, kit, tps, folder)
        key, chain = load_key(folder / "kit.key"), load_certs(folder / "kit.pem")
        photo = fake_jpeg(sid)
        p = build_payload(Reading.from_dict(reading or make_reading(tps)), kit_id=kit, tps=tps, seq=seq,
                          submission_id=sid, evidence_sha256=sha256_hex(photo), evidence_bytes=len(photo))
        result = (result_topic(tps), sign_compact(payload_bytes(p), key, chain).encode())
        return result, (evidence_topic(tps, sid), photo)

    def process(self, *msgs: tuple[str, bytes]) -> list[tuple[str, str, str]]:
        """(submission, status, reason) of every ack the district signs for these messages."""
        acks = [parse_ack(self.ca.verify(a.jws, role="district")) for a in self.ingest.process(list(msgs))]
        return [(a.submission_id, a.status, a.reason or "") for a in acks]

    def export_marks(self) -> tuple[dict[str, str], list[str], list[bool]]:
        """(submission -> state in the district's export, tpskit verify's recount problems, line verdicts)."""
        path = self.tmp / "export.jsonl"
        export_signed(self.ingest.engine, path, district="kab-test", tps=read_tps_csv(self.d.root / "tps.csv"))
        report = verify_export(path.read_text().splitlines(), self.d.ca_cert_path)
        marks = {r.line["submission_id"]: r.line["state"] for r in report.lines if r.line is not None}
        return marks, recount_export(report).problems, [r.ok for r in report.lines]

    def close(self) -> None:
        self.ingest.close()
        self.ingest.engine.dispose()


@pytest.fixture
def rig(tmp_path):
    r = _Rig(tmp_path)
    yield r
    r.close()


def test_an_earlier_result_completing_after_a_later_one_of_its_kit_is_refused_as_superseded_never_current(rig):
    tps = TPS_CODES[0]
    r5, p5 = rig.signed("kit-a", tps, 5, "a-seq-0005")
    r6, p6 = rig.signed("kit-a", tps, 6, "a-seq-0006")
    r4, p4 = rig.signed("kit-a", tps, 4, "a-seq-0004")
    assert rig.process(r5) == []  # verified, waiting for its photo: not answered yet
    assert rig.process(r6, p6) == [("a-seq-0006", "accepted", "")]
    # Sequence 5's photo arrives after sequence 6 was stored: valid, but older than what counts.
    (sid, status, reason), = rig.process(p5)
    assert (sid, status) == ("a-seq-0005", "rejected")
    assert reason.startswith("superseded: ") and "sequence 6" in reason and "(sequence 5)" in reason
    # An older result arriving whole after the later one: the same answer.
    (sid, status, reason), = rig.process(r4, p4)
    assert (sid, status) == ("a-seq-0004", "rejected") and reason.startswith("superseded: ")
    # The photos of refused results are not stored; the kit's later result is the current one.
    marks, problems, verdicts = rig.export_marks()
    assert marks == {"a-seq-0006": "current"} and problems == [] and all(verdicts)
    assert rig.ingest.counts["rejected:superseded"] == 2 and rig.ingest.counts["rejected:replay"] == 0


def test_a_sequence_number_signed_twice_by_a_kit_is_a_replay_not_superseded(rig):
    tps = TPS_CODES[0]
    rig.process(*rig.signed("kit-a", tps, 6, "a-seq-0006"))
    (sid, status, reason), = rig.process(*rig.signed("kit-a", tps, 6, "a-seq-0006-again"))
    assert (sid, status) == ("a-seq-0006-again", "rejected") and reason.startswith("replay: ")
    assert rig.export_marks()[0] == {"a-seq-0006": "current"}


def test_a_result_of_another_form_completing_after_a_later_one_of_its_kit_is_stored_and_current(rig):
    """Supersession is per TPS and form (the export's rule): a kit's PPWP result does not make its older
    KWK result stale, so the KWK result is stored, not refused (before: a `replay`, and the TPS had no
    KWK result at all)."""
    tps = TPS_CODES[1]
    k5, kp5 = rig.signed("kit-b", tps, 5, "b-seq-0005", _kwk_reading(tps))
    r6, p6 = rig.signed("kit-b", tps, 6, "b-seq-0006")
    assert rig.process(k5) == []
    assert rig.process(r6, p6) == [("b-seq-0006", "accepted", "")]
    assert rig.process(kp5) == [("b-seq-0005", "accepted", "")]
    marks, problems, verdicts = rig.export_marks()
    assert marks == {"b-seq-0005": "current", "b-seq-0006": "current"} and problems == [] and all(verdicts)
