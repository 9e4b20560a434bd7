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
from sqlalchemy import Connection, create_engine

from tpskit.district.db import metadata


def _run(connection: Connection) -> None:
    # SQLite cannot ALTER most things: batch mode rebuilds the table (copy, drop, rename) instead.
    context.configure(connection=connection, target_metadata=metadata,
                      render_as_batch=connection.dialect.name == "sqlite")
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=sqlite:///path.sqlite (or postgresql+psycopg://...)")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
