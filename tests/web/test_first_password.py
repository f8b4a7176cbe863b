"""Issue 8, a reviewer's finding: "The administrator can still record calibrations and release lots, through
an account it creates: sign in as admin → Accounts → create calsuper with role supervisor and a password admin
chooses → sign in as calsuper (no forced password change) → record a calibration; it is accepted."

Whoever sets an account's password must not be able to sign as that person (DESIGN §7: administrators cannot
perform GMP actions). An account an administrator creates carries a one-time password: it signs in only to
choose its own, and signs nothing until it has.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from mfg import clock
from mfg.audit import service as audit_service
from mfg.identity.models import Signature, User
from mfg.materials.models import EquipmentCalibration, ReagentLot
from tests.bench_data import Bench
from tests.conftest import PASSWORD, World, build_app, enrollment_form, login, run_cli
from tests.web.test_auth import account, events, row_of, text_of

ONE_TIME = "admin-chose-this-1"  # the password the administrator typed on the Accounts page
OWN = "only-calsuper-knows-7"  # the one its holder chooses
WRONG = "not-the-password-1"


def _admin_creates(app: Flask, username: str, role: str) -> TestResponse:
    admin = app.test_client()
    assert login(admin, "admin").status_code == 302
    created = admin.post(
        "/admin/users",
        data={
            "username": username,
            "full_name": f"{username.title()} Person",
            "role": role,
            "password": ONE_TIME,
        },
    )
    assert created.status_code == 302, created.text[:2000]
    return admin.get(created.headers["Location"])


def _signed_in(app: Flask, username: str, password: str) -> FlaskClient:
    client = app.test_client()
    response = login(client, username, password)
    assert response.status_code == 302, text_of(response)[:2000]
    return client


def _choose(client: FlaskClient, current: str, new: str, again: str | None = None) -> TestResponse:
    return client.post(
        "/password",
        data={
            "password": current,
            "new_password": new,
            "new_password_again": again or new,
        },
    )


def _calibration_form(password: str) -> dict[str, str]:
    return {
        "calibrated_on": clock.today().isoformat(),
        "next_due": (clock.today() + timedelta(days=365)).isoformat(),
        "certificate_ref": "CAL-2026-0999",
        "result": "pass",
        "password": password,
    }


def _count(factory: sessionmaker[Session], model: Any) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model)) or 0


def _signatures_by(factory: sessionmaker[Session], username: str) -> int:
    with factory() as s:
        return (
            s.scalar(
                select(func.count())
                .select_from(Signature)
                .join(User, User.id == Signature.signer_id)
                .where(User.username == username)
            )
            or 0
        )


def _user(factory: sessionmaker[Session], username: str) -> User:
    with factory() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        s.expunge(user)
        return user


def _sent_to_choose(response: TestResponse) -> bool:
    return response.status_code == 302 and response.headers["Location"] == "/password"


def _sent_to_login(response: TestResponse) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


def _trail_verifies(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        verdict = audit_service.verify(s)
        assert verdict.ok, verdict.problems


def test_the_reviewers_path_is_refused_until_calsuper_chose_its_own_password(
    app: Flask, world: World, bench: Bench, session_factory: sessionmaker[Session]
) -> None:
    cen_old = bench.equipment["CEN-OLD"].id
    accounts_page = _admin_creates(app, "calsuper", "supervisor")
    assert "Account calsuper created with a one-time password" in text_of(accounts_page)
    calibrations = _count(session_factory, EquipmentCalibration)

    # The administrator knows the password it typed: it signs in, but only to choose a new one.
    as_calsuper = app.test_client()
    assert _sent_to_choose(login(as_calsuper, "calsuper", ONE_TIME))
    page = text_of(as_calsuper.get("/password"))
    assert "The password you signed in with was set by an administrator" in page
    assert "Materials" not in page  # no navigation to pages it cannot open
    recorded = as_calsuper.post(
        f"/materials/equipment/{cen_old}/calibrations", data=_calibration_form(ONE_TIME)
    )
    assert recorded.status_code == 403
    assert (
        "calsuper's password was set by an administrator and works only to choose a new one: "
        "calsuper must sign in and choose their own password first"
    ) in text_of(recorded)
    for page_url in ("/", "/materials/", f"/materials/equipment/{cen_old}", "/bench/"):
        assert _sent_to_choose(as_calsuper.get(page_url)), page_url
    assert "Choose your own password first" in text_of(as_calsuper.get("/password"))
    assert _count(session_factory, EquipmentCalibration) == calibrations
    assert _signatures_by(session_factory, "calsuper") == 0
    [attempt] = [e for e in events(session_factory, "refused", "calsuper")]
    assert attempt["detail"]["endpoint"] == "materials.record_calibration"
    assert "calsuper's password was set by an administrator" in attempt["detail"]["message"]

    # calsuper chooses its own: every session of the account ends, the administrator's too.
    calsuper = _signed_in(app, "calsuper", ONE_TIME)
    chosen = _choose(calsuper, ONE_TIME, OWN)
    assert _sent_to_login(chosen)
    assert "Password changed" in text_of(calsuper.get(chosen.headers["Location"]))
    assert _sent_to_login(as_calsuper.get("/materials/"))
    assert login(app.test_client(), "calsuper", ONE_TIME).status_code == 401  # the administrator's no longer
    calsuper = _signed_in(app, "calsuper", OWN)
    assert calsuper.get("/").status_code == 200
    accepted = calsuper.post(f"/materials/equipment/{cen_old}/calibrations", data=_calibration_form(OWN))
    assert accepted.status_code == 302 and accepted.headers["Location"] == f"/materials/equipment/{cen_old}"
    assert _count(session_factory, EquipmentCalibration) == calibrations + 1
    assert _signatures_by(session_factory, "calsuper") == 1
    assert _user(session_factory, "calsuper").password_must_change is False
    [change] = events(session_factory, "password_change", "calsuper")
    assert change["reason"] == "replaced the one-time password an administrator set"
    assert change["detail"] == {"where": "password change from 127.0.0.1"}
    # whoever signed in with the one-time password is on record as having done so
    logins = [e["detail"] for e in events(session_factory, "login", "calsuper")]
    assert [d.get("one_time_password", False) for d in logins] == [True, True, False]
    _trail_verifies(session_factory)


def test_a_lot_is_not_released_by_an_account_the_administrator_just_made(
    app: Flask, world: World, bench: Bench, session_factory: sessionmaker[Session]
) -> None:
    quarantined = bench.lots["LOT-COLL-Q"].id
    _admin_creates(app, "calqa", "qa")
    calqa = _signed_in(app, "calqa", ONE_TIME)
    released = calqa.post(
        f"/materials/lots/{quarantined}/status", data={"status": "released", "reason": "CoA checked"}
    )
    assert released.status_code == 403
    assert "calqa must sign in and choose their own password first" in text_of(released)
    with session_factory() as s:
        lot = s.get(ReagentLot, quarantined)
        assert lot is not None and lot.status == "quarantined"


def test_the_api_refuses_a_one_time_password_with_json(
    app: Flask, world: World, session_factory: sessionmaker[Session]
) -> None:
    _admin_creates(app, "newcoord", "coordinator")
    client = _signed_in(app, "newcoord", ONE_TIME)
    response = client.get("/api/subjects/by-coi/A999926ABCDEF")
    assert response.status_code == 403
    assert response.get_json()["message"].endswith(
        "newcoord must sign in and choose their own password first"
    )
    assert [e["detail"]["endpoint"] for e in events(session_factory, "refused", "newcoord")] == [
        "api.subject_by_coi"
    ]


def test_a_second_person_with_a_one_time_password_cannot_verify(
    app: Flask, world: World, session_factory: sessionmaker[Session]
) -> None:
    """At a shared terminal the verifier types a username and password: the service refuses the account."""
    _admin_creates(app, "coord3", "coordinator")
    coordinator = _signed_in(app, "coordinator", PASSWORD)
    enrolled = coordinator.post("/clinic/subjects/new", data=enrollment_form(world))
    assert enrolled.status_code == 302, text_of(enrolled)[:2000]
    verified = coordinator.post(
        enrolled.headers["Location"] + "/verify", data={"username": "coord3", "password": ONE_TIME}
    )
    assert verified.status_code == 403  # the service checks who acts before it asks for the signature
    assert "coord3's password was set by an administrator" in text_of(verified)
    assert _signatures_by(session_factory, "coord3") == 0


def test_wrong_current_passwords_count_towards_the_lockout(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    app = build_app(database_url, tmp_path, LOCKOUT_THRESHOLD=3)
    _admin_creates(app, "calsuper", "supervisor")
    client = _signed_in(app, "calsuper", ONE_TIME)
    for attempt in (1, 2):
        refused = _choose(client, WRONG, OWN)
        assert refused.status_code == 422
        assert "your current password is wrong: the password is not changed" in text_of(refused)
        assert account(session_factory, "calsuper") == (False, attempt)
    _choose(client, WRONG, OWN)
    assert account(session_factory, "calsuper") == (True, 3)
    [lockout] = events(session_factory, "lockout", "calsuper")
    assert lockout["reason"] == "wrong password at password change from 127.0.0.1: 3 failures, account locked"
    assert _sent_to_login(client.get("/password"))  # the lock ended the session
    assert login(app.test_client(), "calsuper", ONE_TIME).status_code == 401
    assert _user(session_factory, "calsuper").password_must_change is True
    _trail_verifies(session_factory)


def test_the_new_password_must_differ_match_and_be_acceptable(
    app: Flask, world: World, session_factory: sessionmaker[Session]
) -> None:
    _admin_creates(app, "calsuper", "supervisor")
    client = _signed_in(app, "calsuper", ONE_TIME)
    for (new, again), message in {
        (ONE_TIME, ONE_TIME): "must differ from the current one, which an administrator chose",
        (OWN, OWN + "!"): "the new password and its repetition differ: type both again",
        ("short", "short"): "a password needs at least 10 characters",
        (" " + OWN, " " + OWN): "a password cannot start or end with a space",
    }.items():
        refused = _choose(client, ONE_TIME, new, again)
        assert refused.status_code == 422 and message in text_of(refused), message
        assert ONE_TIME not in refused.text and OWN not in refused.text  # never typed back into the page
    assert account(session_factory, "calsuper") == (False, 0)  # the right current password: no failure
    assert _user(session_factory, "calsuper").password_must_change is True
    refusals = events(session_factory, "refused", "calsuper")
    assert len(refusals) == 4  # on record, with what was typed: never the passwords
    assert all(e["detail"]["form"] == {} for e in refusals)
    assert _sent_to_choose(client.get("/"))


def test_anyone_may_change_their_own_password_and_the_copies_of_their_session_end(
    app: Flask, world: World, session_factory: sessionmaker[Session]
) -> None:
    technician = _signed_in(app, "technician", PASSWORD)
    elsewhere = _signed_in(app, "technician", PASSWORD)
    assert technician.get("/password").status_code == 200
    version = _user(session_factory, "technician").session_version
    assert _sent_to_login(_choose(technician, PASSWORD, OWN))
    assert _user(session_factory, "technician").session_version == version + 1
    assert _sent_to_login(elsewhere.get("/"))
    assert [e["reason"] for e in events(session_factory, "password_change", "technician")] == [
        "changed own password"
    ]
    assert _signed_in(app, "technician", OWN).get("/").status_code == 200
    _trail_verifies(session_factory)


def test_the_first_administrator_made_at_the_command_line_chooses_its_password_at_first_sign_in(
    app: Flask, database_url: str, world: World, session_factory: sessionmaker[Session]
) -> None:
    made = run_cli(
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
    assert made.returncode == 0, made.stderr
    client = app.test_client()
    assert _sent_to_choose(login(client, "firstadmin", ONE_TIME))
    assert _sent_to_choose(client.get("/admin/users"))
    assert _sent_to_login(_choose(client, ONE_TIME, OWN))
    client = _signed_in(app, "firstadmin", OWN)
    assert client.get("/admin/users").status_code == 200
    _trail_verifies(session_factory)


def test_the_accounts_page_says_which_passwords_are_one_time(app: Flask, world: World) -> None:
    page = text_of(_admin_creates(app, "calsuper", "supervisor"))
    assert "One-time password" in page and "you cannot sign as them" in page
    assert "active, one-time password" in row_of(page, "calsuper")
    assert "one-time" not in row_of(page, "technician")
