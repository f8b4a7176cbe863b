"""The HTTP layer: sessions, the role gate on every route, refusals, and error pages.

One place commits: the request's commit point (``mfg.web.transaction``), at the end of a request that
succeeded. A refusal rolls the request back and records the attempt in a transaction of its own, so stored
records stay intact and nothing is silent.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from flask import Flask, Response, flash, g, jsonify, redirect, render_template, request, session, url_for
from flask_login import LoginManager, current_user, logout_user
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException

from mfg import clock
from mfg.audit import service as audit_service
from mfg.errors import PermissionRefused, ValidationRefused
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.identity.rules import ROLE_TITLES
from mfg.web import rate_limit, security, transaction
from mfg.web.transaction import db

log = logging.getLogger("mfg.web")
csrf = CSRFProtect()
login_manager = LoginManager()


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _error_page(status: int, title: str, message: str) -> tuple[Response | str, int]:
    if _wants_json():
        return jsonify({"error": title, "message": message}), status
    return render_template("errors/error.html", status=status, title=title, message=message), status


def init_web(app: Flask) -> None:
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.login_message = "Please sign in."
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(user_id: str) -> security.SessionUser | None:
        try:
            user = db().get(User, int(user_id))
        except ValueError:
            return None
        if user is None or not user.active or user.locked:
            return None
        if session.get("session_version") != user.session_version:
            return None  # ended on the server (logout, idle sign-out, deactivation, lock): a stale cookie
        return security.SessionUser(user)

    @login_manager.unauthorized_handler
    def unauthorized() -> Any:
        if _wants_json():
            return jsonify({"error": "unauthorized", "message": "sign in first"}), 401
        target = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("auth.login", next=target))

    from mfg.web import admin, api, auth, bench, clinic, home, materials, qa

    for blueprint in (auth.bp, home.bp, clinic.bp, bench.bp, qa.bp, materials.bp, admin.bp, api.bp):
        app.register_blueprint(blueprint)
    security.declare(app.view_functions["static"], public=True)

    app.before_request(_enforce_idle_timeout)
    app.before_request(_require_own_password)
    app.before_request(security.enforce_policy)
    app.before_request(_refuse_nul_characters)

    transaction.install(app, _error_page)
    rate_limit.install(app, _error_page)

    @app.context_processor
    def layout_context() -> dict[str, Any]:
        return {
            "role_titles": ROLE_TITLES,
            "can": security.can_access,
            "idle_minutes": _minutes(app.config["IDLE_TIMEOUT_MINUTES"]),
        }

    @app.after_request
    def security_headers(response: Response) -> Response:
        # Everything is served by the app itself: no CDN, no inline script from elsewhere.
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")
        if app.config.get("SECURE_COOKIES"):
            # Behind HTTPS only: the browser refuses plain http for this host for a year.
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        return _error_page(exc.code or 500, exc.name, exc.description or "")

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Any:
        incident = uuid.uuid4().hex[:10]
        log.exception("unexpected error, incident %s", incident)
        session_ = g.get("db_session")
        if session_ is not None:
            session_.rollback()
        return _error_page(
            500,
            "Not saved",
            f"Something went wrong and nothing was saved. Tell the system administrator: "
            f"incident {incident}.",
        )


def _refuse_nul_characters() -> None:
    """No field accepts a NUL character, and PostgreSQL cannot store one: refuse it here, not with a 500."""
    values = [request.path, *request.args.values(), *request.form.values()]
    if any("\x00" in value for value in values):
        raise ValidationRefused("the request contains a NUL character, which no field accepts: type it again")


#: the one page an account whose password an administrator set may open (and the public ones: sign out)
CHOOSE_PASSWORD = "auth.choose_password"
CHOOSE_FIRST = (
    "Choose your own password first: the one you signed in with was set by an administrator and works only "
    "for this page."
)


def _require_own_password() -> Any:
    """Whoever set a password (an administrator) must not act as its holder: until the holder chose their
    own, every page leads to the page to choose it, and an attempt to act (a form sent, the API) is refused
    and on record, as the role gate refuses. The signing services refuse such an account too."""
    if request.endpoint in (None, CHOOSE_PASSWORD) or not current_user.is_authenticated:
        return None
    if not current_user.must_choose_password or security.policy_of(request.endpoint)[0]:
        return None
    if _wants_json() or request.method not in transaction.READ_METHODS:
        raise PermissionRefused(
            identity_service.one_time_password_problem(current_user.user),
            entity_type="user_account",
            entity_id=str(current_user.id),
        )
    flash(CHOOSE_FIRST, "error")
    return redirect(url_for(CHOOSE_PASSWORD))


def _minutes(count: int) -> str:
    return f"{count} minute" if count == 1 else f"{count} minutes"


def _enforce_idle_timeout() -> Any:
    """Shared bench terminals: a session idle longer than the limit is signed out."""
    if request.endpoint == "static" or not current_user.is_authenticated:
        return None
    from flask import current_app

    now = clock.now().timestamp()
    last = session.get("last_seen")
    limit = current_app.config["IDLE_TIMEOUT_MINUTES"] * 60
    if isinstance(last, int | float) and now - last > limit:
        username = current_user.username
        user_id = current_user.id
        logout_user()
        session.clear()
        detail = {"idle_seconds": int(now - last), "limit_seconds": limit, "path": request.path}

        def sign_out(session_: Session) -> None:
            user = session_.get(User, user_id)
            if user is None:  # cannot happen: the loader just found it; keep the record anyway
                audit_service.record_event(
                    session_,
                    actor=username,
                    action="session_timeout",
                    entity_type="user_account",
                    entity_id=str(user_id),
                    detail=detail,
                )
                return
            identity_service.end_sessions(
                session_, user, action="session_timeout", reason="idle sign-out", detail=detail
            )

        transaction.record_in_own_transaction(sign_out)
        message = (
            f"Signed out after {_minutes(current_app.config['IDLE_TIMEOUT_MINUTES'])} without activity. "
            "Nothing from the unfinished form was saved."
        )
        if _wants_json():
            return jsonify({"error": "session expired", "message": message}), 401
        flash(message, "error")
        return redirect(url_for("auth.login"))
    session["last_seen"] = now
    return None
