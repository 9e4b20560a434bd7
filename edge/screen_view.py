"""What the officer's review page shows, as one JSON object made by the daemon's main loop (`view`).

The page (edge/page.py) holds nothing of its own: it draws this object, asks for it again whenever the
daemon says something changed, and sends the officer's actions back as commands. Fields are named by the
labels printed on the sheet (the form template), never by their internal ids alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tpskit.edge.states import STATE_SIGNAL, KitState
from tpskit.envelope import unverified_payload
from tpskit.firmware.controls import SIGNALS

if TYPE_CHECKING:
    from tpskit.edge.daemon import KitDaemon
    from tpskit.edge.reading import Reading
    from tpskit.forms import Template

S = KitState
#: The page's eight states (the officer's words for the daemon's eleven) and their light colour.
PAGE_STATE: dict[KitState, tuple[str, str]] = {
    S.IDLE: ("idle", "green"), S.CAPTURING: ("reading", "amber"), S.READING: ("reading", "amber"),
    S.CONFIRM: ("check", "green"), S.REVIEW: ("review", "amber"), S.SIGNING: ("sending", "amber"),
    S.QUEUED: ("sending", "amber"), S.SENT: ("sending", "amber"), S.ACKNOWLEDGED: ("received", "green"),
    S.REJECTED: ("refused", "red"), S.FAULT: ("fault", "red"),
}
#: The state's name on the page, Bahasa Indonesia and English.
STATE_WORDS: dict[str, tuple[str, str]] = {
    "idle": ("Siap", "Ready"), "reading": ("Membaca", "Reading"), "check": ("Periksa", "Check"),
    "review": ("Tinjau", "Review"), "sending": ("Mengirim", "Sending"), "received": ("Diterima", "Received"),
    "refused": ("Ditolak", "Refused"), "fault": ("Gangguan", "Fault"),
}
#: How many outbox rows the page lists (the newest).
OUTBOX_ROWS = 5


def view(d: KitDaemon) -> dict[str, Any]:
    """Everything the page draws, read on the main loop (so it is one consistent moment of the daemon)."""
    page_state, colour = PAGE_STATE[d.state]
    leds = SIGNALS[STATE_SIGNAL[d.state]].leds
    out: dict[str, Any] = {
        "version": d.changes.n, "state": page_state, "daemon_state": str(d.state), "colour": colour,
        "words": {"id": STATE_WORDS[page_state][0], "en": STATE_WORDS[page_state][1]},
        "lights": {k: getattr(leds, k).value for k in ("green", "amber", "red")} if leds else None,
        "kit": d.cfg.kit.id, "tps": d.cfg.kit.tps,
        "officer": d.message.to_dict() if d.message else None,
        "problems": [{"key": p.key, "message": p.message} for p in d.problems],
        "reading": None, "picture": None,
    }
    pic = d.picture
    if pic is not None and (pic.kind == "refused" or d.pending is not None):
        out["picture"] = {"kind": pic.kind, "url": f"/picture/{id(pic):x}.jpg", "width": pic.width,
                          "height": pic.height}
    if d.pending is not None and d.reader is not None:
        try:
            template = d.reader.template(d.pending.reading.template)
        except StopIteration:
            template = None
        out["reading"] = reading_view(d.pending.reading, template, pic.px_per_mm if pic else None)
    out.update(outbox_view(d))
    return out


def reading_view(r: Reading, t: Template | None, px_per_mm: float | None) -> dict[str, Any]:
    specs = t.field_map if t is not None else {}
    fields = []
    for name, f in r.fields.items():
        spec = specs.get(name)
        box = None
        if spec is not None and spec.boxes and px_per_mm:
            x0, y0 = min(b.x_mm for b in spec.boxes), min(b.y_mm for b in spec.boxes)
            x1, y1 = max(b.x_mm + b.w_mm for b in spec.boxes), max(b.y_mm + b.h_mm for b in spec.boxes)
            box = [round(v * px_per_mm, 1) for v in (x0, y0, x1 - x0, y1 - y0)]
        fields.append({"name": name, "label": spec.label if spec else name, "section": spec.section if spec else "",
                       "value": f.value, "status": f.status, "review": f.status == "review",
                       "ocr_value": f.ocr_value if f.status == "corrected" else None,
                       "confidence": round(f.confidence, 3), "box": box,
                       "max": spec.upper_bound() if spec else None})
    checks = []
    passed = {c.id: c.passed for c in r.checks}
    for ch in t.checks if t is not None else ():
        checks.append({"id": ch.id, "passed": passed.get(ch.id, False), "sum": list(ch.sum), "rhs": list(ch.rhs),
                       "relation": ch.relation,
                       "text": check_text(ch.sum, ch.rhs, ch.relation, specs)})
    return {"template": r.template, "title": t.title if t is not None else r.template, "status": r.status,
            "officer_slip": r.officer_slip, "confirmable": r.confirmable(), "failing": r.failing_checks(),
            "review": r.needs_review(), "fields": fields, "checks": checks,
            "page_mm": [t.page.width_mm, t.page.height_mm] if t is not None else None}


def check_text(left: tuple[str, ...], right: tuple[str, ...], relation: str, specs: dict[str, Any]) -> str:
    """A check in the sheet's words: 'Pasangan calon nomor urut 01 + ... = Jumlah seluruh suara sah'."""
    def names(ns: tuple[str, ...]) -> str:
        return " + ".join(specs[n].label if n in specs else n for n in ns)

    return f"{names(left)} {'=' if relation == 'equals' else '≤'} {names(right)}"


def outbox_view(d: KitDaemon) -> dict[str, Any]:
    """The outbox (queued, sent, acknowledged, refused) and the district's receipt of the newest answered result."""
    if d.outbox is None:
        return {"outbox": None, "receipt": None}
    rows = d.outbox.summary(OUTBOX_ROWS)
    receipt = None
    for row in rows:  # newest first
        if row["state"] in ("acknowledged", "rejected") and row["receipt"]:
            ack = unverified_payload(row["receipt"]) or {}  # verified by the delivery loop when it arrived
            receipt = {"status": ack.get("status"), "reason": row["ack_reason"], "tps": ack.get("tps"),
                       "seq": row["seq"], "received_at": ack.get("received_at"), "district": ack.get("district"),
                       "submission_id": row["submission_id"],
                       "current": row["submission_id"] == d.current_submission}
            break
    for row in rows:
        row.pop("receipt", None)
    return {"outbox": {"counts": d.outbox.counts(), "rows": rows}, "receipt": receipt}
