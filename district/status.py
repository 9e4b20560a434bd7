"""What the district knows, per TPS, for the dashboard and `tpskit district status|refusals`.

One `Snapshot` is read from the database (the current result of every TPS and form template by the
tally's rule, tally.successors; the signed payloads of the current results only; the refusals) and shared
by every page, download and command until the database changes (`change_token`); the dashboard's
`SnapshotReader` then reads only what is new.

A TPS's status, for one form template, the first that applies:
- `revoked`: its current result was signed by a kit whose certificate has since been revoked (a result
  that reached the district before the revocation stays valid, and is shown as such);
- `slip`: the current result reports a failing check that the officer marked as the sheet's own arithmetic
  (`officer_slip`): as the officers wrote it, it does not add up;
- `review`: the current result has a field nobody could read or confirm, or a failing check nobody marked
  as written (a result signed by an older kit); counted as reported, not summed;
- `corrected`: reported ok, with fields the officer corrected (OCR value -> final value);
- `ok`: reported ok;
- `refused`: nothing accepted, and the district refused at least one message for this TPS;
- `not_reported`: nothing arrived.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from tpskit.district.db import rejections, results
from tpskit.envelope import Revocations, load_revocations
from tpskit.tally import Stored, Tally, received_iso, successors, tally_of
from tpskit.trust.tps import TpsInfo

#: Status -> (English, Bahasa Indonesia), in the order the dashboard lists them.
STATUS_WORDS: dict[str, tuple[str, str]] = {
    "ok": ("reported ok", "terlapor, sesuai"),
    "corrected": ("reported, with officer corrections", "terlapor, dengan koreksi petugas"),
    "slip": ("officer slip flagged: the sheet's arithmetic does not add up as written",
             "kesalahan hitung petugas ditandai"),
    "review": ("reported, in review (a field not confirmed)", "terlapor, perlu diperiksa"),
    "revoked": ("reported by a kit revoked since", "dilaporkan oleh kit yang sudah dicabut"),
    "refused": ("refused (nothing accepted yet)", "ditolak"),
    "not_reported": ("not yet reported", "belum terlapor"),
}
STATUSES = tuple(STATUS_WORDS)
#: Status -> a column heading.
STATUS_SHORT = {"ok": "ok", "corrected": "corrected", "slip": "officer slip", "review": "in review",
                "revoked": "revoked kit", "refused": "refused", "not_reported": "not reported"}

#: A refusal's reason code, in words an operator reads.
REASON_WORDS: dict[str, str] = {
    "bad_signature": "the signature does not match the content (altered on the way, or forged)",
    "untrusted_certificate": "signed by a certificate this district did not issue",
    "certificate_expired": "the kit's certificate was not valid at the capture time or at arrival",
    "clock_ahead": "captured more than an hour after it arrived: the kit's clock is ahead",
    "revoked": "signed by a revoked kit",
    "wrong_role": "signed by a certificate that is not a kit's",
    "malformed": "not a well-formed result message",
    "schema": "a value outside what a result may carry",
    "kit_mismatch": "the result names another kit than the one that signed it",
    "tps_mismatch": "the result is for another TPS than the kit's or the topic's",
    "unknown_tps": "a TPS not in this district's list",
    "unknown_template": "a form template this district does not have",
    "checks_failed": "the numbers fail the form's checks although the result says they pass",
    "over_registered_voters": "more votes than the TPS has registered voters",
    "evidence_too_large": "the announced photo is larger than this district accepts",
    "too_large": "the message is larger than a result or photo may be",
    "submission_conflict": "a submission id already used for other content",
    "replay": "an old sequence number: a replayed or out-of-order result",
    "evidence_unannounced": "a photo no verified result announced",
    "evidence_mismatch": "a photo other than the one the signed result announced",
    "storage_failed": "passed every check but could not be stored (a defect)",
}

# Fields statuses in a signed result (tpskit.envelope.FieldEntry).
_CORRECTED = "corrected"


def reason_words(reason: str) -> str:
    return REASON_WORDS.get(reason, reason.replace("_", " "))


def change_token(engine: Engine, revocations: Path | None = None) -> tuple[Any, ...]:
    """Cheap: changes whenever a result or a refusal is stored or the revocation list changes (results and
    refusals are only ever inserted)."""
    with engine.connect() as conn:
        n_results = conn.execute(select(func.count()).select_from(results)).scalar_one()
        last_refusal = conn.execute(select(func.max(rejections.c.id))).scalar_one()
    mtime = None
    if revocations is not None:
        try:
            mtime = revocations.stat().st_mtime_ns
        except OSError:
            mtime = None
    return (n_results, last_refusal, mtime)


def signed_payload(envelope: str) -> dict[str, Any]:
    """The payload of a compact JWS the district verified before storing it (not verified again here)."""
    part = envelope.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


@dataclass(frozen=True)
class Correction:
    field: str
    ocr_value: int | None
    value: int | None


@dataclass(frozen=True)
class Current:
    """The result that counts for a (TPS, template), with what the dashboard says about it."""

    stored: Stored
    status: str  # ok | corrected | slip | review | revoked
    cert_serial: str
    failing_checks: tuple[str, ...]
    corrections: tuple[Correction, ...]
    submissions: int  # how many results this TPS sent for the template (the earlier ones superseded)


@dataclass(frozen=True)
class Refusal:
    id: int
    received_at: str
    tps: str | None
    kit_id: str | None
    submission_id: str | None
    reason: str
    detail: str

    @property
    def words(self) -> str:
        return reason_words(self.reason)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "received_at": self.received_at, "tps": self.tps, "kit": self.kit_id,
                "submission_id": self.submission_id, "reason": self.reason, "reason_words": self.words,
                "detail": self.detail}


@dataclass(frozen=True)
class TpsRow:
    """One line of the status table."""

    info: TpsInfo
    status: str
    current: Current | None
    refusals: int
    last_refusal: Refusal | None

    def to_json(self) -> dict[str, Any]:
        c = self.current
        return {"tps": self.info.tps, "village": self.info.village, "kecamatan": self.info.kecamatan,
                "regency": self.info.regency, "status": self.status, "status_words": STATUS_WORDS[self.status][0],
                "submission_id": c.stored.submission_id if c else None, "kit": c.stored.kit_id if c else None,
                "received_at": c.stored.received_at if c else None, "submissions": c.submissions if c else 0,
                "corrections": len(c.corrections) if c else 0,
                "failing_checks": list(c.failing_checks) if c else [], "refusals": self.refusals,
                "last_refusal_reason": self.last_refusal.reason if self.last_refusal else None,
                "last_refusal_words": self.last_refusal.words if self.last_refusal else None}


@dataclass(frozen=True)
class AreaCount:
    level: str  # village | kecamatan
    code: str
    name: str
    parent: str  # the kecamatan's name for a village, the regency's for a kecamatan
    tps_total: int
    counts: dict[str, int]

    def to_json(self) -> dict[str, Any]:
        return {"level": self.level, "code": self.code, "name": self.name, "parent": self.parent,
                "tps_total": self.tps_total, **{s: self.counts.get(s, 0) for s in STATUSES}}


@dataclass
class Snapshot:
    """Everything the dashboard shows, read at one moment."""

    token: tuple[Any, ...]
    tps: dict[str, TpsInfo]
    templates: list[str]  # form templates with results, the most reported first
    current: dict[str, dict[str, Current]]  # template -> TPS -> current result
    refusals: list[Refusal]  # newest first
    read_at: str = ""
    _tallies: list[Tally] | None = field(default=None, repr=False)
    _rows: dict[Any, list[Any]] = field(default_factory=dict, repr=False)  # rows and areas by template, drawn once

    @property
    def default_template(self) -> str | None:
        return self.templates[0] if self.templates else None

    def rows(self, template: str | None = None) -> list[TpsRow]:
        template = template or self.default_template
        if template not in self._rows:
            self._rows[template] = self._draw_rows(template)
        return self._rows[template]

    def _draw_rows(self, template: str | None) -> list[TpsRow]:
        per = self.current.get(template or "", {})
        refused: dict[str, list[Refusal]] = defaultdict(list)
        for r in self.refusals:
            if r.tps:
                refused[r.tps].append(r)
        out = []
        for code in sorted(self.tps):
            cur = per.get(code)
            mine = refused.get(code, [])
            status = cur.status if cur else ("refused" if mine else "not_reported")
            out.append(TpsRow(self.tps[code], status, cur, len(mine), mine[0] if mine else None))
        return out

    def areas(self, template: str | None = None) -> list[AreaCount]:
        """Status counts per kecamatan, and per village under it."""
        key = ("areas", template or self.default_template)
        if key not in self._rows:
            self._rows[key] = self._draw_areas(template)  # type: ignore[index, assignment]
        return self._rows[key]  # type: ignore[index, return-value]

    def _draw_areas(self, template: str | None) -> list[AreaCount]:
        acc: dict[tuple[str, str], tuple[str, str, Counter[str], list[int]]] = {}
        for row in self.rows(template):
            i = row.info
            for level, code, name, parent in (("kecamatan", i.tps[:6], i.kecamatan, i.regency),
                                              ("village", i.tps[:10], i.village, i.kecamatan)):
                entry = acc.setdefault((level, code), (name, parent, Counter(), [0]))
                entry[2][row.status] += 1
                entry[3][0] += 1
        order = sorted(acc, key=lambda k: (k[1][:6], k[0] != "kecamatan", k[1]))
        return [AreaCount(level, code, acc[(level, code)][0], acc[(level, code)][1], acc[(level, code)][3][0],
                          dict(acc[(level, code)][2])) for level, code in order]

    def counts(self, template: str | None = None) -> dict[str, int]:
        c = Counter(r.status for r in self.rows(template))
        return {s: c.get(s, 0) for s in STATUSES}

    def tallies(self) -> list[Tally]:
        if self._tallies is None:
            flat = {(code, t): cur.stored for t, per in self.current.items() for code, cur in per.items()}
            self._tallies = tally_of(flat, self.tps)
        return self._tallies


def _revocations(path: Path | None) -> Revocations:
    if path is None or not Path(path).exists():
        return Revocations()
    try:
        return load_revocations(path)
    except ValueError:
        return Revocations()  # the service refuses to run on a broken list; the dashboard shows none


def _is_revoked(rev: Revocations, kit: str, serial: str) -> bool:
    try:
        return int(serial) in rev.by_serial or kit in rev.by_name
    except ValueError:
        return kit in rev.by_name


def refusal_tps(topic: str) -> str | None:
    parts = topic.split("/")
    return parts[1] if len(parts) >= 3 and parts[0] == "tps" else None


#: Rows stamped this long before the newest one known are read again at each change: a batch's arrival time
#: is taken before its commit, and several service processes commit in their own order.
SLACK_S = 300.0


@dataclass(frozen=True)
class _Signed:
    """What the dashboard keeps of a current result's signed payload (rows never change: kept by id)."""

    values: dict[str, int | None]
    cert_serial: str
    failing: tuple[str, ...]
    corrections: tuple[Correction, ...]
    payload_status: str
    officer_slip: bool


