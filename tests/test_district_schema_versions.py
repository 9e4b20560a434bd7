"""The district database's schema is versioned by Alembic revisions: the previous release's database (made
before versions, tests/data/previous-release/) is upgraded keeping every row and signature, on SQLite and
PostgreSQL; the revisions build exactly the tables the code uses; a database newer than this release is
refused untouched; and a later revision (a test-only one here) runs on top of the previous release's data."""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, create_engine, insert, text

from tpskit.district import schema
from tpskit.district.db import metadata, open_db
from tpskit.district.tally import current_results, stored_results
from tpskit.envelope import Verifier, sha256_hex, verify_result
from tpskit.trust.certs import load_certs

PREVIOUS = Path(__file__).resolve().parent / "data" / "previous-release"
TABLES = ("results", "evidence", "pending", "rejections")


def previous_rows() -> dict[str, list[tuple[Any, ...]]]:
    con = sqlite3.connect(PREVIOUS / "district.sqlite")
    try:
        return {t: sorted(con.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in TABLES}
    finally:
        con.close()


def rows_of(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as c:
        return {t: sorted((tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                           for r in c.execute(text(f"SELECT * FROM {t}"))), key=repr) for t in TABLES}


def revision_of(engine: Engine) -> str | None:
    with engine.connect() as c:
        return MigrationContext.configure(c).get_current_revision()


def schema_differences(engine: Engine) -> list[Any]:
    with engine.connect() as c:
        return compare_metadata(MigrationContext.configure(c), metadata)


@pytest.fixture
def previous_sqlite(tmp_path: Path) -> str:
    db = tmp_path / "district.sqlite"
    shutil.copyfile(PREVIOUS / "district.sqlite", db)
    return f"sqlite:///{db}"


def fresh_pg(postgres_url: str, name: str) -> str:
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + "/" + name


def previous_pg(postgres_url: str, name: str) -> str:
    """The previous release's database on PostgreSQL: its create_all DDL, then district.sqlite's rows."""
    url = fresh_pg(postgres_url, name)
    engine = create_engine(url)
    with engine.begin() as c:
        for statement in (PREVIOUS / "postgresql-schema.sql").read_text().split(";"):
            if statement.strip():
                c.exec_driver_sql(statement)
    old = MetaData()
    old.reflect(engine)
    src = sqlite3.connect(PREVIOUS / "district.sqlite")
    src.row_factory = sqlite3.Row
    with engine.begin() as c:
        for t in TABLES:
            rows = [dict(r) for r in src.execute(f"SELECT * FROM {t}")]
            if rows:
                c.execute(insert(old.tables[t]), rows)
        c.exec_driver_sql("SELECT setval('rejections_id_seq', (SELECT max(id) FROM rejections))")
    src.close()
    engine.dispose()
    return url


@pytest.fixture
def previous_postgres(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    yield previous_pg(postgres_url, "prev_" + request.node.name.lower()[:40].replace("[", "_").replace("]", ""))


def assert_every_result_still_verifies(engine: Engine) -> None:
    verifier = Verifier(load_certs(PREVIOUS / "ca.pem"))
    with engine.connect() as c:
        stored = c.execute(text("SELECT envelope, envelope_sha256, evidence_sha256, received_at FROM results "
                                "UNION ALL SELECT envelope, '', evidence_sha256, received_at FROM pending")).all()
        photos = {r.submission_id: r for r in c.execute(text("SELECT submission_id, sha256, jpeg FROM evidence"))}
    assert len(stored) == 4
    for envelope, env_sha, evidence_sha, received_at in stored:
        _, result = verify_result(verifier, envelope, arrived=dt.datetime.fromtimestamp(received_at, dt.UTC))
        assert result.evidence_sha256 == evidence_sha
        assert env_sha in ("", sha256_hex(envelope))
        if result.submission_id in photos:
            assert sha256_hex(bytes(photos[result.submission_id].jpeg)) == evidence_sha


def test_previous_release_sqlite_database_upgrades_keeping_every_row_and_signature(previous_sqlite):
    before = previous_rows()
    engine = open_db(previous_sqlite)
    try:
        assert revision_of(engine) == schema.head()
        assert rows_of(engine) == before
        assert schema_differences(engine) == []
        assert_every_result_still_verifies(engine)
        stored = stored_results(engine)  # the tally reads it as before: TPS 1's second result is its current one
        assert len(stored) == 3 and len(current_results(stored)) == 2
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_previous_release_postgresql_database_upgrades_keeping_every_row_and_signature(previous_postgres):
    before = previous_rows()
    engine = open_db(previous_postgres)
    try:
        assert revision_of(engine) == schema.head()
        assert rows_of(engine) == before
        assert schema_differences(engine) == []
        assert_every_result_still_verifies(engine)
        with engine.begin() as c:  # the next refusal takes the next id, after the copied ones
            c.execute(insert(metadata.tables["rejections"]).values(received_at=1.0, topic="t", reason="r", detail=""))
            assert c.execute(text("SELECT max(id) FROM rejections")).scalar() == 3
    finally:
        engine.dispose()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_an_empty_database_is_built_by_the_revisions_exactly_as_the_code_uses_it(kind, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'new.sqlite'}" if kind == "sqlite" else \
        fresh_pg(request.getfixturevalue("postgres_url"), "empty_built")
    engine = open_db(url)
    try:
        assert revision_of(engine) == schema.head()
        assert schema_differences(engine) == []
        assert rows_of(engine) == {t: [] for t in TABLES}
    finally:
        engine.dispose()


def test_opening_an_upgraded_database_again_changes_nothing(previous_sqlite):
    open_db(previous_sqlite).dispose()
    engine = open_db(previous_sqlite, writer=True)
    try:
        assert schema.upgrade(engine) == schema.Upgrade(schema.head(), schema.head())
        assert not schema.upgrade(engine).changed
    finally:
        engine.dispose()


def test_a_database_newer_than_this_release_is_refused_untouched(previous_sqlite):
    open_db(previous_sqlite).dispose()
    path = previous_sqlite[len("sqlite:///"):]
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = '9001'")
    con.commit()
    con.close()
    before = Path(path).read_bytes()
    with pytest.raises(schema.SchemaError) as refused:
        open_db(previous_sqlite)
    assert "newer than this tpskit knows" in str(refused.value) and "9001" in str(refused.value)
    assert "Install that release" in str(refused.value)
    assert Path(path).read_bytes() == before


def newer_district(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A district whose database was upgraded by a later release (revision 9001)."""
    from tpskit.district.config import load_district_config
    from tpskit.provisioning.district import district_init

    csv = tmp_path / "tps.csv"
    csv.write_text("tps,registered_voters\n3201012001001,250\n")
    d = district_init(tmp_path / "district", csv, district_id="kab-new", broker_host="127.0.0.1", broker_port=1,
                      bind="127.0.0.1")
    monkeypatch.chdir(d.root)  # the configured URL is relative to the service's folder
    cfg = load_district_config(d.config_path)
    engine = create_engine(cfg.database.url)
    with engine.begin() as c:
        c.exec_driver_sql("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
        c.exec_driver_sql("INSERT INTO alembic_version VALUES ('9001')")
    engine.dispose()
    return d


def test_check_config_the_units_run_before_start_refuses_a_newer_database(tmp_path, monkeypatch, capsys):
    from tpskit.cli import main

    d = newer_district(tmp_path, monkeypatch)
    assert main(["district", "check-config", "--config", str(d.config_path)]) == 1
    err = capsys.readouterr().err
    assert "9001, newer than this tpskit knows" in err and "Install that release" in err


def test_the_service_does_not_start_on_a_newer_database_and_logs_why(tmp_path, monkeypatch, caplog):
    import threading

    from tpskit.district.config import load_district_config
    from tpskit.district.service import serve

    cfg = load_district_config(newer_district(tmp_path, monkeypatch).config_path)
    caplog.set_level("ERROR")
    assert serve(cfg, threading.Event()) == 1
    refusals = [r for r in caplog.records if "district.schema_newer" in r.getMessage()]
    assert refusals and "9001" in refusals[0].getMessage()


TEST_REVISION = '''
"""Test only: a column a later release might add, to prove the path from the previous release."""
import sqlalchemy as sa
from alembic import op

revision = "0999"
down_revision = "{down}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("note", sa.Text, nullable=True))
    op.execute("UPDATE results SET note = 'kept'")


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_column("note")
'''


@pytest.fixture
def later_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """This release's revisions plus one more, as a later release would ship them."""
    later = tmp_path / "migrations"
    shutil.copytree(schema.MIGRATIONS, later, ignore=shutil.ignore_patterns("__pycache__"))
    (later / "versions" / "r0999_test_note.py").write_text(TEST_REVISION.format(down=schema.head()))
    ours = schema.head()
    monkeypatch.setattr(schema, "MIGRATIONS", later)
    return ours


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_later_revision_runs_on_the_previous_release_database_and_that_release_then_refuses_it(
        kind, later_release, previous_sqlite, request, monkeypatch):
    url = previous_sqlite if kind == "sqlite" else \
        previous_pg(request.getfixturevalue("postgres_url"), "prev_later_revision")
    engine = open_db(url)
    try:
        assert revision_of(engine) == "0999"
        with engine.connect() as c:
            notes = c.execute(text("SELECT note FROM results")).scalars().all()
        assert notes == ["kept"] * 3
        kept = rows_of(engine)
        assert {t: len(r) for t, r in kept.items()} == {t: len(r) for t, r in previous_rows().items()}
        assert_every_result_still_verifies(engine)
    finally:
        engine.dispose()
    monkeypatch.setattr(schema, "MIGRATIONS", Path(schema.migrations.__file__).resolve().parent)
    assert schema.head() == later_release
    with pytest.raises(schema.SchemaError, match="0999"):
        open_db(url)



def test_a_database_made_by_the_commit_that_added_the_forward_outbox_before_versions_keeps_its_rows(
        previous_sqlite):
    """2b9e34e added forward_outbox while create_all still owned the schema: revision 0002 finds it."""
    from sqlalchemy import insert as insert_row

    engine = create_engine(previous_sqlite)
    metadata.tables["forward_outbox"].create(engine)
    with engine.begin() as c:
        c.execute(insert_row(metadata.tables["forward_outbox"]).values(submission_id="s", message="m", created_at=1.0))
    engine.dispose()
    engine = open_db(previous_sqlite)
    try:
        assert revision_of(engine) == schema.head()
        assert schema_differences(engine) == []
        with engine.connect() as c:
            assert c.execute(text("SELECT submission_id, message FROM forward_outbox")).all() == [("s", "m")]
        assert rows_of(engine) == previous_rows()
    finally:
        engine.dispose()
