"""The district database's schema version: the Alembic revisions in tpskit/district/migrations own it.

`upgrade` brings a database to the newest revision this release knows, in one transaction under a lock
(SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so service processes and the reports may open
it together. An empty database is built by the revisions; one made by the release before versions (its
tables, no alembic_version) is stamped at the baseline first. A database at a
revision this release does not know was upgraded by a later release: refused, untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine

from tpskit.district import migrations
from tpskit.schema_versions import UNVERSIONED, SchemaError, apply, current_of, head_of, refuse_unknown

__all__ = ["BASELINE", "MIGRATIONS", "UNVERSIONED", "SchemaError", "Upgrade", "current", "head", "refuse_newer",
           "upgrade"]

MIGRATIONS = Path(migrations.__file__).resolve().parent
BASELINE = "0001"  # the schema of the release before versions
_MIGRATION_LOCK = 0x7470_736D  # any constant: the PostgreSQL advisory lock key of upgrades


@dataclass(frozen=True)
class Upgrade:
    before: str | None  # None: an empty database; UNVERSIONED: one made before versions
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def head() -> str:
    """The newest revision this release knows."""
    return head_of(MIGRATIONS)


def current(conn: Connection) -> str | None:
    """The database's revision; UNVERSIONED for one made before versions; None when empty."""
    return current_of(conn, "results")


def _refuse_unknown(engine: Engine, rev: str | None) -> None:
    refuse_unknown(MIGRATIONS, rev, "district database", engine.url.render_as_string(hide_password=True))


def refuse_newer(engine: Engine) -> str | None:
    """The database's revision (see `current`), read only; SchemaError when this release does not know it."""
    with engine.connect() as conn:
        rev = current(conn)
    _refuse_unknown(engine, rev)
    return rev


def upgrade(engine: Engine) -> Upgrade:
    """Bring the database to `head()`; a no-op when it is there. `engine` must begin its transactions with
    the write lock on SQLite (open_db's writer engine). Raises SchemaError on a newer database."""
    with engine.connect() as conn:
        before = current(conn)
    _refuse_unknown(engine, before)
    target = head()
    if before == target:
        return Upgrade(before, target)
    with engine.begin() as conn:  # the write lock: whoever comes second sees the first one's work
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        before = current(conn)
        _refuse_unknown(engine, before)
        apply(conn, MIGRATIONS, BASELINE, before, target)
    return Upgrade(before, target)
