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
from sqlalchemy import Connection

from tpskit.national.db import metadata
from tpskit.schema_versions import run_env


def _include(obj: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    # The province partitions are tables of their own to PostgreSQL; the metadata has only their parent.
    return not (type_ == "table" and reflected and compare_to is None and (name or "").startswith("national_results_p"))


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, include_object=_include)
    with context.begin_transaction():
        context.run_migrations()


run_env(context, _run, "postgresql+psycopg://user@host/national")
