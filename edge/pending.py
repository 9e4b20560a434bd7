"""The reading that waits for the officer: corrections, the status they imply, and its file on disk.

A reading waiting for Confirm survives a restart (the photo and the reading are written before the kit
shows "confirm"), and a reading that was already signed when the kit died is recognised by its photo's
SHA-256 in the outbox, so a restart never signs the same sheet twice.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpskit.envelope import sha256_hex
from tpskit.files import write_atomic
from tpskit.forms import Template

#: Field statuses that may travel in an `ok` result.
GOOD = ("ok", "resolved_by_checks", "corrected")


class CorrectionError(ValueError):
    """A correction the kit refuses; the message is for the officer or the touch page."""


def field_limit(template: Template, name: str, registered_voters: int | None) -> int:
    return template.field_map[name].upper_bound(registered_voters)


def recheck(reading: dict[str, Any], template: Template) -> dict[str, Any]:
    """Re-run the template's checks over the current values and set the form status accordingly: `ok` only
    when every field is ok/resolved/corrected with a value and every check passes; otherwise `review`."""
    fields = reading["fields"]
    values = {n: f.get("value") for n, f in fields.items()}
    checks = []
    for ch in template.checks:
        complete = all(values.get(n) is not None for n in ch.fields)
        checks.append({"id": ch.id, "passed": bool(complete and ch.holds(values))})  # type: ignore[arg-type]
    reading["checks"] = checks
    all_good = all(f.get("status") in GOOD and f.get("value") is not None for f in fields.values())
    reading["status"] = "ok" if all_good and all(c["passed"] for c in checks) else "review"
    return reading


def apply_correction(reading: dict[str, Any], template: Template, name: str, value: int,
                     registered_voters: int | None = None) -> dict[str, Any]:
    """The officer's value for one field: status `corrected`, the OCR original kept, the checks re-run."""
    if name not in template.field_map or name not in reading.get("fields", {}):
        raise CorrectionError(f"no field {name!r} on form {template.id}; fields: "
                              f"{', '.join(f.name for f in template.fields)}")
    limit = field_limit(template, name, registered_voters)
    if not 0 <= value <= limit:
        raise CorrectionError(f"{name} must be a whole number from 0 to {limit}")
    out = copy.deepcopy(reading)
    f = out["fields"][name]
    if f.get("status") != "corrected":
        f["ocr_value"] = f.get("value")  # what the reader offered the officer, kept in the envelope
    f["value"] = int(value)
    f["status"] = "corrected"
    return recheck(out, template)


def needs_review(reading: dict[str, Any]) -> list[str]:
    return [n for n, f in reading.get("fields", {}).items() if f.get("status") not in GOOD]


@dataclass
class Pending:
    """A reading awaiting the officer, with its evidence photo and capture time."""

    reading: dict[str, Any]
    photo: bytes
    captured_at: dt.datetime

    @property
    def photo_sha256(self) -> str:
        return sha256_hex(self.photo)


class PendingStore:
    """`pending.jpg` + `pending.json` in the data folder, each replaced atomically, JSON last."""

    def __init__(self, data_dir: Path) -> None:
        self.json_path = Path(data_dir) / "pending.json"
        self.photo_path = Path(data_dir) / "pending.jpg"

    def save(self, p: Pending) -> None:
        write_atomic(self.photo_path, p.photo, durable=True)
        write_atomic(self.json_path, json.dumps({"reading": p.reading, "captured_at": p.captured_at.isoformat(),
                                                "photo_sha256": p.photo_sha256}), durable=True)

    def load(self) -> Pending | None:
        try:
            meta = json.loads(self.json_path.read_text())
            photo = self.photo_path.read_bytes()
        except (OSError, ValueError):
            return None
        # A file of the wrong shape (disk corruption, a hand edit) must not stop the daemon from starting:
        # the sheet is simply photographed again.
        if not isinstance(meta, dict) or sha256_hex(photo) != meta.get("photo_sha256"):
            return None  # torn write: the photo belongs to a newer capture whose reading never got saved
        reading, captured = meta.get("reading"), meta.get("captured_at")
        if not (isinstance(reading, dict) and isinstance(reading.get("fields"), dict)
                and all(isinstance(f, dict) for f in reading["fields"].values()) and isinstance(captured, str)):
            return None
        try:
            return Pending(reading, photo, dt.datetime.fromisoformat(captured))
        except ValueError:
            return None

    def clear(self) -> None:
        for p in (self.json_path, self.photo_path):
            p.unlink(missing_ok=True)
