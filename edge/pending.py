"""The reading that waits for the officer, with its photo, and its files on disk.

A reading waiting for Confirm survives a restart (the photo and the reading are written before the kit
shows "confirm"), and a reading that was already signed when the kit died is recognised by its photo's
SHA-256 in the outbox, so a restart never signs the same sheet twice.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpskit.edge.reading import Reading
from tpskit.envelope import sha256_hex
from tpskit.files import write_atomic


@dataclass
class Pending:
    """A reading awaiting the officer, with its evidence photo and capture time."""

    reading: Reading
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
        # What the review page shows of the pending capture (the rectified sheet), kept across a restart.
        self.picture_path = Path(data_dir) / "pending-picture.jpg"
        self.picture_meta_path = Path(data_dir) / "pending-picture.json"

    def save(self, p: Pending) -> None:
        write_atomic(self.photo_path, p.photo, durable=True)
        meta = {"reading": p.reading.to_dict(), "captured_at": p.captured_at.isoformat(),
                "photo_sha256": p.photo_sha256}
        write_atomic(self.json_path, json.dumps(meta), durable=True)

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
        captured = meta.get("captured_at")
        try:  # ReadingError and a bad date are both ValueErrors
            return Pending(Reading.from_dict(meta.get("reading")), photo, dt.datetime.fromisoformat(str(captured)))
        except ValueError:
            return None

    def save_picture(self, jpeg: bytes, meta: dict[str, Any]) -> None:
        """Not durable: a picture lost in a crash only leaves the page without the sheet drawn."""
        write_atomic(self.picture_path, jpeg)
        write_atomic(self.picture_meta_path, json.dumps(meta))

    def load_picture(self) -> tuple[bytes, dict[str, Any]] | None:
        try:
            meta = json.loads(self.picture_meta_path.read_text())
            return self.picture_path.read_bytes(), meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            return None

    def clear(self) -> None:
        for p in (self.json_path, self.photo_path, self.picture_path, self.picture_meta_path):
            p.unlink(missing_ok=True)
