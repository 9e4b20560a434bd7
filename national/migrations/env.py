"""Alembic's environment for the national database (PostgreSQL).

The workers run it through `tpskit.national.schema.upgrade`, which hands over its own connection (in
`config.attributes["connection"]`, inside the transaction that holds the schema lock). A developer adding a
revision runs Alembic itself against a scratch database of the previous revision:

    .venv/bin/alembic -c national/migrations/alembic.ini -x url=postgresql+psycopg://... upgrade head
    .venv/bin/alembic -c national/migrations/alembic.ini -x url=postgresql+psycopg://... \\
        revision --autogenerate -m "what changes and why"

then reads the generated file (autogenerate misses renames, server defaults and partitioning), and adds a test.
Province partitions are not revisions: they follow the configured districts (tpskit.national.db).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from tpskit.national.db import metadata


def _include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # The province partitions are tables of their own to PostgreSQL; the metadata has only their parent.
    return not (type_ == "table" and reflected and compare_to is None and (name or "").startswith("national_results_p"))


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, include_object=_include)
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    _run(given)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("give the database: alembic -x url=postgresql+psycopg://user@host/national")
    engine = create_engine(url)
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
