"""The commit point: one per request, the same for every station.

A view that writes is wrapped by ``commit_point``. The view parses the form, calls one service and chooses the
response; the wrapper commits once at the end, or rolls back:

* the view returns: one ``COMMIT``, then its response goes out;
* a ``Refusal`` (from the view or from the commit): roll back, record the attempt in a transaction of its own
  (``record_refusal``; a wrong password: see below), and answer with the view's ``on_refusal``: its page again
  with the error and what was typed (``request.form`` is still there), or a flash and a redirect. Without an
  ``on_refusal`` the app's refusal handler records it and shows the error page;
* a ``Refusal`` with follow-ups (a wrong password, a login to a locked account) in a writing request: only
  the view's work is undone, to the SAVEPOINT taken after the lock; the follow-ups and the record of the
  attempt run in the same transaction, committed before the chain lock is released. A wrong password is thus
  counted in the transaction that checked it: the next request waiting for the lock sees the new count, and
  at the threshold a locked account;
* anything else: roll back and re-raise; the 500 page says that nothing was saved.

What the view put into the signed cookie (signed in or out, flashed "saved") goes back to how it was whenever
nothing is committed, so a page never claims what the database does not hold.

The app-wide answers to refusals raised outside a view (the role gate, a NUL character, a stale form) and the
idle sign-out record through the same functions: in the web layer only this module commits.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

from flask import Flask, current_app, flash, g, redirect, request, session, url_for
from flask_login import current_user
from flask_wtf.csrf import CSRFError
from sqlalchemy.orm import Session

from mfg.audit import service as audit_service
from mfg.db import begin_writing as db_begin_writing
from mfg.errors import NotFound, PermissionRefused, Refusal, SignatureRefused, ValidationRefused
from mfg.identity.models import User

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R", bound=Refusal)

#: ``on_refusal(refusal, status, **view_args)``: the response to a refused request, after it is recorded
OnRefusal = Callable[..., Any]
#: ``error_page(status, title, message)``: the app's error page (JSON under /api/)
ErrorPage = Callable[[int, str, str], Any]

REFUSAL_STATUS: dict[type[Refusal], int] = {
    NotFound: 404,
    PermissionRefused: 403,
    SignatureRefused: 422,
    ValidationRefused: 422,
}

# Methods that never write: their view's work is never committed (only the record of a refusal is).
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_ABOUT_THE_URL = "mfg_about_the_url"
_RECORDED = "mfg_recorded"


def db() -> Session:
    """The request's database session, opened on first use and closed at teardown."""
    if "db_session" not in g:
        g.db_session = current_app.extensions["mfg.sessions"]()
    return g.db_session


T = TypeVar("T")


def get_record(model: type[T], record_id: int, what: str) -> T:
    """A record named in the URL, or a 404 refusal that says what was not found."""
    found = db().get(model, record_id)
    if found is None:
        raise about_the_url(
            NotFound(f"no {what} {record_id}", entity_type=getattr(model, "__tablename__", ""))
        )
    return found


def signed_in_user() -> User:
    """The signed-in account as a domain User (the session loader already refused missing or locked ones)."""
    user = db().get(User, current_user.id)
    assert user is not None
    return user


def begin_writing(session_: Session) -> None:
    """Called before anything is read in a transaction that may write: the request of a writing view, and the
    transaction that records a refusal or a sign-out. It takes the chain lock first (DESIGN §7), so what the
    request reads is what the previous writer committed; a read-only request never waits for it."""
    db_begin_writing(session_)


def actor_name() -> str:
    return current_user.username if current_user.is_authenticated else "anonymous"


FORM_FIELDS_KEPT = 60  # more than any form of the system has: a flood of fields is not kept, only counted
FORM_VALUE_KEPT = 200
REFUSAL_TEXT_KEPT = 1000  # a refusal message or path on record: longer ones are cut, with their length


