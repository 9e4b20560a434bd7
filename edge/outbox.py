"""The kit's store-and-forward outbox: SQLite in WAL mode with synchronous=FULL.

A result is signed and written here, evidence photo included, in one transaction before any network
I/O. States: queued -> sent (the broker's PUBACK arrived) -> acknowledged (the district's signed ack
arrived and checked out) or rejected (the district's signed refusal). Rows are never deleted: the
signed envelope and the district's ack stay together as the officer's receipt.

The per-kit sequence number is allocated inside the same transaction as the insert, so a crash can
never sign two results with one number or skip a number that was used.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

State = Literal["queued", "sent", "acknowledged", "rejected"]
PENDING: tuple[State, ...] = ("queued", "sent")

# The outbox's schema, step by step: a file at `PRAGMA user_version` N has had steps 1..N. Step 1 is the
# schema of the release before versions (IF NOT EXISTS: its files have the tables and user_version 0).
# A change is a new step at the end, never an edit of one that shipped; tests/test_outbox_versions.py
# upgrades the previous release's file through every step.
STEPS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE IF NOT EXISTS outbox (
            seq INTEGER PRIMARY KEY,
            submission_id TEXT NOT NULL UNIQUE,
            tps TEXT NOT NULL,
            envelope TEXT NOT NULL,
            envelope_sha256 TEXT NOT NULL,
            evidence BLOB NOT NULL,
            evidence_sha256 TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'acknowledged', 'rejected')),
            created_at REAL NOT NULL,
            sent_at REAL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            ack_status TEXT,
            ack_reason TEXT,
            receipt TEXT,
            acked_at REAL
        )""",
        "CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, seq)",
        "CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    ),
)


class OutboxError(Exception):
    """The outbox file cannot be used by this release."""


class OutboxTooNew(OutboxError):
    """Written by a later release: its schema version is above every step this release knows."""


def _too_new(path: Path, version: int) -> OutboxTooNew:
    return OutboxTooNew(
        f"the outbox {path} was written by a newer tpskit (outbox version {version}; this one knows up to "
        f"{len(STEPS)}). Nothing was changed and no result is lost. Fix: install that release or a later one "
        "again; do not delete or move the file, it holds the signed results not yet acknowledged")


def newer_outbox(path: Path) -> OutboxTooNew | None:
    """The refusal, when the file at `path` is newer than this release; read only (ExecStartPre checks it)."""
    if not path.exists():
        return None
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.DatabaseError:
        return None  # not for this check to judge: opening the outbox reports it
    finally:
        con.close()
    return _too_new(path, version) if version > len(STEPS) else None


def upgrade(db: sqlite3.Connection, path: Path) -> tuple[int, int]:
    """Run the steps the file has not had, all in one transaction; (version before, after). `db` in
    autocommit mode (isolation_level=None). Raises OutboxTooNew, changing nothing, on a newer file."""
    target = len(STEPS)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > target:  # read before anything writes, WAL mode included
        raise _too_new(path, version)
    if version == target:
        return version, target
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]  # again, under the write lock
        if version > target:
            raise _too_new(path, version)
        for step in STEPS[version:]:
            for sql in step:
                db.execute(sql)
        db.execute(f"PRAGMA user_version = {target}")  # part of the transaction
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    return version, target


@dataclass(frozen=True)
class Signed:
    """What the signer hands to the outbox for one sequence number."""

    submission_id: str
    tps: str
    envelope: str
    envelope_sha256: str
    evidence: bytes
    evidence_sha256: str


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    submission_id: str
    tps: str
    envelope: str
    envelope_sha256: str
    evidence: bytes
    evidence_sha256: str
    state: State
    created_at: float
    sent_at: float | None
    attempts: int
    next_attempt_at: float
    last_error: str | None
    ack_status: str | None
    ack_reason: str | None
    receipt: str | None
    acked_at: float | None


