"""Signing in and out as a person at a shared terminal sees it: lockout, idle timeout, CSRF, refusals."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from mfg import clock
from mfg.audit.models import AuditEvent
from mfg.identity.models import User
from mfg.identity.rules import ROLE_TITLES
from mfg.study.models import Site, Subject
from tests.conftest import PASSWORD, World, build_app, enrollment_form, login

WRONG = "not-the-password-1"


# --- helpers --------------------------------------------------------------------------------------------


def text_of(response: TestResponse) -> str:
    """The page as a reader sees it: entities decoded (Jinja escapes quotes)."""
    return html.unescape(response.get_data(as_text=True))


def events(factory: sessionmaker[Session], action: str, actor: str | None = None) -> list[dict[str, Any]]:
    """Audit events as plain data, read in a short session of their own (SQLite's write lock stays free)."""
    with factory() as s:
        query = select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.id)
        if actor is not None:
            query = query.where(AuditEvent.actor == actor)
        return [
            {
                "actor": e.actor,
                "entity_type": e.entity_type,
                "entity_id": e.entity_id,
                "reason": e.reason,
                "detail": json.loads(e.detail),
            }
            for e in s.scalars(query)
        ]


def account(factory: sessionmaker[Session], username: str) -> tuple[bool, int]:
    """(locked, failed_logins) as stored."""
    with factory() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        return user.locked, user.failed_logins


def subject_count(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(Subject)) or 0


def csrf_token_in(response: TestResponse) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', response.get_data(as_text=True))
    assert found, "the page carries no CSRF token"
    return found.group(1)


def same_page(page: str) -> str:
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token" value=""', page)


def row_of(page: str, username: str) -> str:
    """The accounts-table row of one user."""
    for row in re.findall(r"<tr[^>]*>.*?</tr>", page, flags=re.S):
        if f"<td>{username}</td>" in row:
            return row
    raise AssertionError(f"no row for {username} on the page")


def set_idle(client: FlaskClient, minutes: float) -> None:
    with client.session_transaction() as sess:
        sess["last_seen"] = (clock.now() - timedelta(minutes=minutes)).timestamp()


# --- login ----------------------------------------------------------------------------------------------


def test_login_lands_on_the_home_page_with_the_role_title(client: FlaskClient) -> None:
    response = login(client, "qcanalyst")
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    assert f"<h1>{ROLE_TITLES['qc_analyst']}</h1>" in text_of(home)
    assert "Signed in as qcanalyst" in text_of(home)


def test_a_login_is_recorded_in_the_audit_trail(
    client: FlaskClient, session_factory: sessionmaker[Session]
) -> None:
    login(client, "nurse")
    assert [e["actor"] for e in events(session_factory, "login")] == ["nurse"]


def test_wrong_password_is_refused_with_401(
    client: FlaskClient, session_factory: sessionmaker[Session]
) -> None:
    response = login(client, "technician", WRONG)
    assert response.status_code == 401
    page = text_of(response)
    assert "username or password is wrong" in page
    assert 'value="technician"' in page  # the username stays typed in; the password does not
    assert WRONG not in page
    assert client.get("/").status_code == 302  # not signed in
    assert account(session_factory, "technician") == (False, 1)


def test_unknown_username_gets_the_same_answer_as_a_wrong_password(
    client: FlaskClient, session_factory: sessionmaker[Session]
) -> None:
    known = login(client, "technician", WRONG)
    unknown = login(client, "nosuchperson", WRONG)
    assert unknown.status_code == known.status_code == 401
    refusal = re.compile(r'<p class="flash flash-error refusal" role="alert">(.*?)</p>', re.S)
    assert refusal.findall(text_of(unknown)) == refusal.findall(text_of(known))
    assert "username or password is wrong" in text_of(unknown)
    # the pages are the same but for what was typed and the CSRF token (it carries a timestamp)
    assert same_page(text_of(unknown).replace("nosuchperson", "technician")) == same_page(text_of(known))
    # ...but the attempt is on record for the administrator
    assert [e["actor"] for e in events(session_factory, "login_failed")] == ["technician", "nosuchperson"]


