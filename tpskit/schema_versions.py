"""Alembic revisions own a database's schema: what the district's and the national database share.

Each database keeps its own revisions folder, baseline and lock (tpskit.district.schema,
tpskit.national.schema); these are the steps both take: the newest revision a release knows, the revision a
database is at (UNVERSIONED for one made before versions), a refusal naming a database a later release
upgraded, and the upgrade itself (stamp an unversioned database at the baseline, then upgrade).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, create_engine, inspect

UNVERSIONED = "unversioned"  # a database the release before versions made: its tables, no alembic_version


class SchemaError(Exception):
    """The database's schema cannot be used by this release (newer than it knows)."""


def alembic_config(migrations: Path, conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head_of(migrations: Path) -> str:
    """The newest revision in `migrations`."""
    h = ScriptDirectory.from_config(alembic_config(migrations)).get_current_head()
    assert h is not None
    return h


def current_of(conn: Connection, marker_table: str) -> str | None:
    """The database's revision; UNVERSIONED when it has `marker_table` but no version; None when empty."""
    rev = MigrationContext.configure(conn).get_current_revision()
    if rev is None and inspect(conn).has_table(marker_table):
        return UNVERSIONED
    return rev


def refuse_unknown(migrations: Path, rev: str | None, what: str, url: str) -> None:
    """SchemaError when `rev` is a revision `migrations` does not know: a later release upgraded `what`."""
    script = ScriptDirectory.from_config(alembic_config(migrations))
    if rev not in (None, UNVERSIONED) and rev not in {s.revision for s in script.walk_revisions()}:
        raise SchemaError(
            f"the {what} {url} is at schema revision {rev}, newer than this tpskit knows (its newest is "
            f"{head_of(migrations)}): a later release upgraded it. Install that release or a later one; this one "
            "leaves the database untouched and does not start.")


def apply(conn: Connection, migrations: Path, baseline: str, before: str | None, target: str) -> None:
    """Bring the database from `before` to `target` inside `conn`'s transaction (the caller holds the lock)."""
    if before == target:
        return
    logging.getLogger("alembic").setLevel(logging.WARNING)  # our own event says what happened
    cfg = alembic_config(migrations, conn)
    if before == UNVERSIONED:
        command.stamp(cfg, baseline)
    command.upgrade(cfg, target)


def run_env(context: Any, run: Callable[[Connection], None], url_hint: str) -> None:
    """The body of a migrations folder's env.py: migrate the connection `upgrade` handed over (inside its
    locked transaction), or, for a developer running Alembic by hand, the database `-x url=...` names."""
    given = context.config.attributes.get("connection")
    if given is not None:
        run(given)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit(f"give the database: alembic -x url={url_hint}")
    engine = create_engine(url)
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
