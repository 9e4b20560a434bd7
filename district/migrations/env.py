"""Alembic's environment for the district database (SQLite or PostgreSQL).

The service runs it through `tpskit.district.schema.upgrade`, which hands over its own connection (in
`config.attributes["connection"]`, inside the transaction that holds the migration lock). A developer
adding a revision runs Alembic itself against a scratch database of the previous revision:

    .venv/bin/alembic -c district/migrations/alembic.ini -x url=sqlite:///scratch.sqlite upgrade head
    .venv/bin/alembic -c district/migrations/alembic.ini -x url=sqlite:///scratch.sqlite \\
        revision --autogenerate -m "what changes and why"

then reads the generated file (autogenerate misses renames and server defaults), and adds a test.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from tpskit.district.db import metadata
from tpskit.schema_versions import run_env


def _run(connection: Connection) -> None:
    # SQLite cannot ALTER most things: batch mode rebuilds the table (copy, drop, rename) instead.
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


run_env(context, _run, "sqlite:///path.sqlite (or postgresql+psycopg://...)")