def test_deactivated_account_cannot_sign_in(app: Flask, session_factory: sessionmaker[Session]) -> None:
    admin = app.test_client()
    login(admin, "admin")
    response = admin.post("/admin/users/pharmacist/deactivate", data={"reason": "left the company"})
    assert response.status_code == 302
    response = login(app.test_client(), "pharmacist")
    assert response.status_code == 401
    # the same words as for a wrong password: an anonymous caller learns nothing of the account's state...
    assert "deactivated" not in text_of(response)
    assert "the account cannot sign in: ask an administrator" in text_of(response)
    # ...while the trail keeps the precise reason
    assert [e["detail"]["why"] for e in events(session_factory, "login_refused")] == ["account deactivated"]


def test_login_redirects_back_to_the_page_asked_for(client: FlaskClient) -> None:
    first = client.get("/clinic/subjects")
    assert first.status_code == 302
    assert first.headers["Location"] == "/login?next=/clinic/subjects"
    response = client.post(
        "/login", data={"username": "coordinator", "password": PASSWORD, "next": "/clinic/subjects"}
    )
    assert response.headers["Location"] == "/clinic/subjects"


OFF_SITE_TARGETS = [
    "https://evil.example/x",
    "//evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example/x",
    "/\t/evil.example/x",
    "javascript:alert(1)",
]


def test_login_never_redirects_off_site(client: FlaskClient, subtests: pytest.Subtests) -> None:
    """Browsers read a backslash as a slash and drop tabs: '/\\host' is '//host', another site."""
    for target in OFF_SITE_TARGETS:
        with subtests.test(target=target):
            response = client.post(
                "/login", data={"username": "coordinator", "password": PASSWORD, "next": target}
            )
            assert response.status_code == 302
            location = re.sub(r"[\t\n\r]", "", response.headers["Location"]).replace("\\", "/")
            assert location.startswith("/") and not location.startswith("//"), location
            assert urlsplit(location).netloc == ""
            client.post("/logout")


# --- lockout --------------------------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account_until_an_admin_unlocks_it(
    app: Flask, session_factory: sessionmaker[Session]
) -> None:
    client = app.test_client()
    for attempt in range(1, 6):
        response = login(client, "technician", WRONG)
        assert response.status_code == 401, f"attempt {attempt}"
    assert account(session_factory, "technician") == (True, 5)
    assert [e["reason"] for e in events(session_factory, "login_failed", "technician")] == [
        "wrong password at login from 127.0.0.1"
    ] * 4
    lockouts = events(session_factory, "lockout", "technician")
    assert len(lockouts) == 1
    assert "5 failures, account locked" in lockouts[0]["reason"]

    # The right password no longer opens it.
    response = login(client, "technician", PASSWORD)
    assert response.status_code == 401
    assert "locked" not in text_of(response)  # the generic answer: the trail, not the page, says why
    assert "ask an administrator" in text_of(response)
    assert client.get("/").status_code == 302
    refused = events(session_factory, "login_refused")
    assert [(e["actor"], e["detail"]["why"]) for e in refused] == [("technician", "account locked")]

    # The administrator sees it...
    admin = app.test_client()
    login(admin, "admin")
    page = text_of(admin.get("/admin/users"))
    assert "LOCKED" in row_of(page, "technician")
    assert "LOCKED" not in row_of(page, "nurse")
    failures = page.split("Recent failed logins and lockouts", 1)[1]
    assert len(re.findall(r"<td>technician</td><td>login_failed</td>", failures)) == 4
    assert len(re.findall(r"<td>technician</td><td>lockout</td>", failures)) == 1
    assert "technician" in text_of(admin.get("/")).split("Locked after repeated failed logins", 1)[1]

    # ...an unlock without a reason is refused and changes nothing...
    response = admin.post("/admin/users/technician/unlock", data={"reason": "  "})
    assert response.status_code == 422
    assert "Reason for unlocking is required" in text_of(response)
    assert account(session_factory, "technician") == (True, 5)
    assert login(client, "technician", PASSWORD).status_code == 401

    # ...and an unlock with a reason lets the user back in.
    response = admin.post("/admin/users/technician/unlock", data={"reason": "identity confirmed by phone"})
    assert response.status_code == 302
    assert "Account technician unlocked" in text_of(admin.get(response.headers["Location"]))
    assert account(session_factory, "technician") == (False, 0)
    assert [e["reason"] for e in events(session_factory, "unlock")] == ["identity confirmed by phone"]
    response = login(client, "technician", PASSWORD)
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_unlocking_an_account_that_is_not_locked_is_refused(
    app: Flask, session_factory: sessionmaker[Session]
) -> None:
    admin = app.test_client()
    login(admin, "admin")
    response = admin.post("/admin/users/nurse/unlock", data={"reason": "just in case"})
    assert response.status_code == 422
    assert "nurse is not locked" in text_of(response)
    response = admin.post("/admin/users/nobody/unlock", data={"reason": "just in case"})
    assert response.status_code == 404
    assert "no account named 'nobody'" in text_of(response)


