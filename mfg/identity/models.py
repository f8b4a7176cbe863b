from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from mfg.audit.models import Audited
from mfg.db import Base, UTCDateTime
from mfg.identity.rules import MEANINGS, ROLES

_role_list = ", ".join(f"'{r}'" for r in ROLES)
_meaning_list = ", ".join(f"'{m}'" for m in MEANINGS)


class User(Audited, Base):
    """An account. Never deleted and never reused: leavers are deactivated."""

    __tablename__ = "user_account"
    __audit_redact__ = frozenset({"password_hash"})
    # What the migrations that added these columns gave the accounts already there (their trail predates the
    # column): the audit verifier holds such an account to that value until an event names the field.
    __audit_added_later__ = {"session_version": 0, "password_must_change": False}  # 0008, 0011
    __table_args__ = (CheckConstraint(f"role IN ({_role_list})", name="role_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    full_name: Mapped[str] = mapped_column(String(200), nullable=False)
    role: Mapped[str] = mapped_column(String(32), nullable=False)
    password_hash: Mapped[str] = mapped_column(String(255), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    failed_logins: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    locked: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Stored in the signed cookie at login and compared on every request: raising it ends every session of
    # the account at once, on the server (logout, idle sign-out, deactivation, lock, unlock, password change).
    session_version: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default="0")
    # Set while the password is one somebody else chose (an administrator creating the account): whoever
    # chose it could sign as its holder, so the account signs in only to choose its own, and signs nothing
    # until then.
    password_must_change: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )


class Signature(Audited, Base):
    """An electronic signature: a record of its own, tied to what it signed by the SHA-256 of that content."""

    __tablename__ = "signature"
    __table_args__ = (CheckConstraint(f"meaning IN ({_meaning_list})", name="meaning_known"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    signer_id: Mapped[int] = mapped_column(ForeignKey("user_account.id"), nullable=False)
    printed_name: Mapped[str] = mapped_column(String(200), nullable=False)
    signer_role: Mapped[str] = mapped_column(String(32), nullable=False)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    meaning: Mapped[str] = mapped_column(String(20), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(60), nullable=False, index=True)
    entity_id: Mapped[str] = mapped_column(String(120), nullable=False)
    content_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    comment: Mapped[str | None] = mapped_column(Text)
