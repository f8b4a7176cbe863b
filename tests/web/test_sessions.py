"""Sessions end on the server (issue 8, sessions and login): a copy of the cookie taken before the session
ended no longer signs anyone in, whichever way it ended."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from mfg import clock
from mfg.audit.models import AuditEvent
from mfg.identity.models import User
from tests.conftest import PASSWORD, World, build_app, enrollment_form, login
from tests.web.test_auth import WRONG, account, events, subject_count, text_of

COOKIE = "session"


def copy_of_cookie(app: Flask, client: FlaskClient) -> FlaskClient:
    """A second client holding the very cookie ``client`` holds now: what someone copying it would have."""
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None, "not signed in"
    thief = app.test_client()
    thief.set_cookie(COOKIE, cookie.value)
    assert thief.get("/").status_code == 200  # the copy works while the session lasts
    return thief


def session_version(factory: sessionmaker[Session], username: str) -> int:
    with factory() as s:
        user = s.scalar(select(User).where(User.username == username))
        assert user is not None
        return user.session_version


def test_a_cookie_copied_before_logout_no_longer_works(
    app: Flask, session_factory: sessionmaker[Session]
) -> None:
    client = app.test_client()
    assert login(client, "technician").status_code == 302
    thief = copy_of_cookie(app, client)
    assert client.post("/logout").status_code == 302
    response = thief.get("/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/login")
    assert thief.get("/api/subjects/by-coi/A999926ABCDEF").status_code == 401
    logout = events(session_factory, "logout")
    assert [e["actor"] for e in logout] == ["technician"]
    assert logout[0]["reason"] == "signed out"
    assert session_version(session_factory, "technician") == 1  # from 0: the logout raised it


def test_signing_in_again_after_logout_works(app: Flask) -> None:
    client = app.test_client()
    login(client, "technician")
    client.post("/logout")
    assert login(client, "technician").status_code == 302
    assert client.get("/").status_code == 200


def test_a_cookie_copied_before_the_idle_sign_out_no_longer_works(
    app: Flask, session_factory: sessionmaker[Session]
) -> None:
    """The copy was kept busy, so its own idle clock never ran out: the server ends it all the same."""
    client = app.test_client()
    login(client, "technician")
    thief = copy_of_cookie(app, client)
    later = clock.now() + timedelta(minutes=16)
    with clock.pinned(later):
        assert client.get("/").status_code == 302  # the terminal left idle is signed out
        with thief.session_transaction() as sess:
            sess["last_seen"] = later.timestamp()  # the copy was in use a moment ago
        assert thief.get("/").status_code == 302  # ...and is signed out with it
    timeouts = events(session_factory, "session_timeout")
    assert [e["actor"] for e in timeouts] == ["technician"]
    assert timeouts[0]["detail"]["limit_seconds"] == 15 * 60


def test_a_cookie_copied_before_deactivation_no_longer_works(
    app: Flask, session_factory: sessionmaker[Session]
) -> None:
    client = app.test_client()
    login(client, "pharmacist")
    thief = copy_of_cookie(app, client)
    admin = app.test_client()
    login(admin, "admin")
    assert admin.post("/admin/users/pharmacist/deactivate", data={"reason": "left"}).status_code == 302
    assert thief.get("/").status_code == 302
    assert client.get("/").status_code == 302
    assert session_version(session_factory, "pharmacist") == 1  # raised, recorded with the deactivation


def test_a_session_from_before_a_lockout_does_not_come_back_with_the_unlock(
    app: Flask, session_factory: sessionmaker[Session]
) -> None:
    """A copied cookie's holder guesses until the account locks; the unlock must not revive the copy."""
    client = app.test_client()
    login(client, "technician")
    thief = copy_of_cookie(app, client)
    guesser = app.test_client()
    for _ in range(5):
        login(guesser, "technician", WRONG)
    assert thief.get("/").status_code == 302
    admin = app.test_client()
    login(admin, "admin")
    response = admin.post("/admin/users/technician/unlock", data={"reason": "identity confirmed by phone"})
    assert response.status_code == 302
    assert thief.get("/").status_code == 302
    assert client.get("/").status_code == 302
    with session_factory() as s:
        changes = {
            e.action: json.loads(e.changes)
            for e in s.scalars(select(AuditEvent).where(AuditEvent.action.in_(["lockout", "unlock"])))
        }
    assert set(changes) == {"lockout", "unlock"}
    assert all("session_version" in c for c in changes.values()), changes  # both end the sessions, on record
    assert login(client, "technician").status_code == 302  # a fresh sign-in works
    assert client.get("/").status_code == 200