class SnapshotReader:
    """Reads snapshots, each change only what is new: the results stamped since the newest known (less
    SLACK_S), the refusals after the last id, the signed payloads of new current results. Results and
    refusals are only ever inserted; when the rows known do not add up to the table's count (a commit later
    than SLACK_S after its stamp), everything is read again."""

    _COLS = (results.c.submission_id, results.c.kit_id, results.c.tps, results.c.template_id, results.c.status,
             results.c.seq, results.c.received_at)

    def __init__(self, engine: Engine, tps: Mapping[str, TpsInfo], revocations: Path | None = None,
                 refusals_max: int = 10_000):
        self.engine, self.tps, self.revocations, self.refusals_max = engine, dict(tps), revocations, refusals_max
        self._reset()
        self.snap: Snapshot | None = None
        self.full_reads = 0

    def _reset(self) -> None:
        self._items: dict[str, Stored] = {}
        self._newest: float | None = None
        self._current: dict[tuple[str, str], Stored] = {}
        self._counts: Counter[tuple[str, str]] = Counter()
        self._signed: dict[str, _Signed] = {}
        self._refusals: list[Refusal] = []
        self._last_refusal = 0

    def read(self) -> Snapshot:
        """The snapshot as of now (the same object while nothing changed)."""
        token = change_token(self.engine, self.revocations)
        if self.snap is not None and token == self.snap.token:
            return self.snap
        with self.engine.connect() as conn:
            for attempt in range(3):
                if attempt == 2:
                    self._reset()
                    self.full_reads += 1
                if self._merge_results(conn):
                    break
            self._merge_refusals(conn)
            wanted = [s.submission_id for s in self._current.values() if s.submission_id not in self._signed]
            for i in range(0, len(wanted), 500):
                for r in conn.execute(select(results.c.submission_id, results.c.envelope, results.c.values_json,
                                             results.c.cert_serial)
                                      .where(results.c.submission_id.in_(wanted[i:i + 500]))):
                    payload = signed_payload(r.envelope)
                    fields = payload.get("fields", {})
                    self._signed[r[0]] = _Signed(
                        json.loads(r.values_json), r.cert_serial,
                        tuple(c["id"] for c in payload.get("checks", []) if not c.get("passed", True)),
                        tuple(Correction(n, f.get("ocr_value"), f.get("value")) for n, f in fields.items()
                              if f.get("status") == _CORRECTED),
                        str(payload.get("status")), payload.get("officer_slip") is True)
        rev = _revocations(self.revocations)
        current: dict[str, dict[str, Current]] = defaultdict(dict)
        for key, s in self._current.items():
            info = self._signed[s.submission_id]
            stored = Stored(s.submission_id, s.kit_id, s.tps, s.template_id, s.status, s.seq, s.received_at,
                            info.values)
            current[s.template_id][s.tps] = Current(
                stored, _status(info.failing, info.officer_slip, info.corrections, info.payload_status,
                                _is_revoked(rev, s.kit_id, info.cert_serial)),
                info.cert_serial, info.failing, info.corrections, self._counts[key])
        templates = sorted(current, key=lambda t: (-len(current[t]), t))
        self.snap = Snapshot(token, self.tps, templates, dict(current), list(self._refusals),
                             received_iso(dt.datetime.now(dt.UTC).timestamp()))
        return self.snap

    def _merge_results(self, conn: Any) -> bool:
        query = select(*self._COLS)
        if self._newest is not None:
            query = query.where(results.c.received_at >= self._newest - SLACK_S)
        for r in conn.execute(query):
            if r[0] in self._items:
                continue
            s = Stored(r[0], r[1], r[2], r[3], r[4], int(r[5]), received_iso(r[6]), {})
            self._items[s.submission_id] = s
            self._newest = r[6] if self._newest is None else max(self._newest, r[6])
            key = (s.tps, s.template_id)
            self._counts[key] += 1
            cur = self._current.get(key)
            if cur is None or s.order > cur.order:  # the rule (tally.successors): the latest received counts
                self._current[key] = s
        # Every row read is in the table; as many as the table holds means none was missed.
        total = conn.execute(select(func.count()).select_from(results)).scalar_one()
        return total == len(self._items)

    def _merge_refusals(self, conn: Any) -> None:
        rows = conn.execute(select(rejections).where(rejections.c.id > self._last_refusal)
                            .order_by(rejections.c.id.desc()).limit(self.refusals_max)).all()
        if rows:
            self._last_refusal = rows[0].id
            new = [Refusal(r.id, received_iso(r.received_at), refusal_tps(r.topic), r.kit_id, r.submission_id,
                           r.reason, r.detail) for r in rows]
            self._refusals = (new + self._refusals)[:self.refusals_max]


