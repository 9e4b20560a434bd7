"""The national database's schema version: the Alembic revisions in tpskit/national/migrations own it, as the
district's own (tpskit.district.schema) do.

`upgrade` brings a database to the newest revision this release knows, in one transaction under an advisory
lock, so workers starting together may all call it. An empty database is built by the revisions; one made by
the release before versions (its create_all: the tables, no alembic_version) is stamped at the baseline
first. A database at a revision this release does not know was upgraded by a later release: refused,
untouched.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection

from tpskit.national import migrations
from tpskit.schema_versions import UNVERSIONED, SchemaError, apply, current_of, head_of, refuse_unknown

__all__ = ["BASELINE", "MIGRATIONS", "UNVERSIONED", "SchemaError", "current", "head", "upgrade"]

MIGRATIONS = Path(migrations.__file__).resolve().parent
BASELINE = "n0001"  # the schema of the release before versions


def head() -> str:
    """The newest revision this release knows."""
    return head_of(MIGRATIONS)


def current(conn: Connection) -> str | None:
    """The database's revision; UNVERSIONED for one made before versions; None when empty."""
    return current_of(conn, "national_results")


def upgrade(conn: Connection) -> str | None:
    """Bring the database to `head()` inside `conn`'s transaction, which must hold the schema lock (the caller
    takes it: tpskit.national.db). Returns the revision before. Raises SchemaError on a newer database."""
    before = current(conn)
    refuse_unknown(MIGRATIONS, before, "national database", conn.engine.url.render_as_string(hide_password=True))
    apply(conn, MIGRATIONS, BASELINE, before, head())
    return before
