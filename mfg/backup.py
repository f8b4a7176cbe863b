"""Backups of the whole database, and restores into an empty one.

SQLite: the online backup API, which copies one read snapshot while the servers go on writing (WAL).
PostgreSQL: ``pg_dump --format=custom`` and ``pg_restore``, connecting as the SQLAlchemy URL says, with the
password in PGPASSWORD, never on a command line. The chain head a backup holds is read in the very
snapshot that is copied, so the head printed is the backup's head, whatever the servers wrote meanwhile.

Neither the audit key nor the checkpoint file is in a backup: they live outside the database on purpose.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, select, text
from sqlalchemy.engine import make_url

from mfg.audit.models import AuditEvent
from mfg.config import private_file
from mfg.db import make_engine, normalise_url

SQLITE_HEADER = b"SQLite format 3\x00"
PG_CUSTOM_HEADER = b"PGDMP"
KIND_NAMES = {"sqlite": "a SQLite database", "postgresql": "a PostgreSQL (pg_dump custom format) archive"}
DIALECT_NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}


class BackupError(Exception):
    """A backup or restore refused or failed; the message is one line an operator can act on."""


@dataclass(frozen=True)
class ChainHead:
    event_id: int
    hash: str


@dataclass(frozen=True)
class BackupReport:
    kind: str
    size: int
    sha256: str
    head: ChainHead | None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_kind(path: Path) -> str:
    """``sqlite`` or ``postgresql``, from the file's first bytes."""
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        raise BackupError(f"no backup file at {path}") from None
    except OSError as exc:
        raise BackupError(f"cannot read {path}: {exc.strerror}") from None
    if header == SQLITE_HEADER:
        return "sqlite"
    if header.startswith(PG_CUSTOM_HEADER):
        return "postgresql"
    raise BackupError(f"{path} is neither {KIND_NAMES['sqlite']} nor {KIND_NAMES['postgresql']}")


# --- backup ---------------------------------------------------------------------------------------------


def backup(url: str, out: Path) -> BackupReport:
    """Write the database at ``url`` to ``out``, a new file (mode 0600)."""
    engine = make_engine(url, begin="deferred")
    kind = engine.dialect.name
    try:
        if kind not in DIALECT_NAMES:
            raise BackupError(f"backups are made of SQLite and PostgreSQL databases, not {kind}")
        if kind == "sqlite" and not _sqlite_file(engine).exists():
            raise BackupError(f"no database file at {_sqlite_file(engine)}")  # connecting would create one
        pg_dump = _tool("pg_dump") if kind == "postgresql" else ""
        _create_private(out)
        try:
            with engine.connect() as conn:
                head = _backup_sqlite(conn, out) if kind == "sqlite" else _pg_dump(conn, pg_dump, url, out)
        except BaseException:
            out.unlink(missing_ok=True)  # never leave half a backup behind
            raise
    finally:
        engine.dispose()
    return BackupReport(kind=kind, size=out.stat().st_size, sha256=sha256_of(out), head=head)


def _backup_sqlite(conn: Connection, out: Path) -> ChainHead | None:
    with conn.begin():  # deferred: a read snapshot, beside the writers
        head = _chain_head(conn)
        # The backup API copies the snapshot of the source connection's open read transaction, in one step.
        source = conn.connection.driver_connection
        assert isinstance(source, sqlite3.Connection)
        target = sqlite3.connect(out)
        try:
            source.backup(target)
            # One self-contained file (the source is in WAL mode, and its copy would be too).
            target.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.Error as exc:
            raise BackupError(f"the SQLite backup failed: {exc}") from None
        finally:
            target.close()
    return head


def _pg_dump(conn: Connection, pg_dump: str, url: str, out: Path) -> ChainHead | None:
    # pg_dump copies the snapshot this transaction exports, so the head read here is the archive's head.
    conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
    with conn.begin():
        head = _chain_head(conn)
        snapshot = conn.execute(text("SELECT pg_export_snapshot()")).scalar_one()
        conninfo, env = _libpq(url)
        # No owner and no grants in the archive: the restoring role owns what it restores, and the roles of
        # the server the backup came from need not exist where it is restored.
        _run(
            pg_dump,
            "--no-password",
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            f"--snapshot={snapshot}",
            f"--file={out}",
            f"--dbname={conninfo}",
            env=env,
        )
    return head


