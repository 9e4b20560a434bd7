"""National storage (PostgreSQL, SQLAlchemy Core): every verified result once, partitioned by province.

- national_results: declaratively partitioned by LIST (province), the province being the first two digits of
  the TPS code the kit signed; one partition per province, created at start for the provinces of the
  configured districts. The key (province, submission_id) makes a second copy of a submission impossible:
  workers insert with ON CONFLICT DO NOTHING, so a message delivered twice (a worker killed before its ack,
  a district's re-publication past JetStream's duplicate window) is stored once.
- national_rejections: every forwarded message refused, with its reason (logged too).

The tables below are what the code reads and writes; the Alembic revisions in migrations/ build and change
them (tpskit.national.schema; a test checks that both agree). A change here needs a revision: see
migrations/env.py. The province partitions are not revisions: they follow the configured districts.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import BigInteger, Column, Engine, Float, Integer, MetaData, String, Table, Text, create_engine, text

metadata = MetaData()

national_results = Table(
    "national_results", metadata,
    Column("province", String(2), primary_key=True),
    Column("submission_id", String(64), primary_key=True),
    Column("district", String(64), nullable=False),
    Column("kit_id", String(64), nullable=False),
    Column("tps", String(13), nullable=False),
    Column("template_id", String(64), nullable=False),
    Column("status", String(8), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("captured_at", Float, nullable=False),  # the kit's signed capture time (epoch seconds)
    Column("received_at", Float, nullable=False),  # the district's arrival time (the tally rule's order)
    Column("stored_at", Float, nullable=False),  # when a national worker stored it
    Column("envelope", Text, nullable=False),  # the kit's compact JWS, untouched
    Column("envelope_sha256", String(64), nullable=False),
    Column("evidence_sha256", String(64), nullable=False),
    Column("acceptance", Text, nullable=False),  # the district's signed acceptance
    Column("values_json", Text, nullable=False),
    postgresql_partition_by="LIST (province)",
)

national_rejections = Table(
    "national_rejections", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False),
    Column("district", String(64)),
    Column("submission_id", String(64)),
    Column("reason", String(40), nullable=False),
    Column("detail", Text, nullable=False),
    Column("stream_seq", BigInteger, nullable=False),
)

# Any constant: the advisory lock under which workers starting together upgrade the schema and add partitions.
_SCHEMA_LOCK = 0x6E61_7469


def partition_name(province: str) -> str:
    if not (len(province) == 2 and province.isdigit()):
        raise ValueError(f"province code {province!r} is not two digits")
    return f"national_results_p{province}"


def open_national_db(url: str, provinces: Iterable[str]) -> Engine:
    """The engine, on a database brought to this release's schema (tpskit.national.schema: SchemaError when the
    database is newer), with one partition per province in `provinces` (idempotent)."""
    from tpskit.national import schema  # its migrations import this module's metadata

    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    engine = create_engine(url, future=True, pool_pre_ping=True)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"SELECT pg_advisory_xact_lock({_SCHEMA_LOCK})"))
            schema.upgrade(conn)
            for p in sorted(set(provinces)):
                conn.execute(text(f"CREATE TABLE IF NOT EXISTS {partition_name(p)} PARTITION OF national_results "
                                  f"FOR VALUES IN ('{p}')"))
    except BaseException:
        engine.dispose()
        raise
    return engine


def partitions(engine: Engine) -> dict[str, int]:
    """Partition table -> rows in it (what the tests and the benchmark show)."""
    with engine.connect() as conn:
        names = [r[0] for r in conn.execute(text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'national_results' ORDER BY 1"))]
        return {n: int(conn.execute(text(f"SELECT COUNT(*) FROM {n}")).scalar_one()) for n in names}
