"""The district database (SQLAlchemy Core): a SQLite file by default, PostgreSQL when given a URL.

The tables below are what the code reads and writes; the Alembic revisions in migrations/ build and
change them (a test checks that both agree). A change here needs a revision: see migrations/env.py.

Tables:
- results:    accepted envelopes exactly as received (the compact JWS), plus the columns tally needs;
- evidence:   the photo of a submission, stored only when its verified result announced it (sha256, size);
- pending:    verified results whose evidence photo has not arrived yet (no ack until it does);
- rejections: every refused message with its reason (counted and kept, never a result);
- forward_outbox: what to forward to the national tier, one row per accepted result, written in the
  transaction that stored it ([national] enabled), marked sent once JetStream acknowledged it;
- forward_lease: which service instance forwards the district's outbox, until when (tpskit.district.forward).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

metadata = MetaData()

results = Table(
    "results", metadata,
    Column("submission_id", String(64), primary_key=True),
    Column("kit_id", String(64), nullable=False),
    # The kit certificate's serial (decimal): sequence numbers are per certificate, so a kit whose stolen
    # key signed a huge one starts afresh with its replacement certificate.
    Column("cert_serial", String(64), nullable=False),
    Column("tps", String(13), nullable=False),
    Column("template_id", String(64), nullable=False),
    Column("form_code", String(16), nullable=False),
    Column("status", String(8), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("captured_at", String(40), nullable=False),
    Column("received_at", Float, nullable=False),
    Column("envelope", Text, nullable=False),
    Column("envelope_sha256", String(64), nullable=False),
    Column("evidence_sha256", String(64), nullable=False),
    Column("values_json", Text, nullable=False),
    Index("results_kit_seq", "kit_id", "cert_serial", "seq"),
    Index("results_tps", "tps", "template_id"),
    # The dashboard reads what arrived since it last looked (district.status.SnapshotReader; revision 0003).
    Index("results_received", "received_at"),
)

evidence = Table(
    "evidence", metadata,
    Column("submission_id", String(64), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("tps", String(13), nullable=False),
    Column("jpeg", LargeBinary, nullable=False),
    Column("received_at", Float, nullable=False),
)

pending = Table(
    "pending", metadata,
    Column("submission_id", String(64), primary_key=True),
    Column("kit_id", String(64), nullable=False),
    Column("cert_serial", String(64), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("envelope", Text, nullable=False),
    # The photo the signed result announced: only this one is stored for the submission.
    Column("evidence_sha256", String(64), nullable=False),
    Column("evidence_bytes", BigInteger, nullable=False),
    Column("received_at", Float, nullable=False),
)

rejections = Table(
    "rejections", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", Float, nullable=False),
    Column("topic", String(200), nullable=False),
    Column("kit_id", String(64)),
    Column("submission_id", String(64)),
    Column("reason", String(40), nullable=False),
    Column("detail", Text, nullable=False),
    Column("envelope_sha256", String(64)),
)

forward_outbox = Table(
    "forward_outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # the order of acceptance, the order sent
    Column("submission_id", String(64), nullable=False),
    Column("message", Text, nullable=False),  # tpskit.forwarded: envelope, evidence hash, signed acceptance
    Column("created_at", Float, nullable=False),
    Column("sent_at", Float),  # NULL until JetStream acknowledged it
    Index("forward_outbox_unsent", "sent_at", "id"),
)

forward_lease = Table(
    "forward_lease", metadata,
    Column("district", String(64), primary_key=True),
    Column("holder", String(200), nullable=False),  # the forwarding instance (host, pid, a random tag)
    Column("expires_at", Float, nullable=False),  # unix time: after it, another instance may take over
)


def open_db(url: str, *, writer: bool = False) -> Engine:
    """The engine, on a database brought to this release's schema (tpskit.district.schema: the Alembic
    revisions own the tables; SchemaError when the database is newer). SQLite runs in WAL mode with
    synchronous=FULL.

    `writer`: the ingest's engine. Its SQLite transactions begin IMMEDIATE (the write lock is taken
    before the batch reads), so batches of several service processes run one after the other, each
    seeing everything committed before it; on PostgreSQL the ingest takes `lock_batch` instead.
    """
    from tpskit.district import schema  # its migrations import this module's metadata

    engine = make_engine(url, writer=writer)
    locking = engine if writer else make_engine(url, writer=True)  # an upgrade runs under the write lock
    try:
        schema.upgrade(locking)
    except BaseException:
        engine.dispose()
        raise
    finally:
        if locking is not engine:
            locking.dispose()
    return engine


def make_engine(url: str, *, writer: bool) -> Engine:
    """The engine alone (see open_db for `writer`): the schema is not looked at."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    engine = create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()
            if writer:
                dbapi_conn.isolation_level = None  # we say BEGIN ourselves (SQLAlchemy's pysqlite recipe)

        if writer:

            @event.listens_for(engine, "begin")
            def _begin_immediate(conn):  # type: ignore[no-untyped-def]
                conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


# Any constant: the key of the PostgreSQL advisory lock that serialises ingest batches.
_BATCH_LOCK = 0x7470_736B


def lock_batch(conn: Connection) -> None:
    """Serialise ingest batches across service processes (held until the transaction ends). SQLite's
    writer engine already did it with BEGIN IMMEDIATE."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_BATCH_LOCK})")


def placeholders(conn: Connection, n: int) -> str:
    """`?, ?, ?` or `%s, %s, %s`: an IN list for the driver's own SQL (no SQLAlchemy compile per batch)."""
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)