_COLS = ", ".join(OutboxRow.__dataclass_fields__)


class Outbox:
    """Thread-safe: one connection, one lock (the delivery thread and the MQTT thread share it). Opening
    upgrades an older file (see STEPS) and refuses a newer one with OutboxTooNew."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            #: (schema version the file had, the version it has now): they differ after an upgrade.
            self.upgraded = upgrade(self._db, self.path)
        except BaseException:
            self._db.close()
            raise
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, sign: Callable[[int], Signed]) -> OutboxRow:
        """Allocate the next sequence number, sign with it, store; all in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT value FROM meta WHERE name = 'last_seq'").fetchone()
                seq = (row[0] if row else 0) + 1
                s = sign(seq)
                self._db.execute(
                    "INSERT INTO outbox (seq, submission_id, tps, envelope, envelope_sha256, evidence, "
                    "evidence_sha256, state, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (seq, s.submission_id, s.tps, s.envelope, s.envelope_sha256, s.evidence, s.evidence_sha256,
                     time.time()))
                self._db.execute("INSERT INTO meta (name, value) VALUES ('last_seq', ?) "
                                 "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (seq,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        got = self.get(s.submission_id)
        assert got is not None
        return got

    def _one(self, sql: str, args: tuple = ()) -> OutboxRow | None:
        with self._lock:
            r = self._db.execute(f"SELECT {_COLS} FROM outbox {sql}", args).fetchone()
        return OutboxRow(*r) if r else None

    def get(self, submission_id: str) -> OutboxRow | None:
        return self._one("WHERE submission_id = ?", (submission_id,))

    def next_pending(self) -> OutboxRow | None:
        """The oldest result not yet answered by the district (results go out in sequence order)."""
        return self._one("WHERE state IN ('queued', 'sent') ORDER BY seq LIMIT 1")

    def rows(self, state: State | None = None) -> list[OutboxRow]:
        with self._lock:
            if state is None:
                rs = self._db.execute(f"SELECT {_COLS} FROM outbox ORDER BY seq").fetchall()
            else:
                rs = self._db.execute(f"SELECT {_COLS} FROM outbox WHERE state = ? ORDER BY seq", (state,)).fetchall()
        return [OutboxRow(*r) for r in rs]

    def summary(self, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` rows, newest first, without the envelope and the photo (for the review page)."""
        cols = ("seq", "submission_id", "tps", "state", "created_at", "sent_at", "attempts", "last_error",
                "ack_status", "ack_reason", "receipt", "acked_at")
        with self._lock:
            rs = self._db.execute(f"SELECT {', '.join(cols)} FROM outbox ORDER BY seq DESC LIMIT ?",
                                  (limit,)).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rs]

    def counts(self) -> dict[str, int]:
        with self._lock:
            rs = self._db.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall()
        out = dict.fromkeys(("queued", "sent", "acknowledged", "rejected"), 0)
        out.update({s: n for s, n in rs})
        return out

    def mark_sent(self, submission_id: str) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1, "
                             "last_error = NULL WHERE submission_id = ? AND state IN ('queued', 'sent')",
                             (time.time(), submission_id))

    def record_failure(self, submission_id: str, error: str, next_attempt_at: float) -> None:
        with self._lock:
            self._db.execute("UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? "
                             "WHERE submission_id = ?", (error, next_attempt_at, submission_id))

    def mark_answered(self, submission_id: str, ack_status: str, reason: str | None, receipt: str) -> bool:
        """Store the district's signed answer. Returns False when the row already had one."""
        state = "rejected" if ack_status == "rejected" else "acknowledged"
        with self._lock:
            cur = self._db.execute(
                "UPDATE outbox SET state = ?, ack_status = ?, ack_reason = ?, receipt = ?, acked_at = ? "
                "WHERE submission_id = ? AND state IN ('queued', 'sent')",
                (state, ack_status, reason, receipt, time.time(), submission_id))
            return cur.rowcount == 1
