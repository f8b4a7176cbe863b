"""The one way GMP data is written: change the row and append its audit event in the same transaction.

Services call :func:`create`, :func:`update` or :func:`record_event`; none of them commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import inspect, select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import rules
from mfg.audit.models import Audited, AuditEvent
from mfg.db import Base, lock_audit_chain
from mfg.errors import ValidationRefused

Changes = dict[str, list[rules.AuditValue]]


def audited_models() -> dict[str, type[Any]]:
    """Every mapped class that carries the Audited mixin, by table name."""
    import mfg.models  # noqa: F401 - registers every model, whichever entry point is running

    found: dict[str, type[Any]] = {}
    for mapper in Base.registry.mappers:
        cls = mapper.class_
        if issubclass(cls, Audited):
            found[mapper.local_table.name] = cls
    return found


def entity_type_of(obj: Any) -> str:
    return inspect(obj).mapper.local_table.name


def entity_id_of(obj: Any) -> str:
    identity = inspect(obj).identity
    if identity is None:
        raise ValueError("object has no primary key yet: flush before auditing it")
    return "/".join(str(part) for part in identity)


def get_by_entity_id(session: Session, model: type[Any], entity_id: str) -> Any:
    """Load a row from the id its audit events use (primary key parts joined by '/')."""
    columns = inspect(model).primary_key
    parts = entity_id.split("/")
    if len(parts) != len(columns):
        return None
    try:
        key = tuple(column.type.python_type(part) for column, part in zip(columns, parts, strict=True))
    except (ValueError, TypeError):
        return None
    return session.get(model, key if len(key) > 1 else key[0])


def snapshot(obj: Any) -> dict[str, rules.AuditValue]:
    """The audited content of a row, as the trail represents it."""
    mapper = inspect(obj).mapper
    redacted = getattr(type(obj), "__audit_redact__", frozenset())
    values: dict[str, rules.AuditValue] = {}
    for column_attr in mapper.column_attrs:
        name = column_attr.key
        raw = getattr(obj, name)
        values[name] = rules.redact(raw) if name in redacted else rules.audit_value(raw)
    return values


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    changes: Mapping[str, list[rules.AuditValue]] | None = None,
    detail: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> AuditEvent:
    """Append one event to the chain. Serialised by the chain lock, so the chain never forks."""
    lock_audit_chain(session)
    head = session.execute(
        select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    next_id, prev_hash = (head[0] + 1, head[1]) if head else (1, rules.GENESIS_HASH)
    record = rules.EventRecord(
        id=next_id,
        occurred_at=clock.now(),
        actor=actor,
        action=action,
        entity_type=entity_type,
        entity_id=entity_id,
        changes=rules.canonical_json(dict(changes or {})),
        detail=rules.canonical_json(dict(detail or {})),
        reason=reason,
        prev_hash=prev_hash,
    )
    event = AuditEvent(**record.__dict__, hash=rules.event_hash(record))
    session.add(event)
    session.flush()
    return event


def create(
    session: Session,
    actor: str,
    obj: Any,
    *,
    reason: str | None = None,
    detail: Mapping[str, Any] | None = None,
) -> Any:
    """Insert a GMP row and its "create" event."""
    lock_audit_chain(session)
    session.add(obj)
    session.flush()
    changes = {name: [None, value] for name, value in snapshot(obj).items()}
    record_event(
        session,
        actor=actor,
        action="create",
        entity_type=entity_type_of(obj),
        entity_id=entity_id_of(obj),
        changes=changes,
        detail=detail,
        reason=reason,
    )
    return obj


def update(
    session: Session,
    actor: str,
    obj: Any,
    *,
    reason: str,
    action: str = "update",
    detail: Mapping[str, Any] | None = None,
    **new_values: Any,
) -> Changes:
    """Change fields of a GMP row with a reason; the event keeps old and new. No change, no event."""
    if not reason or not reason.strip():
        raise ValidationRefused(
            f"a reason is required to change recorded {entity_type_of(obj)} data",
            entity_type=entity_type_of(obj),
            entity_id=entity_id_of(obj),
        )
    lock_audit_chain(session)
    before = snapshot(obj)
    for name, value in new_values.items():
        if name not in before:
            raise AttributeError(f"{entity_type_of(obj)} has no field {name}")
        setattr(obj, name, value)
    session.flush()
    after = snapshot(obj)
    changes: Changes = {k: [before[k], after[k]] for k in after if after[k] != before[k]}
    if changes:
        record_event(
            session,
            actor=actor,
            action=action,
            entity_type=entity_type_of(obj),
            entity_id=entity_id_of(obj),
            changes=changes,
            detail=detail,
            reason=reason.strip(),
        )
    return changes


# --- verification -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    problem: str = ""
    broken_event_id: int | None = None


def _stored_events(session: Session, keep: set[Any]) -> Iterator[rules.StoredEvent]:
    # populate_existing: the verifier reads the database, never what this session may have cached.
    rows = session.execute(
        select(AuditEvent).order_by(AuditEvent.id).execution_options(yield_per=2000, populate_existing=True)
    )
    for (event,) in rows:
        yield rules.StoredEvent(
            record=rules.EventRecord(
                id=event.id,
                occurred_at=event.occurred_at,
                actor=event.actor,
                action=event.action,
                entity_type=event.entity_type,
                entity_id=event.entity_id,
                changes=event.changes,
                detail=event.detail,
                reason=event.reason,
                prev_hash=event.prev_hash,
            ),
            stored_hash=event.hash,
        )
        _release(session, event, keep)


def _release(session: Session, obj: Any, keep: set[Any]) -> None:
    # Keep memory flat on a long trail, without detaching objects the caller already held.
    if inspect(obj).identity_key not in keep:
        session.expunge(obj)


def verify(session: Session) -> VerifyResult:
    """Recompute the chain, then compare every audited row with the state its events say it has."""
    keep = set(session.identity_map.keys())
    count = 0

    def counted() -> Iterator[rules.StoredEvent]:
        nonlocal count
        for stored in _stored_events(session, keep):
            count += 1
            yield stored

    broken_id, problem = rules.first_chain_break(counted())
    if broken_id is not None:
        return VerifyResult(ok=False, events=count, problem=problem, broken_event_id=broken_id)

    models = audited_models()
    replayed = rules.replay(
        (e.record.id, e.record.entity_type, e.record.entity_id, json.loads(e.record.changes))
        for e in _stored_events(session, keep)
        if e.record.entity_type in models
    )
    if replayed.inconsistency:
        return VerifyResult(ok=False, events=count, problem=replayed.inconsistency)

    seen: set[rules.EntityKey] = set()
    for table_name in sorted(models):
        model = models[table_name]
        for obj in session.scalars(select(model).execution_options(yield_per=1000, populate_existing=True)):
            key = (table_name, entity_id_of(obj))
            seen.add(key)
            problem = rules.compare_row(table_name, key[1], snapshot(obj), replayed.fields.get(key))
            _release(session, obj, keep)
            if problem:
                return VerifyResult(ok=False, events=count, problem=problem)
    for table_name, entity_id in sorted(set(replayed.fields) - seen):
        return VerifyResult(
            ok=False,
            events=count,
            problem=f"table {table_name} row {entity_id}: is in the audit trail but missing from the table",
        )
    return VerifyResult(ok=True, events=count)