def _chain_head(conn: Connection) -> ChainHead | None:
    if not inspect(conn).has_table(AuditEvent.__tablename__):
        raise BackupError(
            "the database has no audit trail: is it initialised (`mfg init`), is the URL right?"
        )
    row = conn.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    return ChainHead(row[0], row[1]) if row else None


def _create_private(out: Path) -> None:
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{out} already exists: a backup never overwrites a file") from None
    except OSError as exc:
        raise BackupError(f"cannot create {out}: {exc.strerror}") from None
    os.close(fd)


# --- restore --------------------------------------------------------------------------------------------


def restore(path: Path, url: str) -> str:
    """Restore the backup at ``path`` into the empty database at ``url``; returns the file's SHA-256."""
    kind = file_kind(path)
    digest = sha256_of(path)  # of what is restored, before it is read
    engine = make_engine(url, begin="deferred")
    try:
        if kind != engine.dialect.name:
            raise BackupError(
                f"{path} is {KIND_NAMES[kind]}, but the target database is "
                f"{DIALECT_NAMES.get(engine.dialect.name, engine.dialect.name)}"
            )
        pg_restore = _tool("pg_restore") if kind == "postgresql" else ""
        if kind == "sqlite":
            _private_target(_sqlite_file(engine))
        _require_empty(engine)
    finally:
        engine.dispose()  # no connection of ours stays open on the target while it is written
    if kind == "sqlite":
        _restore_sqlite(path, _sqlite_file(engine))
    else:
        conninfo, env = _libpq(url)
        # One transaction: a failed restore leaves the target empty, ready for the next attempt.
        _run(
            pg_restore,
            "--no-password",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            "--single-transaction",
            f"--dbname={conninfo}",
            str(path),
            env=env,
        )
    return digest


def _require_empty(engine: Engine) -> None:
    with engine.connect() as conn:
        found = inspect(conn).get_table_names()
    if found:
        shown = ", ".join(sorted(found)[:3]) + (", ..." if len(found) > 3 else "")
        raise BackupError(
            f"the target database is not empty ({len(found)} tables: {shown}): "
            "restore only into a new, empty database"
        )


def _restore_sqlite(path: Path, target_file: Path) -> None:
    source = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    target = sqlite3.connect(target_file)
    try:
        # A WAL target refuses a copy with another page size; the app turns WAL on again when it connects.
        target.execute("PRAGMA journal_mode=DELETE")
        source.backup(target)
    except sqlite3.Error as exc:
        raise BackupError(f"cannot restore {path}: {exc}") from None
    finally:
        source.close()
        target.close()


# --- plumbing -------------------------------------------------------------------------------------------


def _sqlite_file(engine: Engine) -> Path:
    database = engine.url.database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database can be neither backed up nor restored")
    return Path(database)


def _private_target(target: Path) -> None:
    # The file connecting would create, made private first (as `mfg init` makes the instance's database).
    try:
        private_file(target)
    except OSError as exc:
        raise BackupError(f"cannot create {target}: {exc.strerror}") from None


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(
            f"{name} is not installed: PostgreSQL needs it (Debian: apt-get install postgresql-client, "
            "of the server's major version or newer)"
        )
    return found


def _libpq(url: str) -> tuple[str, dict[str, str]]:
    """A libpq connection string without the password, and an environment that carries it (PGPASSWORD)."""
    from psycopg.conninfo import make_conninfo

    parsed = make_url(normalise_url(url))
    params = parsed.translate_connect_args(username="user", database="dbname")
    password = params.pop("password", None)
    params.update({k: ",".join(v) if isinstance(v, tuple) else v for k, v in parsed.query.items()})
    env = dict(os.environ)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **{k: str(v) for k, v in params.items()}), env


def _run(tool: str, *args: str, env: dict[str, str]) -> None:
    # --no-password on every call: a missing password fails here, it never waits at a prompt under cron.
    done = subprocess.run([tool, *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        lines = lines or [f"exit status {done.returncode}"]
        first = next((line for line in lines if "error:" in line), lines[0])
        name = Path(tool).name
        message = f"{name} failed: {first.removeprefix(f'{name}: ').removeprefix('error: ')}"
        if "permission denied" in first and name == "pg_restore":
            message += " (restore as the schema's owner: set MFG_ADMIN_DATABASE_URL)"
        raise BackupError(message)