def _kept(text: str, limit: int = REFUSAL_TEXT_KEPT) -> str:
    """A refusal's text on record, bounded: a 400 kB path must not grow the append-only trail by 400 kB."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _form_for_trail() -> dict[str, str]:
    # What was typed stays on record with the refusal; secrets never do, nor an unbounded flood of fields.
    typed = [(k, v) for k, v in request.form.items(multi=True) if "password" not in k and k != "csrf_token"]
    kept = {k[:FORM_VALUE_KEPT]: v[:FORM_VALUE_KEPT] for k, v in typed[:FORM_FIELDS_KEPT]}
    if len(typed) > FORM_FIELDS_KEPT:
        kept["(not kept)"] = f"{len(typed) - FORM_FIELDS_KEPT} more fields"
    return kept


#: the longest redirect target followed: longer than any page's own URL, far shorter than a header may be
REDIRECT_TARGET_MAX = 512


def _plain_target(target: str) -> bool:
    """Short printable ASCII with no backslash: nothing that could split or bloat the Location header."""
    return len(target) <= REDIRECT_TARGET_MAX and "\\" not in target and all("!" <= c <= "~" for c in target)


def same_site(target: str | None, fallback: str) -> str:
    """A redirect target on this site only (a path, or a full URL of this host), short and of printable ASCII
    (``REDIRECT_TARGET_MAX``); else ``fallback``'s URL. An open redirect would let a link or a forged form
    borrow a trusted page to send a user elsewhere; a control character would split the Location header (a
    500), and a megabyte of ``next`` would be copied into it."""
    if target and _plain_target(target):
        parts = urlsplit(target)
        if not parts.scheme and not parts.netloc and target.startswith("/") and not target.startswith("//"):
            return target
        if parts.scheme in ("http", "https") and parts.netloc == request.host:
            return urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return url_for(fallback)


def status_of(refusal: Refusal) -> int:
    for refusal_type, status in REFUSAL_STATUS.items():
        if isinstance(refusal, refusal_type):
            return status
    return 422


def record_in_own_transaction(write: Callable[[Session], object]) -> None:
    """Roll back whatever the request began, then ``write`` and commit: for what stays on record although the
    request's own work does not (a refusal, a sign-out after the idle limit)."""
    session_ = db()
    session_.rollback()
    begin_writing(session_)
    write(session_)
    session_.commit()


def record_refusal(refusal: Refusal, *, under_the_lock: bool = False) -> int:
    """Roll back the refused work, run its follow-ups (a wrong password is counted), record the attempt,
    commit. Returns the HTTP status of the refusal.

    ``under_the_lock``: the request's own work is already undone (rolled back to its savepoint) and its
    transaction, still holding the chain lock, records the refusal and commits. A refusal is recorded once:
    recording it again does nothing."""
    if getattr(refusal, _RECORDED, False):
        return status_of(refusal)

    def write(session_: Session) -> None:
        for follow_up in refusal.after_rollback:
            follow_up(session_)
        if refusal.record:
            audit_service.record_event(
                session_,
                actor=actor_name(),
                action="refused",
                entity_type=refusal.entity_type or "request",
                entity_id=_kept(refusal.entity_id, 120) if refusal.entity_id else refusal.entity_id,
                detail={
                    "message": _kept(refusal.message),
                    "endpoint": request.endpoint or "",
                    "method": request.method,
                    "path": _kept(request.path),
                    "refusal": type(refusal).__name__,
                    "form": _form_for_trail(),
                },
            )

    if under_the_lock:
        write(db())
        db().commit()
    else:
        record_in_own_transaction(write)
    setattr(refusal, _RECORDED, True)
    return status_of(refusal)


def about_the_url(refusal: R) -> R:
    """Mark a refusal as being about the URL (the record it names does not exist), not about what was typed:
    the error page answers it whatever the view's ``on_refusal`` says, there being no form to show again."""
    setattr(refusal, _ABOUT_THE_URL, True)
    return refusal


def _cookie() -> dict[str, Any]:
    return copy.deepcopy(dict(session))


def _restore_cookie(before: dict[str, Any]) -> None:
    if dict(session) == before:
        return
    session.clear()
    session.update(before)
    g.pop("_login_user", None)  # Flask-Login reloads who is signed in from the restored cookie


