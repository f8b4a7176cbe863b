"""Argon2 password hashing. The cost is a setting: production keeps argon2's defaults, tests turn it down."""

from __future__ import annotations

import os
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 10


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)


def hasher() -> PasswordHasher:
    defaults = PasswordHasher()
    return _hasher(
        int(os.environ.get("MFG_ARGON2_TIME_COST", defaults.time_cost)),
        int(os.environ.get("MFG_ARGON2_MEMORY_KIB", defaults.memory_cost)),
        int(os.environ.get("MFG_ARGON2_PARALLELISM", defaults.parallelism)),
    )


def hash_password(password: str) -> str:
    return hasher().hash(password)


def password_matches(password_hash: str, password: str) -> bool:
    try:
        return hasher().verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """Made with other settings than the server's: a login then costs another time than a refused one, which
    tells an attacker the account exists. Rehashed at the next successful login."""
    try:
        return hasher().check_needs_rehash(password_hash)
    except (InvalidHashError, ValueError):
        return True


_DUMMY_PASSWORD = "no account has this password; it only costs the time of a real check"


@lru_cache(maxsize=4)
def _dummy_hash(time_cost: int, memory_kib: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_kib, parallelism).hash(_DUMMY_PASSWORD)


def spend_a_verification(password: str) -> None:
    """Verify ``password`` against a fixed hash made with the configured cost, and forget the answer: a login
    for an unknown username (or one that cannot sign in) takes as long as one for a real account."""
    h = hasher()
    password_matches(_dummy_hash(h.time_cost, h.memory_cost, h.parallelism), password)


def password_problem(password: str) -> str:
    """Empty when acceptable, otherwise what is wrong with it."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if password.strip() != password:
        return "a password cannot start or end with a space"
    return ""