def _status(failing: tuple[str, ...], officer_slip: bool, corrections: tuple[Correction, ...],
            payload_status: str, revoked: bool) -> str:
    if revoked:
        return "revoked"
    if failing and officer_slip:
        return "slip"
    if payload_status == "review":
        return "review"
    return "corrected" if corrections else "ok"


def read_snapshot(engine: Engine, tps: Mapping[str, TpsInfo], revocations: Path | None = None,
                  refusals_max: int = 10_000) -> Snapshot:
    """What the dashboard shows, read once (the dashboard keeps a SnapshotReader and reads only what is new)."""
    return SnapshotReader(engine, tps, revocations, refusals_max).read()


@dataclass(frozen=True)
class HistoryItem:
    stored: Stored
    cert_serial: str
    superseded_by: str | None
    payload: dict[str, Any]
    evidence_sha256: str
    has_photo: bool


def tps_history(engine: Engine, tps: str) -> list[HistoryItem]:
    """Every accepted result of a TPS, oldest first, each marked current or superseded (by which)."""
    from tpskit.district.db import evidence

    with engine.connect() as conn:
        rows = conn.execute(select(results).where(results.c.tps == tps)).all()
        photos = {r[0] for r in conn.execute(select(evidence.c.submission_id).where(evidence.c.tps == tps))}
    items = [Stored(r.submission_id, r.kit_id, r.tps, r.template_id, r.status, int(r.seq),
                    received_iso(r.received_at), json.loads(r.values_json), r.envelope) for r in rows]
    nxt = successors(items)
    by_id = {r.submission_id: r for r in rows}
    items.sort(key=lambda s: s.order)
    return [HistoryItem(s, by_id[s.submission_id].cert_serial, nxt[s.submission_id], signed_payload(s.envelope),
                        by_id[s.submission_id].evidence_sha256, s.submission_id in photos) for s in items]


