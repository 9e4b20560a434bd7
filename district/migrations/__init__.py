"""The district database's Alembic migrations (see tpskit.district.schema, which runs them)."""
