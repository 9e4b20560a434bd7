"""The national database's schema is versioned by Alembic revisions (tpskit/national/migrations), as the
district's is: the revisions build exactly the tables the workers use, a database made before versions (by
create_all) is stamped and keeps its rows, and a database newer than this release is refused untouched."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, insert, text

pytestmark = [pytest.mark.postgres]


def differences(url: str) -> list[Any]:
    from tpskit.national.db import metadata

    engine = create_engine(url)
    try:
        with engine.connect() as c:
            ctx = MigrationContext.configure(c, opts={"include_object": lambda o, name, type_, reflected, other: not (
                type_ == "table" and reflected and other is None and name.startswith("national_results_p"))})
            return compare_metadata(ctx, metadata)
    finally:
        engine.dispose()


def revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return MigrationContext.configure(c).get_current_revision()
    finally:
        engine.dispose()


def row(sid: str) -> dict[str, Any]:
    return {"province": "32", "submission_id": sid, "district": "kab-test", "kit_id": "kit-1", "tps": "3201012001001",
            "template_id": "t", "status": "ok", "seq": 1, "captured_at": 1.0, "received_at": 2.0, "stored_at": 3.0,
            "envelope": "e", "envelope_sha256": "0" * 64, "evidence_sha256": "1" * 64, "acceptance": "a",
            "values_json": "{}"}


def test_the_national_revisions_build_exactly_the_tables_the_workers_use(national_db_url):
    from tpskit.national import schema
    from tpskit.national.db import open_national_db, partitions

    engine = open_national_db(national_db_url, {"32", "33"})
    engine.dispose()
    assert revision(national_db_url) == schema.head()
    assert differences(national_db_url) == []
    engine = open_national_db(national_db_url, {"32"})  # a second start: nothing to do
    assert partitions(engine) == {"national_results_p32": 0, "national_results_p33": 0}
    engine.dispose()


def test_a_national_database_made_before_versions_is_stamped_and_keeps_its_rows(national_db_url):
    from tpskit.national import schema
    from tpskit.national.db import metadata, national_results, open_national_db

    old = create_engine(national_db_url)  # what the release before versions did: create_all, then a partition
    with old.begin() as c:
        metadata.create_all(c)
        c.execute(text("CREATE TABLE national_results_p32 PARTITION OF national_results FOR VALUES IN ('32')"))
        c.execute(insert(national_results), [row("s-1"), row("s-2")])
    old.dispose()
    engine = open_national_db(national_db_url, {"32", "33"})
    with engine.connect() as c:
        assert sorted(c.execute(text("SELECT submission_id FROM national_results")).scalars()) == ["s-1", "s-2"]
    engine.dispose()
    assert revision(national_db_url) == schema.head()
    assert differences(national_db_url) == []


def test_a_national_database_newer_than_this_release_is_refused_untouched(national_db_url):
    from tpskit.national import schema
    from tpskit.national.db import open_national_db

    open_national_db(national_db_url, {"32"}).dispose()
    engine = create_engine(national_db_url)
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = 'n9999'"))
    with pytest.raises(schema.SchemaError, match="n9999"):
        open_national_db(national_db_url, {"33"})
    with engine.connect() as c:
        assert c.execute(text("SELECT version_num FROM alembic_version")).scalar() == "n9999"
        assert c.execute(text("SELECT to_regclass('national_results_p33')")).scalar() is None
    engine.dispose()
