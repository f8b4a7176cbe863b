"""Shared fixtures. Every test that touches a database gets a fresh one, migrated by Alembic.

SQLite by default; PostgreSQL when MFG_TEST_DATABASE_URL is set. The run makes its own databases (a migrated
template, then one copy per test) and drops them all at the end: nothing depends on what an earlier run left.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Each run makes its own audit key, outside the worktree, before anything reads it; subprocesses (run_cli,
# spawned writers, which import this file again) inherit it, and the checkpoint file beside it.
os.environ["MFG_TEST_RUN_DIR"] = os.environ.get("MFG_TEST_RUN_DIR") or tempfile.mkdtemp(prefix="mfg-test-")
os.environ["MFG_AUDIT_KEY_FILE"] = str(Path(os.environ["MFG_TEST_RUN_DIR"]) / "audit.key")
os.environ["MFG_CHECKPOINT_FILE"] = str(Path(os.environ["MFG_TEST_RUN_DIR"]) / "checkpoints.jsonl")

# Tests create many accounts and sign many records: argon2's production cost (~160 ms) would dominate.
os.environ.setdefault("MFG_ARGON2_TIME_COST", "1")
os.environ.setdefault("MFG_ARGON2_MEMORY_KIB", "1024")
os.environ.setdefault("MFG_ARGON2_PARALLELISM", "1")
# The suite signs in hundreds of times from 127.0.0.1; the rate-limit tests set their own limit.
os.environ.setdefault("MFG_LOGIN_RATE_LIMIT", "100000 per minute")

import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mfg import capabilities, create_app
from mfg.audit import key as audit_key
from mfg.cli import upgrade_database
from mfg.db import make_engine, make_session_factory, normalise_url
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.study import service as study_service
from mfg.study.definition import StudyDefinition, load_study
from mfg.study.models import Site, Subject

# This run's audit key, made before any test module (some build an app while they are collected) needs it.
audit_key.create_key_file(audit_key.key_path())

PASSWORD = "correct-horse-42"
ON_CI = os.environ.get("CI", "").lower() == "true"
PG_URL = os.environ.get("MFG_TEST_DATABASE_URL", "")
ROOT = Path(__file__).resolve().parent.parent


def require_tool(name: str, why: str) -> str:
    """A tool a test needs: skip with a clear message on a laptop without it, fail under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({why}); install it to run this test"
        if ON_CI:
            pytest.fail(f"CI: {message}")
        pytest.skip(message)
    return path


# --- databases ------------------------------------------------------------------------------------------


class DatabaseServer:
    """Creates and drops test databases: files for SQLite, CREATE DATABASE ... TEMPLATE for PostgreSQL."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:8]
        self.created: list[str] = []
        self.roles: list[str] = []
        self.is_postgres = bool(PG_URL)
        self.admin: Engine | None = None
        if self.is_postgres:
            url = normalise_url(PG_URL)
            self.admin = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=1)
            try:
                with self.admin.connect() as conn:
                    conn.execute(text("SELECT 1"))
            except Exception as exc:  # noqa: BLE001 - any failure to reach the server ends the run
                pytest.exit(
                    f"MFG_TEST_DATABASE_URL is set but PostgreSQL is unreachable: {exc}", returncode=1
                )
            self.base_url = make_url(url)
        self.template = self._new_name("tpl")
        self._create_empty(self.template)
        upgrade_database(self.url_of(self.template))
        if self.is_postgres:
            # No connection may stay open on a template that is being copied.
            assert self.admin is not None
            with self.admin.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": self.template},
                )

    def _new_name(self, tag: str) -> str:
        return f"mfg_test_{self.run_id}_{tag}"

    def url_of(self, name: str) -> str:
        if self.is_postgres:
            return self.base_url.set(database=name).render_as_string(hide_password=False)
        return f"sqlite:///{self.workdir / (name + '.sqlite3')}"

    def _create_empty(self, name: str) -> None:
        if self.is_postgres:
            assert self.admin is not None
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)

    def new_database(self, *, migrated: bool = True) -> str:
        name = self._new_name(uuid.uuid4().hex[:8])
        if not migrated:
            self._create_empty(name)
            return self.url_of(name)
        if self.is_postgres:
            assert self.admin is not None
            with self.admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'))
        else:
            shutil.copyfile(self.workdir / f"{self.template}.sqlite3", self.workdir / f"{name}.sqlite3")
        self.created.append(name)
        return self.url_of(name)

    def drop(self, name_or_url: str) -> None:
        name = make_url(name_or_url).database if "://" in name_or_url else name_or_url
        if self.is_postgres and name:
            assert self.admin is not None
            with self.admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        elif name:
            Path(name).unlink(missing_ok=True)

    def new_role(self) -> str:
        """PostgreSQL: a login role with no rights (roles belong to the server: dropped at the end)."""
        assert self.admin is not None
        role = self._new_name("app_" + uuid.uuid4().hex[:6])
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        self.roles.append(role)
        return role

    def close(self) -> None:
        if self.is_postgres:
            for name in reversed(self.created):
                self.drop(name)
            assert self.admin is not None
            with self.admin.connect() as conn:
                for role in self.roles:  # their grants went with the databases
                    conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
            self.admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def _installed_capabilities() -> None:
    """What every entry point does at start-up: plug dose preparation into the step engine."""
    capabilities.install()


@pytest.fixture(scope="session", autouse=True)
def _audit_key() -> Iterator[Path]:
    """This run's audit key (made at import), removed with its folder at the end."""
    path = audit_key.key_path()
    yield path
    shutil.rmtree(path.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def db_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseServer]:
    server = DatabaseServer(tmp_path_factory.mktemp("databases"))
    yield server
    server.close()


