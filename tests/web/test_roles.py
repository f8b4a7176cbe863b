"""The role gate: every route × every role, anonymous access, and fail-closed declarations."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from flask import Flask, url_for
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mfg import create_app
from mfg.audit.models import AuditEvent
from mfg.identity.rules import GMP_ROLES, ROLES
from mfg.study.models import Subject
from tests.conftest import World, login

PUBLIC_ENDPOINTS = {"static", "auth.login", "auth.logout", "api.health"}
# Where GMP work is done or signed; administrators manage accounts and never act here.
GMP_ENDPOINTS = {"clinic.enroll", "clinic.correct", "clinic.verify", "home.scan", "api.subject_by_coi"}
SUBJECT_READERS = {"coordinator", "investigator", "qa", "supervisor", "pharmacist", "nurse"}
# Who may use what, as agreed (DESIGN.md section 7). A change here is a deliberate change of access.
# (Stations still being built are held to the general rules below: declared, admin-free, gated.)
EXPECTED_POLICY: dict[str, set[str] | str] = {
    "auth.login": "public",
    "auth.logout": "public",
    "api.health": "public",
    "home.index": set(ROLES),
    "home.scan": set(GMP_ROLES),
    "api.subject_by_coi": set(GMP_ROLES),
    "clinic.subjects": SUBJECT_READERS,
    "clinic.subject": SUBJECT_READERS,
    "clinic.enroll": {"coordinator"},
    "clinic.correct": {"coordinator"},
    "clinic.verify": {"coordinator", "investigator"},
    "admin.users": {"admin"},
    "admin.create_user": {"admin"},
    "admin.unlock": {"admin"},
    "admin.deactivate": {"admin"},
    "admin.sites": {"admin"},
    "admin.audit_trail": {"admin", "qa"},
}


@dataclass(frozen=True)
class Route:
    endpoint: str
    rule: str
    method: str
    arguments: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.method} {self.rule}"


def _url_map_app() -> Flask:
    """The app as built for production, read at collection time; it never opens its (throw-away) database.

    The instance folder is a temporary one: configuration would otherwise write a secret key into ./instance.
    """
    with tempfile.TemporaryDirectory() as tmp, mock.patch.dict(os.environ, {"MFG_INSTANCE_PATH": tmp}):
        app = create_app({"DATABASE_URL": f"sqlite:///{tmp}/unused.sqlite3", "SECRET_KEY": "x"})
    app.extensions["mfg.engine"].dispose()
    return app


URL_MAP_APP = _url_map_app()
ROUTES = sorted(
    (
        Route(rule.endpoint, rule.rule, "GET" if "GET" in (rule.methods or ()) else "POST",
              tuple(sorted(rule.arguments)))
        for rule in URL_MAP_APP.url_map.iter_rules()
        if rule.endpoint != "static"
    ),
    key=lambda r: (r.rule, r.method),
)


def url_of(app: Flask, route: Route, subject: Subject) -> str:
    values: dict[str, Any] = {}
    for argument in route.arguments:
        if argument == "subject_id":
            values[argument] = subject.id
        elif argument == "username":
            values[argument] = "technician"
        elif argument == "code":
            values[argument] = subject.coi_identifier
        else:
            # A record that may not exist: the gate decides before the view looks, and a 404 is not a 403.
            values[argument] = 1
    with app.test_request_context():
        return url_for(route.endpoint, **values)


def request(app: Flask, route: Route, subject: Subject, username: str | None) -> Any:
    client = app.test_client()
    if username is not None:
        assert login(client, username).status_code == 302, f"{username} could not sign in"
    return client.open(url_of(app, route, subject), method=route.method, data={})


def refusals(factory: sessionmaker[Session], actor: str) -> list[dict[str, Any]]:
    with factory() as s:
        return [
            json.loads(e.detail)
            for e in s.scalars(
                select(AuditEvent).where(AuditEvent.action == "refused", AuditEvent.actor == actor)
            )
        ]


def declared_roles(app: Flask, endpoint: str) -> frozenset[str]:
    view = app.view_functions[endpoint]
    return frozenset() if getattr(view, "mfg_public", False) else view.mfg_roles


def test_the_matrix_covers_the_app() -> None:
    endpoints = {r.endpoint for r in ROUTES}
    assert set(EXPECTED_POLICY) <= endpoints
    assert len(ROUTES) >= len(EXPECTED_POLICY)


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_role_gate(
    app: Flask, world: World, subject: Subject, session_factory: sessionmaker[Session], route: Route,
    subtests: pytest.Subtests,
) -> None:
    """Every role, and nobody signed in, at this route: a failure names the route (test id) and the role
    (sub-test). One database per route keeps the whole matrix quick on PostgreSQL too."""
    view = app.view_functions[route.endpoint]
    is_public = getattr(view, "mfg_public", False)

    with subtests.test(role="anonymous"):
        response = request(app, route, subject, None)
        if is_public:
            assert response.status_code in (200, 302)
            if route.endpoint == "api.health":
                assert response.get_json() == {"status": "ok"}
        elif route.rule.startswith("/api/"):
            assert response.status_code == 401
            assert response.get_json() == {"error": "unauthorized", "message": "sign in first"}
        else:
            assert response.status_code == 302
            assert response.headers["Location"].startswith("/login")
        with session_factory() as s:  # nothing was done on the anonymous visitor's behalf
            actions = s.scalars(select(AuditEvent.action).where(AuditEvent.actor == "anonymous")).all()
            assert actions == []

    for role in ROLES:
        with subtests.test(role=role):
            allowed = is_public or role in view.mfg_roles
            username = world.users[role].username
            response = request(app, route, subject, username)
            assert response.status_code != 500, response.get_data(as_text=True)[:2000]
            if allowed:
                assert response.status_code != 403, f"{role} is declared for {route.endpoint} but was refused"
                continue
            assert response.status_code == 403, f"{role} reached {route.endpoint} ({response.status_code})"
            assert f"the {role} role may not use this page" in response.get_data(as_text=True)
            recorded = [d for d in refusals(session_factory, username) if d["endpoint"] == route.endpoint]
            assert len(recorded) == 1
            assert recorded[0]["refusal"] == "PermissionRefused"
            assert recorded[0]["method"] == route.method


def test_declared_policy_is_the_agreed_one() -> None:
    for endpoint, expected in EXPECTED_POLICY.items():
        view = URL_MAP_APP.view_functions[endpoint]
        if expected == "public":
            assert view.mfg_public, endpoint
        else:
            assert not view.mfg_public, endpoint
            assert set(view.mfg_roles) == expected, endpoint


def test_exactly_the_expected_endpoints_are_public() -> None:
    views = URL_MAP_APP.view_functions
    assert {name for name, view in views.items() if getattr(view, "mfg_public", False)} == PUBLIC_ENDPOINTS


def test_every_endpoint_declares_who_may_use_it() -> None:
    undeclared = [
        name for name, view in URL_MAP_APP.view_functions.items()
        if not getattr(view, "mfg_public", False) and not getattr(view, "mfg_roles", None)
    ]
    assert undeclared == []
    for name, view in URL_MAP_APP.view_functions.items():
        assert set(getattr(view, "mfg_roles", ())) <= set(ROLES), name


def test_an_undeclared_endpoint_is_closed_to_everyone(
    database_url: str, tmp_path: Path, world: World
) -> None:
    app = create_app({
        "DATABASE_URL": database_url, "SECRET_KEY": "test-secret", "INSTANCE_PATH": str(tmp_path),
        "WTF_CSRF_ENABLED": False, "TESTING": True,
    })

    @app.route("/forgotten")
    def forgotten() -> str:
        return "should never be served"

    anonymous = app.test_client().get("/forgotten")
    assert anonymous.status_code == 302
    assert anonymous.headers["Location"].startswith("/login")
    for role in ROLES:
        client = app.test_client()
        login(client, world.users[role].username)
        response = client.get("/forgotten")
        assert response.status_code == 403, role
        assert "should never be served" not in response.get_data(as_text=True)


def test_admin_is_in_no_gmp_endpoint() -> None:
    for endpoint in GMP_ENDPOINTS:
        roles = declared_roles(URL_MAP_APP, endpoint)
        assert "admin" not in roles, endpoint
        assert roles <= GMP_ROLES, endpoint
    assert "admin" not in declared_roles(URL_MAP_APP, "clinic.subject")


def test_admin_appears_only_at_administration_pages() -> None:
    """Administrators manage accounts, sites and registers; every other station is GMP work."""
    for endpoint in URL_MAP_APP.view_functions:
        if "admin" in declared_roles(URL_MAP_APP, endpoint):
            assert endpoint.startswith("admin.") or endpoint == "home.index", endpoint


def test_admin_is_refused_at_gmp_endpoints(
    app: Flask, subject: Subject, session_factory: sessionmaker[Session]
) -> None:
    for endpoint in sorted(GMP_ENDPOINTS):
        route = next(r for r in ROUTES if r.endpoint == endpoint)
        response = request(app, route, subject, "admin")
        assert response.status_code == 403, endpoint
    assert sorted(d["endpoint"] for d in refusals(session_factory, "admin")) == sorted(GMP_ENDPOINTS)


def test_admin_cannot_enroll_even_with_a_complete_form(
    app: Flask, world: World, session_factory: sessionmaker[Session]
) -> None:
    client = app.test_client()
    login(client, "admin")
    response = client.post("/clinic/subjects/new", data={
        "study_subject_id": "ALS-009", "name": "Admin Made", "date_of_birth": "1970-01-01",
        "medical_record_number": "MRN-9", "site_id": str(world.site.id), "consent_date": "2026-11-01",
        "password": "correct-horse-42",
    })
    assert response.status_code == 403
    with session_factory() as s:
        assert s.scalars(select(Subject)).all() == []


def test_navigation_shows_only_what_the_role_may_open(app: Flask, world: World) -> None:
    for role, visible, hidden in [
        ("admin", ["Accounts", "Audit trail"], [">Enroll<", 'id="scan-code"', ">Subjects<"]),
        ("coordinator", [">Enroll<", 'id="scan-code"', ">Subjects<"], ["Accounts", "Audit trail"]),
        ("technician", ['id="scan-code"'], [">Enroll<", "Accounts", ">Subjects<"]),
    ]:
        client = app.test_client()
        login(client, world.users[role].username)
        page = client.get("/").get_data(as_text=True)
        for text in visible:
            assert text in page, (role, text)
        for text in hidden:
            assert text not in page, (role, text)
