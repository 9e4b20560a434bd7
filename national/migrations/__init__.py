"""Alembic revisions of the national database (tpskit.national.schema runs them)."""