def commit_point(on_refusal: OnRefusal | None = None) -> Callable[[F], F]:
    """The view's request commits once at its end, or rolls back; see the module's docstring.

    ``on_refusal(refusal, status, **view_args)`` answers a refusal once it is recorded; ``rerender``,
    ``redirect_to`` and ``back_to_referrer`` make the usual ones. If it cannot show its page (it is refused
    itself: the record the URL names does not exist, say), the error page answers and the attempt stays
    recorded once. On GET and HEAD the view is a read: nothing of it is committed, only its refusal recorded.
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def at_commit_point(**view_args: Any) -> Any:
            session_ = db()
            writing = request.method not in READ_METHODS
            views_work = None
            if writing:
                begin_writing(session_)
                views_work = session_.begin_nested()  # a SAVEPOINT: the view's work, undone on a refusal
            cookie_before = _cookie()
            try:
                response = view(**view_args)
                if writing:
                    session_.commit()
                return response
            except Refusal as refusal:
                if views_work is not None and views_work.is_active and refusal.after_rollback:
                    # A wrong password (or a refused account) is counted in the transaction that checked it,
                    # before the chain lock is released: the next request waiting for the lock sees the new
                    # count, and at the threshold a locked account. Only the view's work is undone.
                    views_work.rollback()
                    record_refusal(refusal, under_the_lock=True)
                else:
                    session_.rollback()
                _restore_cookie(cookie_before)
                if on_refusal is None or getattr(refusal, _ABOUT_THE_URL, False):
                    raise  # the app's refusal handler records it and shows the error page
                status = record_refusal(refusal)
                try:
                    return on_refusal(refusal, status, **view_args)
                except Refusal as again:
                    again.record = False  # the attempt is on record already
                    raise
            except BaseException:
                session_.rollback()
                _restore_cookie(cookie_before)
                raise

        at_commit_point.mfg_commit_point = True  # type: ignore[attr-defined]
        return cast(F, at_commit_point)

    return decorate


# --- ready-made answers to a refusal ---------------------------------------------------------------------


def rerender(page: Callable[..., Any]) -> OnRefusal:
    """The view's page again: ``page(error=message, status=status)``, which shows what was typed from
    ``request.form``. For a page that needs the view's arguments, pass ``on_refusal`` a function of
    ``(refusal, status, **view_args)`` instead."""

    def on_refusal(refusal: Refusal, status: int, **_view_args: Any) -> Any:
        return page(error=refusal.message, status=status)

    return on_refusal


def redirect_to(endpoint: str, *, prefix: str = "Refused: ", **url_values: Any) -> OnRefusal:
    """Flash the refusal and go to ``endpoint``."""

    def on_refusal(refusal: Refusal, _status: int, **_view_args: Any) -> Any:
        flash(f"{prefix}{refusal.message}", "error")
        return redirect(url_for(endpoint, **url_values))

    return on_refusal


def back_to_referrer(fallback: str = "home.index", *, prefix: str = "Refused: ") -> OnRefusal:
    """Flash the refusal and go back to the page the request came from (``fallback`` without one)."""

    def on_refusal(refusal: Refusal, _status: int, **_view_args: Any) -> Any:
        flash(f"{prefix}{refusal.message}", "error")
        return redirect(same_site(request.referrer, fallback))

    return on_refusal


# --- the request boundary outside views ------------------------------------------------------------------


def install(app: Flask, error_page: ErrorPage) -> None:
    """The app-wide part: refusals raised outside a view's commit point, stale forms, the session's end."""

    @app.teardown_request
    def close_session(_exc: BaseException | None) -> None:
        session_ = g.pop("db_session", None)
        if session_ is not None:
            session_.rollback()
            session_.close()

    @app.errorhandler(Refusal)
    def refused(refusal: Refusal) -> Any:
        return error_page(record_refusal(refusal), "Refused", refusal.message)

    @app.errorhandler(CSRFError)
    def csrf_refused(_exc: CSRFError) -> Any:
        refusal = ValidationRefused(
            "the form was stale or did not come from this terminal (security token missing or invalid): "
            "reload the page and enter it again"
        )
        record_refusal(refusal)
        return error_page(400, "Form refused", refusal.message)
