"""One commit point per request: a request that writes commits once at its end or rolls back; a refusal rolls
back, is recorded in a transaction of its own and shown with what was typed; anything else stores nothing and
shows the 500 page. The CLI's commands are one unit of work each."""

from __future__ import annotations

import ast
import html
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, flash, redirect, url_for
from flask.testing import FlaskClient
from sqlalchemy import Engine, event, inspect, select, text
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.test import TestResponse

from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.errors import ValidationRefused
from mfg.study.models import Subject
from mfg.web import security
from mfg.web.transaction import commit_point, db, redirect_to
from tests.conftest import PASSWORD, World, enrollment_form, login

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "mfg" / "web"
WRAPPER = WEB / "transaction.py"


def text_of(response: TestResponse) -> str:
    return html.unescape(response.get_data(as_text=True))


def calls_named(path: Path, names: set[str]) -> list[str]:
    """``file:line`` of every call to a function or method with one of these names."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in names:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(")
    return found


def row_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            table: conn.execute(text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()
            for table in inspect(conn).get_table_names()
        }


def refusals(factory: sessionmaker[Session]) -> list[dict[str, Any]]:
    with factory() as s:
        return [
            {"actor": e.actor, **json.loads(e.detail)}
            for e in s.scalars(
                select(AuditEvent).where(AuditEvent.action == "refused").order_by(AuditEvent.id)
            )
        ]


@contextmanager
def counting_commits(app: Flask) -> Iterator[list[str]]:
    """Every COMMIT the app's engine sends while the block runs."""
    commits: list[str] = []
    engine = app.extensions["mfg.engine"]

    def on_commit(_connection: Any) -> None:
        commits.append("COMMIT")

    event.listen(engine, "commit", on_commit)
    try:
        yield commits
    finally:
        event.remove(engine, "commit", on_commit)


# --- structure ------------------------------------------------------------------------------------------


def test_only_the_commit_point_commits_in_the_web_layer() -> None:
    offending = [
        hit
        for path in sorted(WEB.glob("*.py"))
        if path != WRAPPER
        for hit in calls_named(path, {"commit", "record_refusal"})
    ]
    assert offending == [], "commit or record a refusal through mfg.web.transaction:\n" + "\n".join(offending)


def test_the_cli_commits_only_through_session_scope() -> None:
    assert calls_named(ROOT / "mfg" / "cli.py", {"commit"}) == []


def test_every_view_that_answers_post_stands_behind_the_commit_point(app: Flask) -> None:
    bare = sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if "POST" in (rule.methods or set())
        and not getattr(app.view_functions[rule.endpoint], "mfg_commit_point", False)
    )
    assert bare == []


# --- behaviour on real requests -------------------------------------------------------------------------


@pytest.fixture
def coordinator(client: FlaskClient) -> FlaskClient:
    assert login(client, "coordinator").status_code == 302
    return client


REFUSED_POSTS: dict[str, tuple[str, str, Callable[[World], dict[str, str]], int, str, list[str]]] = {
    # case: (who, path, form, status, message shown, typed values shown again)
    "enrollment with a malformed date of birth": (
        "coordinator",
        "/clinic/subjects/new",
        lambda world: enrollment_form(world, date_of_birth="1970-13-45"),
        422,
        "Date of birth '1970-13-45' is not a date (use YYYY-MM-DD)",
        ['value="ALS-002"', 'value="Casey Sample"', 'value="1970-13-45"', 'value="MRN-777"'],
    ),
    # Refused by the signature, after the subject and its audit event were flushed: the rollback undoes them.
    "enrollment without the signing password": (
        "coordinator",
        "/clinic/subjects/new",
        lambda world: enrollment_form(world, password=""),
        422,
        "enter your password to sign",
        ['value="ALS-002"', 'value="Casey Sample"', 'value="1970-05-17"', 'value="2026-10-15"'],
    ),
    "an account whose username is taken": (
        "admin",
        "/admin/users",
        lambda world: {
            "username": "coordinator",
            "full_name": "Second Coordinator Person",
            "role": "coordinator",
            "password": PASSWORD,
        },
        422,
        "username 'coordinator' already exists: accounts are never reused",
        ['value="Second Coordinator Person"'],
    ),
}


