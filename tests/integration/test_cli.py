"""The `mfg` command as an administrator uses it."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg.audit import service as audit_service
from mfg.identity import passwords
from mfg.identity.models import User
from tests.conftest import run_cli


def test_user_add_reads_the_password_from_stdin_and_is_audited(database_url: str, session: Session) -> None:
    result = run_cli(
        database_url,
        "user",
        "add",
        "jdoe",
        "--name",
        "Jane Doe",
        "--role",
        "technician",
        "--password-stdin",
        stdin="a-long-secret-1\n",
    )
    assert result.returncode == 0, result.stderr
    user = session.scalar(select(User).where(User.username == "jdoe"))
    assert user is not None and user.full_name == "Jane Doe" and user.role == "technician"
    assert passwords.password_matches(user.password_hash, "a-long-secret-1")
    assert "a-long-secret-1" not in user.password_hash
    assert audit_service.verify(session).ok


def test_user_add_refuses_bad_input_with_a_message(database_url: str, session: Session) -> None:
    bad_role = run_cli(
        database_url,
        "user",
        "add",
        "jdoe",
        "--name",
        "Jane Doe",
        "--role",
        "wizard",
        "--password-stdin",
        stdin="a-long-secret-1\n",
    )
    assert bad_role.returncode == 1 and "unknown role 'wizard'" in bad_role.stderr
    short = run_cli(
        database_url,
        "user",
        "add",
        "jdoe",
        "--name",
        "Jane Doe",
        "--role",
        "qa",
        "--password-stdin",
        stdin="short\n",
    )
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    assert session.scalar(select(User).where(User.username == "jdoe")) is None


def test_deactivated_users_stay_on_record_and_their_names_are_never_reused(
    database_url: str, session: Session
) -> None:
    assert (
        run_cli(
            database_url,
            "user",
            "add",
            "jdoe",
            "--name",
            "Jane Doe",
            "--role",
            "qa",
            "--password-stdin",
            stdin="a-long-secret-1\n",
        ).returncode
        == 0
    )
    result = run_cli(database_url, "user", "deactivate", "jdoe")
    assert result.returncode == 0, result.stderr
    user = session.scalar(select(User).where(User.username == "jdoe"))
    assert user is not None and user.active is False
    session.rollback()  # SQLite: an open transaction holds the write lock the CLI needs
    again = run_cli(
        database_url,
        "user",
        "add",
        "jdoe",
        "--name",
        "John Doe",
        "--role",
        "qa",
        "--password-stdin",
        stdin="a-long-secret-2\n",
    )
    assert again.returncode == 1 and "never reused" in again.stderr
    assert run_cli(database_url, "audit", "verify").returncode == 0


def test_cli_uses_mfg_database_url(database_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    # The instance folder's default SQLite file must not be touched when a URL is given.
    result = run_cli(database_url, "audit", "verify", tmp_path=tmp_path)
    assert result.returncode == 0
    assert not (tmp_path / "mfg.sqlite3").exists()


def test_init_brings_new_mbr_versions_to_qa_as_drafts(database_url: str, session: Session) -> None:
    """A release with a new MBR version (the dose MBR's version 2) registers it as a draft; nobody can
    start a batch on it until QA approves it. Repeating init registers nothing more."""
    from mfg.process.models import MbrVersion

    first = run_cli(database_url, "init")
    assert first.returncode == 0, first.stderr
    assert (
        "master batch record AAMSC-DOSE v2 registered as a draft: QA approves it before use" in first.stdout
    )
    drafts = session.scalars(select(MbrVersion).where(MbrVersion.status == "draft")).all()
    assert {(v.code, v.version) for v in drafts} == {("AAMSC-MBR", 1), ("AAMSC-DOSE", 2)}
    again = run_cli(database_url, "init")
    assert again.returncode == 0 and "registered as a draft" not in again.stdout
