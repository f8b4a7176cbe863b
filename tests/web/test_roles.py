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
from mfg.web import security
from tests.conftest import World, build_app, login

# The roles, written out rather than imported: a new role is a deliberate change of access, and must be placed
# in the table below before this file passes again.
GMP_STAFF = frozenset(
    {"technician", "supervisor", "qc_analyst", "qa", "pharmacist", "nurse", "coordinator", "investigator"}
)
ANY_SIGNED_IN = GMP_STAFF | {"admin"}
SUBJECT_READERS = frozenset({"coordinator", "investigator", "qa", "supervisor", "pharmacist", "nurse"})
BATCH_READERS = frozenset({"technician", "supervisor", "qc_analyst", "coordinator", "qa"})
STEP_SIGNERS = frozenset({"technician", "supervisor", "qc_analyst", "coordinator"})
MATERIALS_READERS = frozenset({"supervisor", "qa", "qc_analyst"})

# Who may use what, as agreed (DESIGN.md section 7): EVERY endpoint of the app, one line each ("static" aside,
# public and outside the matrix). Pinned by hand from the views; never generated from the app, or it could not
# fail. A change here is a deliberate change of access, to be reviewed as one.
EXPECTED_POLICY: dict[str, frozenset[str] | str] = {
    # auth, api, home
    "auth.login": "public",
    "auth.logout": "public",
    # every account changes its own password; one an administrator set opens nothing else (DESIGN §7)
    "auth.choose_password": ANY_SIGNED_IN,
    "api.health": "public",
    "api.subject_by_coi": GMP_STAFF,
    "home.index": ANY_SIGNED_IN,
    "home.scan": GMP_STAFF,
    # clinic: enrollment, the subject page, batches started at collection, dose orders
    "clinic.subjects": SUBJECT_READERS,
    "clinic.subject": SUBJECT_READERS,
    "clinic.enroll": frozenset({"coordinator"}),
    "clinic.correct": frozenset({"coordinator"}),
    "clinic.verify": frozenset({"coordinator", "investigator"}),
    "clinic.start_batch": frozenset({"coordinator", "supervisor"}),
    "clinic.new_order": frozenset({"investigator"}),
    "clinic.cancel_order": frozenset({"investigator", "coordinator"}),
    # bench: the batch record, steps and their verification, labels, dose preparation, deviations
    "bench.index": BATCH_READERS,
    "bench.choose_workstation": BATCH_READERS,
    "bench.clear_line": frozenset({"technician", "supervisor"}),
    "bench.batch": BATCH_READERS,
    "bench.growth_svg": BATCH_READERS,
    "bench.open_batch": frozenset({"technician", "supervisor"}),
    "bench.record_step": STEP_SIGNERS,
    "bench.verify": STEP_SIGNERS,
    "bench.correct": STEP_SIGNERS,
    "bench.print_labels": frozenset({"technician", "supervisor", "coordinator"}),
    "bench.prepare": frozenset({"technician", "supervisor"}),
    "bench.print_product_labels": frozenset({"technician", "supervisor"}),
    "bench.deviation": BATCH_READERS,
    "bench.assess": frozenset({"supervisor"}),
    "bench.close": frozenset({"qa"}),
    "bench.lookback": frozenset({"qa", "supervisor"}),
    # qa: MBR approval
    "qa.index": frozenset({"qa"}),
    "qa.approve_mbr": frozenset({"qa"}),
    # materials (issue 8 item 6: GMP records, never the administrator's): the supervisor receives lots, keeps
    # the equipment and signs its calibrations and service changes; QA or QC signs lot releases and rejections
    "materials.index": MATERIALS_READERS,
    "materials.add_lot": frozenset({"supervisor"}),
    "materials.lot_status": frozenset({"qa", "qc_analyst"}),
    "materials.add_equipment": frozenset({"supervisor"}),
    "materials.equipment": MATERIALS_READERS,
    "materials.record_calibration": frozenset({"supervisor"}),
    "materials.equipment_status": frozenset({"supervisor"}),
    # admin: accounts, sites, workstations, the audit trail
    "admin.users": frozenset({"admin"}),
    "admin.create_user": frozenset({"admin"}),
    "admin.unlock": frozenset({"admin"}),
    "admin.deactivate": frozenset({"admin"}),
    "admin.sites": frozenset({"admin"}),
    "admin.workstations": frozenset({"admin"}),
    "admin.add_workstation": frozenset({"admin"}),
    "admin.audit_trail": frozenset({"admin", "qa"}),
}
NOT_IN_MATRIX = {"static"}  # the app's own files: public, declared so in mfg.web.init_web
PUBLIC_ENDPOINTS = NOT_IN_MATRIX | {name for name, roles in EXPECTED_POLICY.items() if roles == "public"}
# Every signed-in account's own pages: the home page, and the page to change one's password.
OWN_PAGES = {"home.index", "auth.choose_password"}
# Where GMP work is done, read or signed; administrators manage accounts, sites and workstations and never act
# here.
GMP_ENDPOINTS = {
    name
    for name in EXPECTED_POLICY
    if name not in PUBLIC_ENDPOINTS and name not in OWN_PAGES and not name.startswith("admin.")
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
# Every rule × every method it answers (a GET-and-POST page is requested both ways).
ROUTES = sorted(
    (
        Route(rule.endpoint, rule.rule, method, tuple(sorted(rule.arguments)))
        for rule in URL_MAP_APP.url_map.iter_rules()
        if rule.endpoint not in NOT_IN_MATRIX
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
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


def declared_policy(app: Flask, endpoint: str) -> frozenset[str] | str:
    """What the view declares, in the table's terms: "public", or the roles (empty: closed to everyone)."""
    view = app.view_functions[endpoint]
    return "public" if getattr(view, "mfg_public", False) else frozenset(getattr(view, "mfg_roles", ()))


def app_endpoints(app: Flask) -> set[str]:
    return set(app.view_functions) | {rule.endpoint for rule in app.url_map.iter_rules()}


def unpinned_endpoints(app: Flask, policy: dict[str, frozenset[str] | str]) -> list[str]:
    return sorted(app_endpoints(app) - NOT_IN_MATRIX - set(policy))


def stale_entries(app: Flask, policy: dict[str, frozenset[str] | str]) -> list[str]:
    return sorted(set(policy) - app_endpoints(app))


def shown(policy: frozenset[str] | str) -> str:
    return policy if isinstance(policy, str) else "{" + ", ".join(sorted(policy)) + "}"


def test_the_roles_are_the_pinned_ones() -> None:
    assert set(ROLES) == ANY_SIGNED_IN, "a role was added or removed: place it in EXPECTED_POLICY"
    assert set(GMP_ROLES) == GMP_STAFF


def test_every_endpoint_of_the_app_is_pinned() -> None:
    unpinned = unpinned_endpoints(URL_MAP_APP, EXPECTED_POLICY)
    assert unpinned == [], f"endpoints with no entry in EXPECTED_POLICY (decide who may use them): {unpinned}"


def test_every_pinned_endpoint_still_exists() -> None:
    stale = stale_entries(URL_MAP_APP, EXPECTED_POLICY)
    assert stale == [], f"EXPECTED_POLICY names endpoints the app no longer has: {stale}"


def test_the_pinning_checks_can_fail() -> None:
    """A route added without an entry, and an entry left behind by a removed route, are both named."""
    app = _url_map_app()

    @app.route("/forgotten")
    @security.roles_required("technician")
    def forgotten() -> str:
        return "added without an entry in the policy"

    already = unpinned_endpoints(URL_MAP_APP, EXPECTED_POLICY)  # [] unless the test above fails too
    assert unpinned_endpoints(app, EXPECTED_POLICY) == sorted([*already, "forgotten"])
    left_behind = {**EXPECTED_POLICY, "bench.removed": frozenset({"qa"})}
    already = stale_entries(URL_MAP_APP, EXPECTED_POLICY)
    assert stale_entries(URL_MAP_APP, left_behind) == sorted([*already, "bench.removed"])


@pytest.mark.parametrize("endpoint", sorted(EXPECTED_POLICY))
def test_declared_roles_are_the_pinned_ones(endpoint: str) -> None:
    if endpoint not in URL_MAP_APP.view_functions:
        pytest.fail(f"EXPECTED_POLICY names {endpoint}, which the app no longer has")
    declared = declared_policy(URL_MAP_APP, endpoint)
    expected = EXPECTED_POLICY[endpoint]
    assert declared == expected, f"{endpoint} declares {shown(declared)}; pinned: {shown(expected)}"


@pytest.mark.parametrize("route", ROUTES, ids=str)
def test_role_gate(
    app: Flask,
    world: World,
    subject: Subject,
    session_factory: sessionmaker[Session],
    route: Route,
    subtests: pytest.Subtests,
) -> None:
    """Every role, and nobody signed in, at this route, held to the pinned policy (not to what the view
    declares): a failure names the route (test id) and the role (sub-test). One database per route keeps the
    whole matrix quick on PostgreSQL too."""
    expected = EXPECTED_POLICY.get(route.endpoint)
    if expected is None:
        pytest.fail(f"{route.endpoint} ({route}) has no entry in EXPECTED_POLICY: decide who may use it")
    is_public = expected == "public"

    with subtests.test(role="anonymous"):
        response = request(app, route, subject, None)
        if is_public and (route.endpoint, route.method) == ("auth.login", "POST"):
            assert response.status_code == 401  # signing in with no username: the login form's own refusal
            assert "username or password is wrong" in response.get_data(as_text=True)
        elif is_public:
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
            allowed = is_public or role in expected
            username = world.users[role].username
            response = request(app, route, subject, username)
            assert response.status_code != 500, response.get_data(as_text=True)[:2000]
            if allowed:
                assert response.status_code != 403, f"{role} is pinned for {route.endpoint} but was refused"
                continue
            assert response.status_code == 403, f"{role} reached {route.endpoint} ({response.status_code})"
            assert f"the {role} role may not use this page" in response.get_data(as_text=True)
            recorded = [d for d in refusals(session_factory, username) if d["endpoint"] == route.endpoint]
            assert len(recorded) == 1
            assert recorded[0]["refusal"] == "PermissionRefused"
            assert recorded[0]["method"] == route.method


def test_exactly_the_expected_endpoints_are_public() -> None:
    views = URL_MAP_APP.view_functions
    assert {name for name, view in views.items() if getattr(view, "mfg_public", False)} == PUBLIC_ENDPOINTS


def test_every_endpoint_declares_who_may_use_it() -> None:
    undeclared = [
        name
        for name, view in URL_MAP_APP.view_functions.items()
        if not getattr(view, "mfg_public", False) and not getattr(view, "mfg_roles", None)
    ]
    assert undeclared == []
    for name, view in URL_MAP_APP.view_functions.items():
        assert set(getattr(view, "mfg_roles", ())) <= set(ROLES), name


def test_an_undeclared_endpoint_is_closed_to_everyone(
    database_url: str, tmp_path: Path, world: World
) -> None:
    app = build_app(database_url, tmp_path)

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
    """Administrators manage accounts, sites and workstations; every other station is GMP work."""
    for endpoint in URL_MAP_APP.view_functions:
        if "admin" in declared_roles(URL_MAP_APP, endpoint):
            assert endpoint.startswith("admin.") or endpoint in OWN_PAGES, endpoint


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
    response = client.post(
        "/clinic/subjects/new",
        data={
            "study_subject_id": "ALS-009",
            "name": "Admin Made",
            "date_of_birth": "1970-01-01",
            "medical_record_number": "MRN-9",
            "site_id": str(world.site.id),
            "consent_date": "2026-10-15",
            "password": "correct-horse-42",
        },
    )
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
