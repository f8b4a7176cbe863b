from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mfg.db import Base, UTCDateTime


class AuditEvent(Base):
    """One link of the chain. The database refuses UPDATE and DELETE on this table (see the migration).

    ``id`` is assigned by the appender under the chain lock, so ids are gapless and in chain order: a removed
    row shows as a gap as well as a broken link. ``hmac`` is not part of ``hash``: the chain is the same with
    or without the key, and the key proves who could write it.
    """

    __tablename__ = "audit_event"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(120), nullable=False)
    action: Mapped[str] = mapped_column(String(40), nullable=False)
    entity_type: Mapped[str] = mapped_column(String(60), nullable=False, index=True)
    entity_id: Mapped[str] = mapped_column(String(120), nullable=False)
    # canonical JSON {field: [old, new]}: the state changes the verifier replays
    changes: Mapped[str] = mapped_column(Text, nullable=False)
    # canonical JSON of context that is not row state (a refusal's message, a login's terminal, ...)
    detail: Mapped[str] = mapped_column(Text, nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # HMAC-SHA256 of ``hash`` under the audit key, which is kept outside the database (mfg.audit.key).
    # NULL only on events written before the key existed (see rules.check_chain).
    hmac: Mapped[str | None] = mapped_column(String(64))


class Audited:
    """Mixin for GMP tables: every row's current content must equal what its audit events say.

    ``__audit_redact__`` names columns that enter the trail as a digest only (secrets);
    ``__signed_fields__`` names what an e-signature on the row covers (default: every column), and
    ``__signed_fields_by_meaning__`` overrides it per signature meaning (an assessment and a closure of the
    same deviation cover different fields).
    """

    __audit_redact__: frozenset[str] = frozenset()
    __signed_fields__: tuple[str, ...] | None = None
    __signed_fields_by_meaning__: dict[str, tuple[str, ...]] = {}
