"""The district database's schema version: the Alembic revisions in tpskit/district/migrations own it.

`upgrade` brings a database to the newest revision this release knows, in one transaction under a lock
(SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so service processes and the reports may open
it together. An empty database is built by the revisions; one made by the release before versions (its
tables, no alembic_version) is stamped at the baseline first. A database at a
revision this release does not know was upgraded by a later release: refused, untouched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

from tpskit.district import migrations

MIGRATIONS = Path(migrations.__file__).resolve().parent
BASELINE = "0001"  # the schema of the release before versions
UNVERSIONED = "unversioned"  # a database that release made: its tables, no alembic_version
_MIGRATION_LOCK = 0x7470_736D  # any constant: the PostgreSQL advisory lock key of upgrades


class SchemaError(Exception):
    """The database's schema cannot be used by this release (newer than it knows)."""


@dataclass(frozen=True)
class Upgrade:
    before: str | None  # None: an empty database; UNVERSIONED: one made before versions
    after: str

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    """The newest revision this release knows."""
    h = ScriptDirectory.from_config(_config()).get_current_head()
    assert h is not None
    return h


def current(conn: Connection) -> str | None:
    """The database's revision; UNVERSIONED for one made before versions; None when empty."""
    rev = MigrationContext.configure(conn).get_current_revision()
    if rev is None and inspect(conn).has_table("results"):
        return UNVERSIONED
    return rev


def _where(engine: Engine) -> str:
    """The database named without its password (messages and logs)."""
    return engine.url.render_as_string(hide_password=True)


def _refuse_unknown(engine: Engine, rev: str | None) -> None:
    script = ScriptDirectory.from_config(_config())
    if rev not in (None, UNVERSIONED) and rev not in {s.revision for s in script.walk_revisions()}:
        raise SchemaError(
            f"the district database {_where(engine)} is at schema revision {rev}, newer than this tpskit knows "
            f"(its newest is {head()}): a later release upgraded it. Install that release or a later one; this one "
            "leaves the database untouched and does not start.")


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
        if before != target:
            logging.getLogger("alembic").setLevel(logging.WARNING)  # our own event says what happened
            cfg = _config(conn)
            if before == UNVERSIONED:
                command.stamp(cfg, BASELINE)
            command.upgrade(cfg, target)
    return Upgrade(before, target)