def test_a_cookie_without_a_session_version_signs_nobody_in(app: Flask) -> None:
    """A cookie made before the version existed (or hand-made without it) is a stale one."""
    client = app.test_client()
    login(client, "technician")
    with client.session_transaction() as sess:
        del sess["session_version"]
    assert client.get("/").status_code == 302


# --- cookies over HTTPS ---------------------------------------------------------------------------------


def set_cookie_header(response: TestResponse) -> str:
    found = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]
    assert found, "no session cookie was set"
    return found[-1]


def test_secure_cookies_setting_marks_the_cookie_secure_and_sends_hsts(
    database_url: str, tmp_path: Path, world: World
) -> None:
    app = build_app(database_url, tmp_path, SECURE_COOKIES=True)
    client = app.test_client()
    response = client.post(
        "/login", data={"username": "technician", "password": PASSWORD}, base_url="https://localhost"
    )
    assert response.status_code == 302
    cookie = set_cookie_header(response)
    assert "Secure" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert response.headers["Strict-Transport-Security"] == "max-age=31536000"
    assert app.config["REMEMBER_COOKIE_SECURE"] is True


def test_secure_cookies_from_the_environment(
    database_url: str, tmp_path: Path, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MFG_SECURE_COOKIES", "1")
    app = build_app(database_url, tmp_path)
    assert app.config["SESSION_COOKIE_SECURE"] is True
    assert app.test_client().get("/login").headers["Strict-Transport-Security"] == "max-age=31536000"


def test_without_the_setting_cookies_work_on_plain_http(client: FlaskClient) -> None:
    """The embedded demo runs on http://127.0.0.1: a Secure cookie would never come back there."""
    response = login(client, "technician")
    cookie = set_cookie_header(response)
    assert "Secure" not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Strict-Transport-Security" not in response.headers
    assert client.get("/").status_code == 200


# --- signature passwords count towards the same lockout as logins ---------------------------------------


def test_wrong_signature_passwords_lock_at_the_configured_threshold(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    app = build_app(database_url, tmp_path, LOCKOUT_THRESHOLD=3)
    client = app.test_client()
    assert login(client, "coordinator").status_code == 302
    for attempt in range(1, 3):
        response = client.post("/clinic/subjects/new", data=enrollment_form(world, password=WRONG))
        assert response.status_code == 422, f"attempt {attempt}"
        assert account(session_factory, "coordinator") == (False, attempt)
    client.post("/clinic/subjects/new", data=enrollment_form(world, password=WRONG))
    assert account(session_factory, "coordinator") == (True, 3)  # at 3, not at the built-in 5
    lockouts = events(session_factory, "lockout", "coordinator")
    assert len(lockouts) == 1
    assert "performed signature" in lockouts[0]["reason"]
    assert "3 failures, account locked" in lockouts[0]["reason"]
    assert client.get("/").status_code == 302  # the lock ended the session too
    assert subject_count(session_factory) == 0


def test_the_login_threshold_setting_still_applies_to_logins(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    client = build_app(database_url, tmp_path, LOCKOUT_THRESHOLD=3).test_client()
    for _ in range(3):
        login(client, "nurse", WRONG)
    assert account(session_factory, "nurse") == (True, 3)


# --- login answers: the same words and the same work for every refusal ----------------------------------

REFUSAL = re.compile(r'<p class="flash flash-error refusal" role="alert">(.*?)</p>', re.S)


def test_unknown_locked_deactivated_and_wrong_password_get_identical_answers(
    app: Flask, session_factory: sessionmaker[Session]
) -> None:
    admin = app.test_client()
    login(admin, "admin")
    admin.post("/admin/users/pharmacist/deactivate", data={"reason": "left"})
    for _ in range(5):
        login(app.test_client(), "nurse", WRONG)
    answers = {
        "wrong password": login(app.test_client(), "technician", WRONG),
        "unknown": login(app.test_client(), "nosuchperson", PASSWORD),
        "locked": login(app.test_client(), "nurse", PASSWORD),
        "deactivated": login(app.test_client(), "pharmacist", PASSWORD),
    }
    assert {case: r.status_code for case, r in answers.items()} == dict.fromkeys(answers, 401)
    messages = {case: REFUSAL.findall(r.get_data(as_text=True)) for case, r in answers.items()}
    assert len({tuple(m) for m in messages.values()}) == 1, messages
    assert messages["unknown"] == [
        "<strong>Refused:</strong> username or password is wrong, or the account cannot sign in: "
        "ask an administrator"
    ]
    why = {e["actor"]: e["detail"]["why"] for e in events(session_factory, "login_refused")}
    assert why == {"nurse": "account locked", "pharmacist": "account deactivated"}
    assert events(session_factory, "login_failed", "nosuchperson")[0]["detail"]["why"] == "unknown username"


def test_an_unknown_username_costs_a_password_verification_too(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Timing: an unknown name must not answer at once while a real one spends an Argon2 verification."""
    calls: list[str] = []
    real_verify = PasswordHasher.verify

    def counting_verify(self: PasswordHasher, hash: str, password: str) -> bool:
        calls.append(password)
        return real_verify(self, hash, password)

    monkeypatch.setattr(PasswordHasher, "verify", counting_verify)
    for username in ("technician", "nosuchperson"):
        calls.clear()
        assert login(client, username, WRONG).status_code == 401
        assert calls == [WRONG], username
    for _ in range(5):
        login(client, "nurse", WRONG)
    calls.clear()
    assert login(client, "nurse", PASSWORD).status_code == 401  # locked: still the same work
    assert calls == [PASSWORD]


# --- rate limits ----------------------------------------------------------------------------------------


def test_logins_beyond_the_rate_limit_get_a_429_page_on_record(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    app = build_app(database_url, tmp_path, LOGIN_RATE_LIMIT="3 per minute", LOCKOUT_THRESHOLD=50)
    client = app.test_client()
    for username in ("technician", "nurse", "qa"):  # three different accounts from one address
        assert login(client, username, WRONG).status_code == 401
    response = login(client, "supervisor", PASSWORD)  # even the right password waits
    assert response.status_code == 429
    assert "Too many sign-in attempts" in text_of(response)
    assert "incident" not in text_of(response)
    assert client.get("/").status_code == 302  # not signed in
    limited = events(session_factory, "login_rate_limited")
    assert [(e["actor"], e["detail"]["address"]) for e in limited] == [("supervisor", "127.0.0.1")]
    assert client.get("/login").status_code == 200  # only attempts count, not the page


def test_one_account_is_limited_from_many_addresses(
    database_url: str, tmp_path: Path, world: World, session_factory: sessionmaker[Session]
) -> None:
    app = build_app(database_url, tmp_path, LOGIN_RATE_LIMIT="3 per minute", LOCKOUT_THRESHOLD=50)
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):
        response = app.test_client().post(
            "/login",
            data={"username": "technician", "password": WRONG},
            environ_base={"REMOTE_ADDR": address},
        )
    assert response.status_code == 429
    other = app.test_client().post(
        "/login", data={"username": "nurse", "password": PASSWORD}, environ_base={"REMOTE_ADDR": "10.0.0.5"}
    )
    assert other.status_code == 302  # another account from a fresh address is unaffected
    assert [e["detail"]["address"] for e in events(session_factory, "login_rate_limited")] == ["10.0.0.4"]


def test_a_malformed_rate_limit_setting_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    from mfg import config

    monkeypatch.setenv("MFG_LOGIN_RATE_LIMIT", "lots")
    with pytest.raises(SystemExit, match="MFG_LOGIN_RATE_LIMIT"):
        config.from_environment({"INSTANCE_PATH": "/none", "DATABASE_URL": "sqlite://", "SECRET_KEY": "x"})


def test_the_login_rate_limit_defaults_to_20_per_minute(monkeypatch: pytest.MonkeyPatch) -> None:
    from mfg import config

    monkeypatch.delenv("MFG_LOGIN_RATE_LIMIT", raising=False)
    given = {"INSTANCE_PATH": "/none", "DATABASE_URL": "sqlite://", "SECRET_KEY": "x"}
    settings = config.from_environment(given)
    assert settings["LOGIN_RATE_LIMIT"] == "20 per minute"