@pytest.mark.parametrize("case", REFUSED_POSTS)
def test_a_refused_post_changes_nothing_but_the_record_of_the_refusal(
    case: str, app: Flask, world: World, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    who, path, form_of, status, message, typed = REFUSED_POSTS[case]
    client = app.test_client()
    assert login(client, who).status_code == 302
    before = row_counts(engine)
    refused_before = len(refusals(session_factory))

    with counting_commits(app) as commits:
        response = client.post(path, data=form_of(world))

    assert response.status_code == status
    page = text_of(response)
    assert message in page
    for value in typed:
        assert value in page, f"{value} was not shown again"
    assert PASSWORD not in page  # a password is never typed back
    after = row_counts(engine)
    assert {t: n - before[t] for t, n in after.items() if n != before[t]} == {"audit_event": 1}
    recorded = refusals(session_factory)
    assert len(recorded) == refused_before + 1
    assert recorded[-1]["actor"] == who and recorded[-1]["path"] == path
    assert commits == ["COMMIT"]  # the refusal's own transaction, nothing else


def test_a_successful_post_commits_once(
    app: Flask, coordinator: FlaskClient, world: World, session_factory: sessionmaker[Session]
) -> None:
    with counting_commits(app) as commits:
        response = coordinator.post("/clinic/subjects/new", data=enrollment_form(world))
    assert response.status_code == 302
    assert commits == ["COMMIT"]
    with session_factory() as s:
        assert s.scalar(select(Subject).where(Subject.study_subject_id == "ALS-002")) is not None
    assert "ALS-002 enrolled" in text_of(coordinator.get(response.headers["Location"]))


def test_reading_a_page_commits_nothing(app: Flask, coordinator: FlaskClient) -> None:
    with counting_commits(app) as commits:
        assert coordinator.get("/clinic/subjects/new").status_code == 200
    assert commits == []


def test_a_page_that_cannot_be_shown_again_gives_the_error_page_and_one_record(
    coordinator: FlaskClient, session_factory: sessionmaker[Session]
) -> None:
    refused_before = len(refusals(session_factory))
    response = coordinator.post(
        "/clinic/subjects/99999/correct", data={"field": "name", "new_value": "X", "reason": "typo"}
    )
    assert response.status_code == 404
    assert "no subject with record number 99999" in text_of(response)
    assert len(refusals(session_factory)) == refused_before + 1


def test_a_record_the_url_names_and_that_does_not_exist_gives_the_error_page(
    app: Flask, session_factory: sessionmaker[Session]
) -> None:
    client = app.test_client()
    login(client, "qa")
    refused_before = len(refusals(session_factory))
    response = client.post(
        "/materials/lots/99999/status", data={"status": "released", "reason": "CoA checked"}
    )
    assert response.status_code == 404
    page = text_of(response)
    assert "no reagent lot 99999" in page
    assert "Reagent lots" not in page and "<h1>Materials" not in page  # the error page, not the lots page
    recorded = refusals(session_factory)
    assert len(recorded) == refused_before + 1
    assert recorded[-1]["refusal"] == "NotFound"


# --- behaviour the app's own views do not show: throw-away routes -----------------------------------------


def _write_an_event(what: str) -> None:
    audit_service.record_event(
        db(), actor="coordinator", action="test_write", entity_type="test", entity_id=what
    )


@pytest.fixture
def test_routes(app: Flask) -> Flask:
    """Views that write and then fail in each of the ways the commit point answers."""

    @security.roles_required("coordinator")
    @commit_point()
    def fails() -> Any:
        _write_an_event("fails")
        flash("Saved.", "ok")  # said before the failure: it must not survive it
        raise RuntimeError("secret internals of the failure")

    @security.roles_required("coordinator")
    @commit_point()
    def refused_to_error_page() -> Any:
        _write_an_event("refused")
        raise ValidationRefused("the test view refuses this")

    @security.roles_required("coordinator")
    @commit_point(on_refusal=redirect_to("clinic.subjects"))
    def refused_at_commit() -> Any:
        _write_an_event("at commit")
        flash("Saved.", "ok")
        return redirect(url_for("home.index"))

    app.add_url_rule("/test/fails", view_func=fails, methods=["POST"])
    app.add_url_rule("/test/refused", view_func=refused_to_error_page, methods=["POST"])
    app.add_url_rule("/test/refused-at-commit", view_func=refused_at_commit, methods=["POST"])
    return app


def events_written(factory: sessionmaker[Session]) -> list[str]:
    with factory() as s:
        return list(s.scalars(select(AuditEvent.entity_id).where(AuditEvent.action == "test_write")))


def test_an_unexpected_error_stores_nothing_and_shows_the_500_page(
    test_routes: Flask, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    client = test_routes.test_client()
    login(client, "coordinator")
    before = row_counts(engine)

    with counting_commits(test_routes) as commits:
        response = client.post("/test/fails")

    assert response.status_code == 500
    page = text_of(response)
    assert "nothing was saved" in page
    assert "Traceback" not in page and "secret internals" not in page and "RuntimeError" not in page
    assert commits == []
    assert row_counts(engine) == before
    # What the view flashed before it failed went back with the rest: no page claims it was saved.
    assert "Saved." not in page
    assert "Saved." not in text_of(client.get("/clinic/subjects"))


def test_a_refusal_without_its_own_answer_gets_the_error_page(
    test_routes: Flask, engine: Engine, session_factory: sessionmaker[Session]
) -> None:
    client = test_routes.test_client()
    login(client, "coordinator")
    before = row_counts(engine)

    response = client.post("/test/refused")

    assert response.status_code == 422
    assert "the test view refuses this" in text_of(response)
    assert events_written(session_factory) == []
    after = row_counts(engine)
    assert {t: n - before[t] for t, n in after.items() if n != before[t]} == {"audit_event": 1}
    assert refusals(session_factory)[-1]["message"] == "the test view refuses this"


def test_a_refusal_raised_by_the_commit_is_answered_like_any_refusal(
    test_routes: Flask, session_factory: sessionmaker[Session]
) -> None:
    client = test_routes.test_client()
    login(client, "coordinator")
    sessions = test_routes.extensions["mfg.sessions"]
    refused_once: list[bool] = []

    def refuse_the_first_commit(_session: Session) -> None:
        if not refused_once:
            refused_once.append(True)
            raise ValidationRefused("refused while committing")

    event.listen(sessions, "before_commit", refuse_the_first_commit)
    try:
        response = client.post("/test/refused-at-commit")
    finally:
        event.remove(sessions, "before_commit", refuse_the_first_commit)

    assert response.status_code == 302
    assert response.headers["Location"] == "/clinic/subjects"
    page = text_of(client.get("/clinic/subjects"))
    assert "Refused: refused while committing" in page
    assert "Saved." not in page
    assert events_written(session_factory) == []
    assert refusals(session_factory)[-1]["message"] == "refused while committing"
