"""The national database's schema version: the Alembic revisions in tpskit/national/migrations own it, as the
district's own (tpskit.district.schema) do.

`upgrade` brings a database to the newest revision this release knows, in one transaction under an advisory
lock, so workers starting together may all call it. An empty database is built by the revisions; one made by
the release before versions (its create_all: the tables, no alembic_version) is stamped at the baseline
first. A database at a revision this release does not know was upgraded by a later release: refused,
untouched.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from tpskit.national import migrations

MIGRATIONS = Path(migrations.__file__).resolve().parent
BASELINE = "n0001"  # the schema of the release before versions
UNVERSIONED = "unversioned"  # a database that release made: its tables, no alembic_version


class SchemaError(Exception):
    """The database's schema cannot be used by this release (newer than it knows)."""


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
    if rev is None and inspect(conn).has_table("national_results"):
        return UNVERSIONED
    return rev


def upgrade(conn: Connection) -> str | None:
    """Bring the database to `head()` inside `conn`'s transaction, which must hold the schema lock (the caller
    takes it: tpskit.national.db). Returns the revision before. Raises SchemaError on a newer database."""
    before = current(conn)
    known = {s.revision for s in ScriptDirectory.from_config(_config()).walk_revisions()}
    if before not in (None, UNVERSIONED) and before not in known:
        raise SchemaError(
            f"the national database {conn.engine.url.render_as_string(hide_password=True)} is at schema revision "
            f"{before}, newer than this tpskit knows (its newest is {head()}): a later release upgraded it. Install "
            "that release or a later one; this one leaves the database untouched and does not start.")
    target = head()
    if before != target:
        logging.getLogger("alembic").setLevel(logging.WARNING)
        cfg = _config(conn)
        if before == UNVERSIONED:
            command.stamp(cfg, BASELINE)
        command.upgrade(cfg, target)
    return before
