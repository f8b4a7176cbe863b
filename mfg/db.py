"""Database plumbing shared by every capability: the declarative base, engines and sessions.

Writers lock before their first read; readers never lock (DESIGN §7):

* A transaction that may write starts with ``begin_writing``: on SQLite ``BEGIN IMMEDIATE`` (the write lock
  before anything is read, so "read, then write" cannot interleave between processes), on PostgreSQL a
  transaction-level advisory lock before any SELECT, so every writer reads what the previous one committed
  and the audit trail's "old" values are never stale.
* A read-only transaction of the web application starts with a plain deferred ``BEGIN`` (SQLite's WAL lets
  it read beside the writer) and takes no lock.
* Any flush that writes still takes the PostgreSQL lock if nothing took it before (the last safety net).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Any constant will do; it names "the audit chain" among advisory locks.
AUDIT_CHAIN_LOCK_KEY = 0x4D4647_0001
# The execution option that marks a connection's transaction as a writer's (SQLite: BEGIN IMMEDIATE).
WRITING = "mfg_writing"
SqliteBegin = Literal["immediate", "deferred", "declared"]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC as a naive timestamp and hands back aware UTC datetimes on every backend.

    SQLite has no time zones; keeping one representation everywhere makes audit hashes identical on both.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given where UTC is required")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver we ship), not SQLAlchemy's default psycopg2."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, *, begin: SqliteBegin = "immediate", **kwargs: Any) -> Engine:
    """An engine for ``url``. How SQLite transactions begin:

    * ``immediate`` (the CLI, scripts): every transaction is a writer's, ``BEGIN IMMEDIATE``;
    * ``declared`` (the web application): deferred, unless ``begin_writing`` declared it a writer's;
    * ``deferred``: read-mostly inspection, such as tests looking at what the application stored.
    """
    url = normalise_url(url)
    if url.startswith("sqlite"):
        kwargs.setdefault("connect_args", {})
        kwargs["connect_args"].setdefault("timeout", 30)
        kwargs["connect_args"].setdefault("check_same_thread", False)
    engine = create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine, begin)
    return engine


def _configure_sqlite(engine: Engine, begin: SqliteBegin) -> None:
    # SQLAlchemy's documented recipe: let SQLAlchemy, not pysqlite, emit BEGIN.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Write-ahead logging: readers never wait for the writer, nor the writer for readers.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        writing = begin == "immediate" or (
            begin == "declared" and connection.get_execution_options().get(WRITING, False)
        )
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writing else "BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    factory = sessionmaker(bind=engine, expire_on_commit=False, autoflush=True)
    return factory


def begin_writing(session: Session) -> None:
    """Start the session's transaction as a writer's, before it reads anything: what it read so far (the
    signed-in account, say) is rolled back and will be read again under the lock."""
    if session.in_transaction():
        session.rollback()
    session.connection(execution_options={WRITING: True})
    lock_audit_chain(session)


def lock_audit_chain(session: Session) -> None:
    """Serialise GMP writers (PostgreSQL). SQLite already holds its write lock from BEGIN IMMEDIATE."""
    if session.get_bind().dialect.name == "postgresql" and not session.info.get("audit_chain_locked"):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": AUDIT_CHAIN_LOCK_KEY})
        session.info["audit_chain_locked"] = True


@event.listens_for(Session, "before_flush")
def _lock_before_writing(session: Session, _context: Any, _instances: Any) -> None:
    if session.new or session.dirty or session.deleted:
        lock_audit_chain(session)


@event.listens_for(Session, "after_transaction_end")
def _forget_lock(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop("audit_chain_locked", None)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work for the CLI and scripts: it writes, so it locks before its first read; it commits on
    success and rolls back on any error."""
    session = factory()
    try:
        begin_writing(session)
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
