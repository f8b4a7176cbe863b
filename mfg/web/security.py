"""The role gate: every endpoint declares who may use it, and an endpoint that declares nothing is closed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from flask import current_app, request
from flask_login import current_user

from mfg.errors import PermissionRefused
from mfg.identity.models import User
from mfg.identity.rules import GMP_ROLES, ROLES

F = TypeVar("F", bound=Callable[..., Any])

AUTHENTICATED = frozenset(ROLES)
GMP = frozenset(GMP_ROLES)


class SessionUser:
    """Flask-Login's view of an account; the domain User stays free of Flask."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.id = user.id
        self.username = user.username
        self.full_name = user.full_name
        self.role = user.role
        # read from the database on every request by the user loader: clears as soon as the holder chose
        self.must_choose_password = user.password_must_change

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return str(self.id)


def declare(view: Callable[..., Any], *, roles: Iterable[str] = (), public: bool = False) -> None:
    view.mfg_public = public  # type: ignore[attr-defined]
    view.mfg_roles = frozenset(roles)  # type: ignore[attr-defined]


def roles_required(*roles: str) -> Callable[[F], F]:
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise ValueError(f"unknown roles {unknown}")

    def decorate(view: F) -> F:
        declare(view, roles=roles)
        return view

    return decorate


def public(view: F) -> F:
    declare(view, public=True)
    return view


def policy_of(endpoint: str) -> tuple[bool, frozenset[str]]:
    view = current_app.view_functions.get(endpoint)
    return bool(getattr(view, "mfg_public", False)), getattr(view, "mfg_roles", frozenset())


def can_access(endpoint: str) -> bool:
    is_public, roles = policy_of(endpoint)
    return is_public or (current_user.is_authenticated and current_user.role in roles)


def enforce_policy() -> Any:
    if request.endpoint is None:
        return None  # 404 / 405 follow
    is_public, roles = policy_of(request.endpoint)
    if is_public:
        return None
    if not current_user.is_authenticated:
        return current_app.login_manager.unauthorized()  # type: ignore[attr-defined]
    if current_user.role not in roles:
        raise PermissionRefused(f"the {current_user.role} role may not use this page ({request.path})")
    return None
