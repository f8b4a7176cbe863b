"""One-time passwords at the service layer and the command line: whoever set an account's password (an
administrator) cannot sign or act as its holder, by any path, until the holder chose their own (DESIGN §7)."""

from __future__ import annotations

import json
from datetime import date

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.errors import PermissionRefused, SignatureRefused, ValidationRefused
from mfg.identity import passwords
from mfg.identity import service as identity_service
from mfg.identity.models import Signature, User
from mfg.study import service as study_service
from mfg.study.definition import StudyDefinition
from tests.conftest import World, make_user, run_cli

ONE_TIME = "admin-chose-this-1"
OWN = "only-they-know-it-7"


def _one_time_user(session: Session, role: str, username: str) -> User:
    user = make_user(session, role, username, password=ONE_TIME, one_time=True)
    session.commit()
    return user


def _signatures(session: Session, user: User) -> list[Signature]:
    return list(session.scalars(select(Signature).where(Signature.signer_id == user.id)))


def test_an_account_made_by_the_service_has_a_one_time_password_unless_told_otherwise(
    session: Session,
) -> None:
    made = identity_service.create_user(
        session, "admin", username="fresh", full_name="Fresh Person", role="qa", password=ONE_TIME
    )
    assert made.password_must_change is True
    assert make_user(session, "qa", "ready").password_must_change is False


def test_a_one_time_password_signs_nothing_by_any_service(
    session: Session, world: World, study: StudyDefinition
) -> None:
    supervisor = _one_time_user(session, "supervisor", "calsuper")
    with pytest.raises(SignatureRefused) as refused:
        identity_service.sign(session, supervisor, ONE_TIME, "approved", world.site)
    assert refused.value.message == (
        "not signed: calsuper's password was set by an administrator and works only to choose a new one: "
        "calsuper must sign in and choose their own password first"
    )
    session.rollback()
    # a service that checks who acts before it signs says so too, and stores nothing
    coordinator = _one_time_user(session, "coordinator", "newcoord")
    form = study_service.EnrollmentForm(
        study_subject_id="ALS-050",
        name="Casey Sample",
        date_of_birth=date(1970, 5, 17),
        medical_record_number="MRN-777",
        site_id=world.site.id,
        consent_date=date(2026, 10, 15),
    )
    with pytest.raises(PermissionRefused, match="newcoord must sign in and choose their own password first"):
        study_service.enroll_subject(session, coordinator, study, form, ONE_TIME)
    session.rollback()
    # a second person at a shared terminal, named by username, is the same account
    verifier = identity_service.find_signer(session, "calsuper")
    with pytest.raises(SignatureRefused, match="set by an administrator"):
        identity_service.sign(session, verifier, ONE_TIME, "verified", world.site)
    session.rollback()
    assert _signatures(session, supervisor) == [] and _signatures(session, coordinator) == []


def test_choosing_a_password_clears_the_flag_ends_sessions_and_is_audited_without_it(
    session: Session, world: World
) -> None:
    user = _one_time_user(session, "supervisor", "calsuper")
    version = user.session_version
    identity_service.choose_password(session, user, ONE_TIME, OWN, OWN)
    session.commit()

    assert user.password_must_change is False
    assert user.session_version == version + 1
    assert passwords.password_matches(user.password_hash, OWN)
    assert not passwords.password_matches(user.password_hash, ONE_TIME)  # the administrator's is gone
    [event] = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "password_change", AuditEvent.actor == "calsuper")
    ).all()
    assert event.reason == "replaced the one-time password an administrator set"
    changes = json.loads(event.changes)
    assert changes["password_must_change"] == [True, False]
    assert changes["password_hash"][1].startswith("sha256:")  # a digest of the hash, never the password
    trail = " ".join(e.changes + e.detail + (e.reason or "") for e in session.scalars(select(AuditEvent)))
    assert OWN not in trail and ONE_TIME not in trail
    assert audit_service.verify(session).ok

    signature = identity_service.sign(session, user, OWN, "approved", world.site)
    session.commit()
    assert _signatures(session, user) == [signature]
    with pytest.raises(SignatureRefused, match="password for calsuper is wrong"):
        identity_service.sign(session, user, ONE_TIME, "approved", world.other_site)


@pytest.mark.parametrize(
    ("current", "new", "again", "message"),
    [
        ("", OWN, OWN, "enter your current password"),
        (ONE_TIME, OWN, OWN + "x", "the new password and its repetition differ"),
        (ONE_TIME, "short", "short", "a password needs at least 10 characters"),
        (ONE_TIME, ONE_TIME, ONE_TIME, "the new password must differ from the current one, which an admin"),
        ("not-the-password-1", OWN, OWN, "your current password is wrong: the password is not changed"),
    ],
)
def test_a_refused_change_leaves_the_one_time_password(
    session: Session, world: World, current: str, new: str, again: str, message: str
) -> None:
    user = _one_time_user(session, "qa", "newqa")
    with pytest.raises(ValidationRefused, match=message):
        identity_service.choose_password(session, user, current, new, again)
    session.rollback()
    assert user.password_must_change is True
    assert passwords.password_matches(user.password_hash, ONE_TIME)


def test_mfg_user_add_makes_a_one_time_password_and_says_so(database_url: str, session: Session) -> None:
    result = run_cli(
        database_url,
        "user",
        "add",
        "firstadmin",
        "--name",
        "First Administrator",
        "--role",
        "admin",
        "--password-stdin",
        stdin=f"{ONE_TIME}\n",
    )
    assert result.returncode == 0, result.stderr
    assert "account firstadmin (admin) created" in result.stdout
    assert "one-time password: firstadmin chooses their own at first sign-in" in result.stdout
    user = session.scalar(select(User).where(User.username == "firstadmin"))
    assert user is not None and user.password_must_change is True
    session.rollback()  # SQLite: an open transaction holds the lock the CLI needs, and the view is stale
    tech = run_cli(
        database_url,
        "user",
        "add",
        "clitech",
        "--name",
        "Cli Tech",
        "--role",
        "technician",
        "--password-stdin",
        stdin=f"{ONE_TIME}\n",
    )
    assert tech.returncode == 0, tech.stderr
    clitech = identity_service.get_user(session, "clitech")
    with pytest.raises(SignatureRefused, match="clitech must sign in and choose their own password first"):
        identity_service.sign(session, clitech, ONE_TIME, "performed", clitech)
    session.rollback()
    assert audit_service.verify(session).ok
