"""Login rate limits, per address and per account (Flask-Limiter, in-memory storage by default).

The lockout stops guessing one account's password; these limits slow down guessing across many accounts from
one address and a flood at one account from many. Settings: LOGIN_RATE_LIMIT (MFG_LOGIN_RATE_LIMIT, e.g.
"20 per minute", both limits) and RATELIMIT_STORAGE_URI (default ``memory://``: one server process).
A request over a limit gets a 429 page, and the attempt is recorded in the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, current_app, request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from mfg.audit import service as audit_service
from mfg.web import transaction

TITLE = "Too many sign-in attempts"
MESSAGE = (
    "Too many sign-in attempts from this terminal or for this username: wait a minute and try again. "
    "If it persists, ask an administrator."
)


def _typed_username() -> str:
    return request.form.get("username", "").strip().lower()[:64]


def _login_limit() -> str:
    return str(current_app.config["LOGIN_RATE_LIMIT"])


def install(app: Flask, error_page: Callable[[int, str, str], Any]) -> None:
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    limiter = Limiter(get_remote_address, app=app, headers_enabled=False)
    app.extensions["mfg.limiter"] = limiter
    login_view = app.view_functions["auth.login"]
    per_address = limiter.limit(_login_limit, methods=["POST"], scope="login-address")
    per_account = limiter.limit(
        _login_limit, key_func=lambda: f"account:{_typed_username()}", methods=["POST"], scope="login-account"
    )
    # The wrapped view checks both limits before the login view (and its commit point) runs.
    app.view_functions["auth.login"] = per_account(per_address(login_view))

    @app.errorhandler(RateLimitExceeded)
    def too_many(exc: RateLimitExceeded) -> Any:
        typed = _typed_username()
        transaction.record_in_own_transaction(
            lambda session_: audit_service.record_event(
                session_,
                actor=typed or "anonymous",
                action="login_rate_limited",
                entity_type="user_account",
                entity_id="",
                detail={
                    "username": typed,
                    "address": request.remote_addr or "unknown terminal",
                    "limit": str(exc.limit.limit) if exc.limit else "",
                    "path": request.path,
                },
            )
        )
        return error_page(429, TITLE, MESSAGE)
