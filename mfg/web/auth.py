"""Sign in and out, and choose one's own password."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_user, logout_user

from mfg import clock
from mfg.errors import Refusal
from mfg.identity import service as identity_service
from mfg.web import security
from mfg.web.transaction import commit_point, db, rerender, same_site, signed_in_user

bp = Blueprint("auth", __name__)

USERNAME_MAX_LENGTH = 64  # the width of user_account.username


def _login_refused(refusal: Refusal, status: int) -> Any:
    return render_template(
        "auth/login.html",
        username=request.form.get("username", "").strip(),
        error=refusal.message,
        next=request.form.get("next", ""),
    ), 401 if status == 422 else status


@bp.route("/login", methods=["GET", "POST"])
@security.public
@commit_point(on_refusal=_login_refused)
def login() -> Any:
    if request.method == "GET":
        if current_user.is_authenticated:
            return redirect(url_for("home.index"))
        return render_template("auth/login.html", username="", next=request.args.get("next", ""))
    username = request.form.get("username", "").strip()
    if len(username) > USERNAME_MAX_LENGTH:
        # No account has such a name; the same answer as for any unknown username.
        raise identity_service.LoginRefused(identity_service.LOGIN_REFUSED, entity_type="user_account")
    user = identity_service.authenticate(
        db(),
        username,
        request.form.get("password", ""),
        where=f"login from {request.remote_addr or 'unknown terminal'}",
    )
    session.clear()
    login_user(security.SessionUser(user))
    session["last_seen"] = clock.now().timestamp()  # the idle clock starts now, not at the next page
    session["session_version"] = user.session_version  # the user loader compares it on every request
    if user.password_must_change:
        return redirect(url_for("auth.choose_password"))  # the one page a one-time password opens
    return redirect(same_site(request.form.get("next"), "home.index"))


@bp.route("/logout", methods=["POST"])
@security.public
@commit_point()
def logout() -> Any:
    if current_user.is_authenticated:
        # Ends the session on the server: a copy of this cookie no longer signs anyone in.
        identity_service.end_sessions(db(), signed_in_user(), action="logout", reason="signed out")
        logout_user()
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("auth.login"))


def _password_page(*, error: str = "", status: int = 200) -> Any:
    return render_template(
        "auth/password.html", one_time=signed_in_user().password_must_change, error=error
    ), status


@bp.route("/password", methods=["GET", "POST"])
@security.roles_required(*security.AUTHENTICATED)
@commit_point(on_refusal=rerender(_password_page))
def choose_password() -> Any:
    """Any account may change its password here; one whose password an administrator set may open nothing else
    until it has (``mfg.web.init_web``)."""
    if request.method == "GET":
        return _password_page()
    identity_service.choose_password(
        db(),
        signed_in_user(),
        request.form.get("password", ""),
        request.form.get("new_password", ""),
        request.form.get("new_password_again", ""),
        where=f"password change from {request.remote_addr or 'unknown terminal'}",
    )
    # The change ended every session of the account, this one too: signing in again proves the new password.
    logout_user()
    session.clear()
    flash("Password changed. Every session of your account has ended: sign in with your new password.", "ok")
    return redirect(url_for("auth.login"))