def filter_rows(rows: Iterable[TpsRow], *, status: str | None = None, kecamatan: str | None = None,
                village: str | None = None, q: str | None = None) -> list[TpsRow]:
    """`kecamatan` / `village`: a code prefix or the exact name; `q`: part of a TPS code or area name."""
    out = []
    ql = (q or "").strip().lower()
    for r in rows:
        i = r.info
        if status and r.status != status:
            continue
        if kecamatan and not (i.tps[:6] == kecamatan or i.kecamatan == kecamatan):
            continue
        if village and not (i.tps[:10] == village or i.village == village):
            continue
        if ql and ql not in i.tps and ql not in i.village.lower() and ql not in i.kecamatan.lower():
            continue
        out.append(r)
    return out


def to_csv(rows: list[dict[str, Any]]) -> str:
    """A table (list of flat dicts, same keys) as CSV text; lists joined with spaces."""
    import csv
    import io

    out = io.StringIO()
    if not rows:
        return ""
    w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in r.items()})
    return out.getvalue()


def render_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Aligned columns for a person at a terminal."""
    if not rows:
        return "(none)\n"
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(columns, *cells, strict=False)]
    return "".join("  ".join(x.ljust(w) for x, w in zip(line, widths, strict=False)).rstrip() + "\n"
                   for line in [columns, *cells])