def test_a_success_before_the_threshold_resets_the_count(
    client: FlaskClient, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(4):
        login(client, "supervisor", WRONG)
    assert login(client, "supervisor").status_code == 302
    client.post("/logout")
    assert account(session_factory, "supervisor") == (False, 0)
    login(client, "supervisor", WRONG)
    assert account(session_factory, "supervisor") == (False, 1)


def test_a_locked_account_signed_in_elsewhere_is_signed_out(app: Flask) -> None:
    bench = app.test_client()
    assert login(bench, "technician").status_code == 302
    other = app.test_client()
    for _ in range(5):
        login(other, "technician", WRONG)
    assert bench.get("/").status_code == 302


# --- idle timeout ---------------------------------------------------------------------------------------


def test_idle_session_is_signed_out_after_15_minutes(
    client: FlaskClient, session_factory: sessionmaker[Session]
) -> None:
    login(client, "technician")
    assert client.get("/").status_code == 200
    set_idle(client, 16)
    response = client.get("/clinic/subjects")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    page = text_of(client.get("/login"))
    assert "Signed out after 15 minutes without activity" in page
    timeouts = events(session_factory, "session_timeout")
    assert len(timeouts) == 1
    assert timeouts[0]["actor"] == "technician"
    assert timeouts[0]["detail"]["limit_seconds"] == 15 * 60
    assert timeouts[0]["detail"]["idle_seconds"] >= 16 * 60
    assert client.get("/").status_code == 302  # stays signed out


def test_activity_within_the_limit_keeps_the_session(
    client: FlaskClient, session_factory: sessionmaker[Session]
) -> None:
    login(client, "technician")
    client.get("/")
    set_idle(client, 14)
    assert client.get("/").status_code == 200
    # the request moved the clock on: another 14 minutes are fine too
    with client.session_transaction() as sess:
        assert clock.now().timestamp() - sess["last_seen"] < 60
    assert events(session_factory, "session_timeout") == []


def test_idle_timeout_on_a_json_request_is_a_401(client: FlaskClient) -> None:
    login(client, "technician")
    client.get("/")
    set_idle(client, 16)
    response = client.get("/api/subjects/by-coi/A999926ABCDEF")
    assert response.status_code == 401
    assert "Signed out after 15 minutes" in response.get_json()["message"]


def test_idle_timeout_setting_is_honoured(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    app = build_app(database_url, tmp_path, IDLE_TIMEOUT_MINUTES=1)
    client = app.test_client()
    login(client, "nurse")
    assert "signs out after 1 minute" in text_of(client.get("/"))
    set_idle(client, 0.5)
    assert client.get("/").status_code == 200
    set_idle(client, 2)  # well within the default 15, beyond this terminal's 1
    response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "Signed out after 1 minute" in text_of(client.get("/login"))
    assert [e["detail"]["limit_seconds"] for e in events(session_factory, "session_timeout")] == [60]


def test_a_session_left_right_after_login_times_out_too(client: FlaskClient) -> None:
    """Sign in and walk away without opening a page: the idle clock starts at login, not at the next click."""
    assert login(client, "technician").status_code == 302
    with clock.pinned(clock.now() + timedelta(minutes=16)):
        response = client.get("/")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"


# --- CSRF -----------------------------------------------------------------------------------------------


@pytest.fixture
def csrf_app(database_url: str, tmp_path: Path, world: World) -> Flask:
    return build_app(database_url, tmp_path, WTF_CSRF_ENABLED=True)


def test_login_without_a_csrf_token_is_refused_and_recorded(
    csrf_app: Flask, session_factory: sessionmaker[Session]
) -> None:
    client = csrf_app.test_client()
    response = client.post("/login", data={"username": "coordinator", "password": PASSWORD})
    assert response.status_code == 400
    page = text_of(response)
    assert "Form refused" in page
    assert "security token missing or invalid" in page
    assert client.get("/").status_code == 302  # not signed in
    refused = events(session_factory, "refused")
    assert len(refused) == 1
    assert "security token" in refused[0]["detail"]["message"]
    assert refused[0]["detail"]["path"] == "/login"
    assert "password" not in refused[0]["detail"]["form"]
    assert events(session_factory, "login") == []


def test_login_with_a_forged_csrf_token_is_refused(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    client.get("/login")
    response = client.post(
        "/login", data={"username": "coordinator", "password": PASSWORD, "csrf_token": "forged.token"}
    )
    assert response.status_code == 400
    assert "security token" in text_of(response)


def test_enrollment_without_a_csrf_token_stores_nothing_and_with_one_succeeds(
    csrf_app: Flask, world: World, session_factory: sessionmaker[Session]
) -> None:
    client = csrf_app.test_client()
    token = csrf_token_in(client.get("/login"))
    response = client.post(
        "/login", data={"username": "coordinator", "password": PASSWORD, "csrf_token": token}
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200

    response = client.post("/clinic/subjects/new", data=enrollment_form(world))
    assert response.status_code == 400
    assert "Form refused" in text_of(response)
    assert "security token" in text_of(response)
    assert subject_count(session_factory) == 0
    refused = events(session_factory, "refused", "coordinator")
    assert len(refused) == 1
    assert refused[0]["detail"]["path"] == "/clinic/subjects/new"
    assert refused[0]["detail"]["form"]["study_subject_id"] == "ALS-002"
    assert "password" not in refused[0]["detail"]["form"]

    token = csrf_token_in(client.get("/clinic/subjects/new"))
    response = client.post("/clinic/subjects/new", data={**enrollment_form(world), "csrf_token": token})
    assert response.status_code == 302
    assert subject_count(session_factory) == 1


def test_logout_needs_the_csrf_token_too(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    token = csrf_token_in(client.get("/login"))
    client.post("/login", data={"username": "nurse", "password": PASSWORD, "csrf_token": token})
    assert client.post("/logout").status_code == 400  # a forged cross-site sign-out is refused
    assert client.get("/").status_code == 200
    token = csrf_token_in(client.get("/"))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/").status_code == 302


# --- logout ---------------------------------------------------------------------------------------------


def test_logout_is_post_only_and_ends_the_session(
    client: FlaskClient, session_factory: sessionmaker[Session]
) -> None:
    login(client, "investigator")
    response = client.get("/logout")
    assert response.status_code == 405
    assert client.get("/").status_code == 200  # a link or image cannot sign anyone out
    response = client.post("/logout")
    assert response.status_code == 302
    assert response.headers["Location"] == "/login"
    assert "Signed out." in text_of(client.get("/login"))
    after = client.get("/")
    assert after.status_code == 302
    assert after.headers["Location"].startswith("/login")
    assert [e["actor"] for e in events(session_factory, "logout")] == ["investigator"]


# --- no stack traces ------------------------------------------------------------------------------------


MALFORMED_ENROLLMENTS = {
    "impossible date in local form": (
        {"date_of_birth": "31/02/2026"},
        "Date of birth '31/02/2026' is not a date (use YYYY-MM-DD)",
    ),
    "impossible ISO date": (
        {"consent_date": "2026-02-31"},
        "Consent date '2026-02-31' is not a date (use YYYY-MM-DD)",
    ),
    "over-long name": ({"name": "N" * 5000}, "Subject name is longer than 200 characters"),
    "over-long subject id": (
        {"study_subject_id": "ALS-" + "1" * 60},
        "Study subject id is longer than 40 characters",
    ),
    "over-long date": ({"date_of_birth": "1" * 300}, "Date of birth is longer than 20 characters"),
    "site that is not a number": (
        {"site_id": "rochester"},
        "Clinical site 'rochester' is not a whole number",
    ),
    "site that does not exist": ({"site_id": "99999"}, "choose the clinical site"),
    "site id beyond any integer column": (
        {"site_id": "9" * 19},
        f"Clinical site '{'9' * 19}' is out of range",
    ),
    "missing name": ({"name": ""}, "Subject name is required"),
    "control characters in the MRN": (
        {"medical_record_number": "MRN\x07\x1b"},
        "the medical record number must",
    ),
}


def test_malformed_enrollment_is_a_clear_4xx_never_a_500(
    client: FlaskClient, world: World, session_factory: sessionmaker[Session], subtests: pytest.Subtests
) -> None:
    login(client, "coordinator")
    for case, (changes, message) in MALFORMED_ENROLLMENTS.items():
        with subtests.test(case=case):
            response = client.post("/clinic/subjects/new", data=enrollment_form(world, **changes))
            assert response.status_code == 422, text_of(response)[:2000]
            assert message in text_of(response)
            assert subject_count(session_factory) == 0


MALFORMED_URLS = [  # (role, path, status, message)
    ("coordinator", "/clinic/subjects/notanumber", 404, "not found"),
    ("coordinator", "/clinic/subjects/99999", 404, "no subject with record number 99999"),
    ("coordinator", "/clinic/subjects/-1", 404, "not found"),
    ("coordinator", "/no/such/page", 404, "not found"),
    ("qa", "/admin/audit?before=yesterday", 200, "Audit trail"),
    ("qa", "/admin/audit?before=99999999999999999999999", 200, "Audit trail"),
    ("coordinator", "/clinic/subjects/99999999999999999999999", 404, "not found"),
    ("coordinator", "/clinic/subjects/2147483648", 404, "not found"),
    ("coordinator", "/api/subjects/by-coi/garbage", 422, "not a chain of identity identifier"),
    ("coordinator", "/api/subjects/by-coi/A999926ZZZZZZ", 404, "no subject has chain of identity"),
]


def test_malformed_urls_give_a_clear_page(app: Flask, subtests: pytest.Subtests) -> None:
    clients: dict[str, FlaskClient] = {}
    for role, path, status, message in MALFORMED_URLS:
        with subtests.test(role=role, path=path):
            if role not in clients:
                clients[role] = app.test_client()
                login(clients[role], role)
            response = clients[role].get(path)
            assert response.status_code == status
            body = response.get_data(as_text=True)
            assert message.lower() in body.lower()
            assert "incident" not in body  # the 500 page names an incident number


def test_an_oversized_request_is_refused_cleanly(client: FlaskClient, world: World) -> None:
    login(client, "coordinator")
    response = client.post("/clinic/subjects/new", data=enrollment_form(world, name="x" * (3 * 1024 * 1024)))
    assert response.status_code == 413
    assert "Request Entity Too Large" in text_of(response)


ODD_LOGINS = {
    "over-long username": ("a" * 10_000, "x"),
    "blank": ("", ""),
    "over-long password": ("technician", "p" * 100_000),
    "trailing newline": ("technician\n", WRONG),
}


def test_login_with_odd_input_is_a_401_not_a_500(
    client: FlaskClient, session_factory: sessionmaker[Session], subtests: pytest.Subtests
) -> None:
    for case, (username, password) in ODD_LOGINS.items():
        with subtests.test(case=case):
            recorded = len(events(session_factory, "login_failed") + events(session_factory, "refused"))
            response = client.post("/login", data={"username": username, "password": password})
            assert response.status_code == 401
            assert "username or password is wrong" in text_of(response)
            after = len(events(session_factory, "login_failed") + events(session_factory, "refused"))
            assert after == recorded + 1  # every attempt is on record


NUL_REQUESTS = {  # case: (role, method, path, data)
    "login": (None, "POST", "/login", {"username": "tech\x00nician", "password": PASSWORD}),
    "enroll": ("coordinator", "POST", "/clinic/subjects/new", {"name": "Casey\x00Sample"}),
    "verify": ("coordinator", "POST", "/clinic/subjects/SUBJECT/verify", {"username": "coord\x00inator2"}),
    "scan": ("coordinator", "GET", "/scan?code=%00", {}),
    "unlock": ("admin", "POST", "/admin/users/tech%00nician/unlock", {"reason": "phoned"}),
    "create account": (
        "admin",
        "POST",
        "/admin/users",
        {"username": "newbie", "full_name": "New\x00Bie", "role": "nurse", "password": PASSWORD},
    ),
}


def test_a_nul_character_anywhere_is_refused_not_a_500(
    app: Flask,
    world: World,
    subject: Subject,
    session_factory: sessionmaker[Session],
    subtests: pytest.Subtests,
) -> None:
    """PostgreSQL cannot store NUL in text; without a check this is a 500 there and junk data on SQLite."""
    for case, (role, method, path, data) in NUL_REQUESTS.items():
        with subtests.test(case=case):
            client = app.test_client()
            if role is not None:
                login(client, role)
            path = path.replace("SUBJECT", str(subject.id))
            if path == "/clinic/subjects/new":
                data = enrollment_form(world, **data)
            refused = len(events(session_factory, "refused"))
            response = client.open(path, method=method, data=data)
            assert response.status_code == 422
            assert "NUL character" in text_of(response)
            assert subject_count(session_factory) == 1
            with session_factory() as s:
                assert s.scalar(select(func.count()).select_from(User)) == len(world.users)
            recorded = events(session_factory, "refused")
            assert len(recorded) == refused + 1
            assert "NUL character" in recorded[-1]["detail"]["message"]


def test_correction_with_malformed_values_is_refused(
    client: FlaskClient, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    login(client, "coordinator")
    url = f"/clinic/subjects/{subject.id}/correct"
    for data, message in [
        (
            {"field": "date_of_birth", "new_value": "12.04.1961", "reason": "r"},
            "New date of birth '12.04.1961' is not a date",
        ),
        ({"field": "site_id", "new_value": "two", "reason": "r"}, "New site 'two' is not a whole number"),
        (
            {"field": "coi_identifier", "new_value": "A999926AAAAAA", "reason": "r"},
            "cannot be corrected here",
        ),
        ({"field": "name", "new_value": "x" * 201, "reason": "r"}, "New name is longer than 200 characters"),
    ]:
        response = client.post(url, data=data)
        assert response.status_code == 422, data
        assert message in text_of(response)
    with session_factory() as s:
        stored = s.get(Subject, subject.id)
        assert stored is not None
        assert (stored.name, stored.coi_identifier) == (subject.name, subject.coi_identifier)
        assert s.get(Site, stored.site_id) is not None


def test_enrollment_at_the_manufacturing_facility_is_refused(
    client: FlaskClient, world: World, session_factory: sessionmaker[Session]
) -> None:
    login(client, "coordinator")
    form = enrollment_form(world, site_id=str(world.manufacturing.id))
    response = client.post("/clinic/subjects/new", data=form)
    assert response.status_code == 422
    assert "choose the clinical site where the subject was consented" in text_of(response)
    assert subject_count(session_factory) == 0


def test_a_hash_made_with_other_settings_is_renewed_at_login(app, session, world) -> None:  # type: ignore[no-untyped-def]
    """A red-team review: an account hashed with other Argon2 settings answered a wrong password in 1281 ms
    against 63 ms for an unknown username. It is renewed with the server's settings at the next login."""
    from argon2 import PasswordHasher

    from mfg.audit import service as audit_service
    from mfg.identity import passwords

    user = world.users["technician"]
    old = PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1).hash(PASSWORD)
    audit_service.update(session, "test", user, reason="an older release's hash", password_hash=old)
    session.commit()
    assert passwords.needs_rehash(user.password_hash)
    client = app.test_client()
    assert login(client, "technician").status_code == 302
    session.rollback()
    session.refresh(user)
    assert not passwords.needs_rehash(user.password_hash)
    assert passwords.password_matches(user.password_hash, PASSWORD)
    assert audit_service.verify(session).ok