@pytest.fixture
def database_url(db_server: DatabaseServer) -> Iterator[str]:
    url = db_server.new_database()
    yield url
    db_server.drop(url)


@pytest.fixture
def app_role_url(db_server: DatabaseServer, database_url: str) -> str:
    """How the application connects in production (DESIGN §7). PostgreSQL: as a role granted only the
    application's rights on ``database_url`` by its owner (as ``mfg init`` grants). SQLite: as is."""
    if not db_server.is_postgres:
        return database_url
    from mfg import db_roles

    role = db_server.new_role()
    owner = make_engine(database_url)
    try:
        db_roles.grant_application_role(owner, role)
    finally:
        owner.dispose()
    return make_url(database_url).set(username=role, password=None).render_as_string(hide_password=False)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    # Deferred transactions on SQLite: what a test reads never holds the write lock the app under test needs.
    engine = make_engine(database_url, begin="deferred")
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture
def study() -> StudyDefinition:
    return load_study()


# --- people, sites, subjects ----------------------------------------------------------------------------


def make_user(
    session: Session,
    role: str,
    username: str | None = None,
    *,
    full_name: str | None = None,
    password: str = PASSWORD,
    one_time: bool = False,
) -> User:
    """An account ready to sign with (``one_time``: as an administrator makes one, its password to be changed
    at first sign-in)."""
    username = username or f"{role.replace('_', '')}{uuid.uuid4().hex[:6]}"
    return identity_service.create_user(
        session,
        "test-setup",
        username=username,
        full_name=full_name or f"{role.title()} {username}",
        role=role,
        password=password,
        one_time=one_time,
    )


@dataclass
class World:
    """A small study world: the facility, two clinical sites, and one account per role."""

    manufacturing: Site
    site: Site
    other_site: Site
    users: dict[str, User]


@pytest.fixture
def world(session: Session) -> World:
    manufacturing = study_service.create_site(
        session,
        "test-setup",
        code="HCTL",
        name="Human Cellular Therapy Laboratory",
        kind="manufacturing",
        address="200 First Street SW\nRochester, MN 55905",
        isbt_facility_id="A9999",
    )
    site = study_service.create_site(
        session, "test-setup", code="RST", name="Rochester clinic", kind="clinical", address="Rochester, MN"
    )
    other = study_service.create_site(
        session,
        "test-setup",
        code="JAX",
        name="Jacksonville clinic",
        kind="clinical",
        address="Jacksonville, FL",
    )
    from mfg.identity.rules import ROLES

    users = {role: make_user(session, role, role.replace("_", "")) for role in ROLES}
    users["coordinator2"] = make_user(session, "coordinator", "coordinator2")
    session.commit()
    return World(manufacturing=manufacturing, site=site, other_site=other, users=users)


def enroll(
    session: Session,
    world: World,
    study: StudyDefinition,
    study_subject_id: str = "ALS-001",
    name: str = "Jordan Example",
    *,
    verified: bool = True,
) -> Subject:
    form = study_service.EnrollmentForm(
        study_subject_id=study_subject_id,
        name=name,
        date_of_birth=date(1961, 4, 12),
        medical_record_number="MRN-12345",
        site_id=world.site.id,
        consent_date=date(2026, 10, 1),
    )
    subject = study_service.enroll_subject(session, world.users["coordinator"], study, form, PASSWORD)
    if verified:  # a batch starts only from a verified enrollment
        study_service.verify_enrollment(session, world.users["investigator"], PASSWORD, subject)
    session.commit()
    return subject


def enrollment_form(world: World, **changes: str) -> dict[str, str]:
    """What the enrollment form sends for a new subject, with ``changes``."""
    form = {
        "study_subject_id": "ALS-002",
        "name": "Casey Sample",
        "date_of_birth": "1970-05-17",
        "medical_record_number": "MRN-777",
        "site_id": str(world.site.id),
        "consent_date": "2026-10-15",
        "password": PASSWORD,
    }
    form.update(changes)
    return form


@pytest.fixture
def subject(session: Session, world: World, study: StudyDefinition) -> Subject:
    return enroll(session, world, study)


def count_rows(session: Session, model: Any) -> int:
    return len(session.scalars(select(model)).all())


# --- the web app ----------------------------------------------------------------------------------------


@pytest.fixture
def app(database_url: str, tmp_path: Path, world: World) -> Flask:
    return build_app(database_url, tmp_path)


def build_app(database_url: str, tmp_path: Path, **overrides: Any) -> Flask:
    """The test app (CSRF off, its own instance folder), with some settings changed."""
    settings: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret",
        "INSTANCE_PATH": str(tmp_path),
        "WTF_CSRF_ENABLED": False,
        "TESTING": True,
    }
    settings.update(overrides)
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    return client.post("/login", data={"username": username, "password": password})


# --- the command line -----------------------------------------------------------------------------------


def run_cli(
    database_url: str,
    *args: str,
    stdin: str = "",
    tmp_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MFG_DATABASE_URL": database_url, **(env or {})}
    if tmp_path is not None:
        env["MFG_INSTANCE_PATH"] = str(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "mfg", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )


# --- the bench ------------------------------------------------------------------------------------------


@pytest.fixture
def bench(session: Session, world: World) -> Any:
    from tests.bench_data import set_up_bench

    bench = set_up_bench(session, world.users["qa"], PASSWORD)
    session.commit()
    return bench


# --- concurrency ---------------------------------------------------------------------------------------


def all_at_once(work: list[Callable[[], Any]]) -> list[Any]:
    """Run every callable in its own thread, released together."""
    gate = threading.Barrier(len(work))
    results: list[Any] = [None] * len(work)

    def run(index: int) -> None:
        gate.wait()
        results[index] = work[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    return results
