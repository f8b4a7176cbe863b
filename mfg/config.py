"""Configuration from the environment, with embedded defaults so a new user needs no server.

MFG_DATABASE_URL      SQLAlchemy URL (default: SQLite file in the instance folder)
MFG_ADMIN_DATABASE_URL  the schema owner's URL, for `mfg init`, migrations and `mfg restore` (PostgreSQL
                      in production: the application's role then has no DDL rights; default: MFG_DATABASE_URL)
MFG_SECRET_KEY        session signing key (default: generated once into the instance folder)
MFG_INSTANCE_PATH     where the SQLite file and generated key live (default: ./instance)
MFG_IDLE_TIMEOUT_MINUTES   idle session timeout at shared terminals (default 15)
MFG_LOCKOUT_THRESHOLD      failed logins (or signature passwords) before an account locks (default 5)
MFG_SECURE_COOKIES    1 behind HTTPS: Secure cookies and HSTS (default 0: the demo runs on plain http)
MFG_LOGIN_RATE_LIMIT  sign-in attempts allowed per address and per username (default "20 per minute")
MFG_STUDY             study definition key in mfg/studies (default aamsc)
MFG_AUDIT_KEY_FILE    the audit trail's HMAC key (default: instance folder, audit.key, made by `mfg init`)
MFG_ARGON2_TIME_COST / MFG_ARGON2_MEMORY_KIB / MFG_ARGON2_PARALLELISM   password hashing cost
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from mfg.identity.service import DEFAULT_LOCKOUT_THRESHOLD
from mfg.study.definition import DEFAULT_STUDY

DEFAULT_IDLE_TIMEOUT_MINUTES = 15
DEFAULT_LOGIN_RATE_LIMIT = "20 per minute"


def instance_path() -> Path:
    return Path(os.environ.get("MFG_INSTANCE_PATH") or Path.cwd() / "instance").resolve()


def private_folder(folder: Path) -> Path:
    """The instance folder holds the database and the session key: made readable by its owner only (0700)."""
    if not folder.exists():
        folder.mkdir(parents=True, mode=0o700)
        folder.chmod(0o700)  # mkdir's mode is masked by the umask
    return folder


def private_file(path: Path) -> Path:
    """A file only its owner reads and writes (0600), created empty if missing. SQLite gives its WAL and
    shared-memory files the database file's permissions."""
    path.touch(mode=0o600, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    return path


def database_url(instance: Path | None = None) -> str:
    url = os.environ.get("MFG_DATABASE_URL")
    if url:
        return url
    folder = private_folder(instance or instance_path())
    return f"sqlite:///{private_file(folder / 'mfg.sqlite3')}"


def owner_database_url(instance: Path | None = None) -> str:
    """Who migrates: the schema's owner where production separates the two roles, else the one URL."""
    return os.environ.get("MFG_ADMIN_DATABASE_URL") or database_url(instance)


def _secret_key(instance: Path) -> str:
    key = os.environ.get("MFG_SECRET_KEY")
    if key:
        return key
    key_file = private_folder(instance) / "secret_key"
    if not key_file.exists():
        private_file(key_file).write_text(secrets.token_hex(32))
    return key_file.read_text().strip()


def _int_env(name: str, default: int, low: int, high: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a whole number, got {raw!r}") from exc
    if not low <= value <= high:
        raise SystemExit(f"{name} must be between {low} and {high}, got {value}")
    return value


def _rate_limit_env(name: str, default: str) -> str:
    raw = os.environ.get(name, "").strip() or default
    from limits import parse_many

    try:
        parse_many(raw)
    except ValueError as exc:
        raise SystemExit(f"{name} must be a rate such as '20 per minute', got {raw!r}") from exc
    return raw


def _flag_env(name: str) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise SystemExit(f"{name} must be 1 or 0, got {raw!r}")


def cookie_settings(secure: bool) -> dict[str, Any]:
    """Cookies: never readable by script, not sent on cross-site posts; over HTTPS only when ``secure``."""
    return {
        "SECURE_COOKIES": secure,
        "SESSION_COOKIE_SECURE": secure,
        "REMEMBER_COOKIE_SECURE": secure,
        "SESSION_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "REMEMBER_COOKIE_SAMESITE": "Lax",
    }


def from_environment(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Settings from the environment; ``overrides`` win, and what they give is never derived (no key file or
    SQLite file is created in an instance folder that the caller replaced)."""
    overrides = overrides or {}
    instance = Path(overrides["INSTANCE_PATH"]) if "INSTANCE_PATH" in overrides else instance_path()
    settings = {
        "INSTANCE_PATH": str(instance),
        "DATABASE_URL": overrides.get("DATABASE_URL") or database_url(instance),
        "SECRET_KEY": overrides.get("SECRET_KEY") or _secret_key(instance),
        "IDLE_TIMEOUT_MINUTES": _int_env(
            "MFG_IDLE_TIMEOUT_MINUTES", DEFAULT_IDLE_TIMEOUT_MINUTES, 1, 24 * 60
        ),
        "LOCKOUT_THRESHOLD": _int_env("MFG_LOCKOUT_THRESHOLD", DEFAULT_LOCKOUT_THRESHOLD, 1, 100),
        "LOGIN_RATE_LIMIT": _rate_limit_env("MFG_LOGIN_RATE_LIMIT", DEFAULT_LOGIN_RATE_LIMIT),
        "STUDY": os.environ.get("MFG_STUDY", DEFAULT_STUDY),
        "AUDIT_KEY_FILE": os.environ.get("MFG_AUDIT_KEY_FILE") or str(instance / "audit.key"),
        **cookie_settings(
            bool(overrides["SECURE_COOKIES"])
            if "SECURE_COOKIES" in overrides
            else _flag_env("MFG_SECURE_COOKIES")
        ),
        "WTF_CSRF_TIME_LIMIT": None,  # the idle timeout ends sessions; a token must not expire mid-step
        "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    }
    settings.update(overrides)
    return settings
