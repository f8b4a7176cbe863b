"""Alembic environment: migrations run on the URL from the app's configuration, or on a given connection."""

from __future__ import annotations

from alembic import context

from mfg import config as mfg_config
from mfg.db import make_engine
from mfg.models import Base

target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.config.get_main_option("sqlalchemy.url") or mfg_config.database_url()
    engine = make_engine(url)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # Batch migrations rebuild tables; foreign key checks must be off while they do (outside any
            # transaction, so through the driver before SQLAlchemy begins one).
            conn.connection.driver_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported: run `mfg init`")
run_migrations_online()
