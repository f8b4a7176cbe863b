"""The one way GMP data is written: change the row and append its audit event in the same transaction.

Services call :func:`create`, :func:`update` or :func:`record_event`; none of them commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, inspect, select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import key as audit_key
from mfg.audit import rules
from mfg.audit import schema as audit_schema
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
    """Append one event to the chain, keyed with the audit key. Serialised by the chain lock, so the chain
    never forks."""
    key = audit_key.current_key()  # before anything is written: no key, no event
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
    event_hash = rules.event_hash(record)
    event = AuditEvent(**record.__dict__, hash=event_hash, hmac=rules.event_hmac(key, event_hash))
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


# --- the key's introduction and the chain head ----------------------------------------------------------


def introduce_key(session: Session, actor: str) -> int:
    """On a trail written before the audit key existed (events, none of them keyed), append the keyed event
    that marks where keyed events begin. Returns how many unkeyed events it covers (0: nothing to do).

    Once any event is keyed, this does nothing: an unkeyed event after that is someone writing without the
    key, and no later `mfg init` may bless it."""
    lock_audit_chain(session)
    if session.scalar(select(AuditEvent.id).where(AuditEvent.hmac.is_not(None)).limit(1)):
        return 0
    unkeyed = session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.hmac.is_(None)))
    if not unkeyed:
        return 0
    record_event(
        session,
        actor=actor,
        action=rules.KEY_INTRODUCED,
        entity_type="audit_key",
        entity_id="1",
        detail={"unkeyed_events_before": unkeyed},
        reason="the audit trail is keyed from here on; earlier events are covered by the SHA-256 chain",
    )
    return unkeyed


def chain_head(session: Session) -> AuditEvent | None:
    return session.scalars(
        select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1).execution_options(populate_existing=True)
    ).first()


def key_problem(session: Session, key: bytes) -> str:
    """Empty when ``key`` wrote the trail's latest keyed event (or nothing is keyed yet), else why not: a
    server, or an init, with another facility's key or a new one must not add to this trail."""
    last_keyed = session.scalars(
        select(AuditEvent).where(AuditEvent.hmac.is_not(None)).order_by(AuditEvent.id.desc()).limit(1)
    ).first()
    if last_keyed is None or last_keyed.hmac == rules.event_hmac(key, last_keyed.hash):
        return ""
    return f"audit event {last_keyed.id} was not written with this audit key"


def keyed_events_exist(session: Session) -> bool:
    return session.scalar(select(AuditEvent.id).where(AuditEvent.hmac.is_not(None)).limit(1)) is not None


def event_hash_at(session: Session, event_id: int) -> str | None:
    return session.scalar(select(AuditEvent.hash).where(AuditEvent.id == event_id))


# --- verification -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    events: int
    problems: tuple[str, ...] = ()
    broken_event_id: int | None = None
    legacy_events: int = 0
    checkpoints: int = 0

    @property
    def problem(self) -> str:
        """The first problem (every one is in ``problems``)."""
        return self.problems[0] if self.problems else ""


def stored_events(
    session: Session, *, after: int = 0, keep: set[Any] | None = None
) -> Iterator[rules.StoredEvent]:
    """The events with ids above ``after``, in id order, as the chain check reads them."""
    if keep is None:
        keep = set(session.identity_map.keys())
    # populate_existing: the verifier reads the database, never what this session may have cached.
    rows = session.execute(
        select(AuditEvent)
        .where(AuditEvent.id > after)
        .order_by(AuditEvent.id)
        .execution_options(yield_per=2000, populate_existing=True)
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
            stored_hmac=event.hmac,
        )
        _release(session, event, keep)


def _release(session: Session, obj: Any, keep: set[Any]) -> None:
    # Keep memory flat on a long trail, without detaching objects the caller already held.
    if inspect(obj).identity_key not in keep:
        session.expunge(obj)


def verify(
    session: Session,
    *,
    key: bytes | None = None,
    checkpoints: Iterable[tuple[int, rules.Checkpoint]] = (),
) -> VerifyResult:
    """Recompute the chain and its HMACs (``key``: default the configured audit key), hold it against the
    ``checkpoints``, then compare every audited row with the state its events say it has, and check that the
    schema still protects the trail (:mod:`mfg.audit.schema`). Every problem found is reported, not only the
    first."""
    keep = set(session.identity_map.keys())
    report = rules.check_chain(
        stored_events(session, keep=keep), key if key is not None else audit_key.current_key(), checkpoints
    )
    problems = [message for _id, message in report.problems]
    broken_id = next((event_id for event_id, _m in report.problems if event_id is not None), None)

    models = audited_models()
    replayed = rules.replay(
        (
            (e.record.id, e.record.entity_type, e.record.entity_id, json.loads(e.record.changes))
            for e in stored_events(session, keep=keep)
            if e.record.entity_type in models
        ),
        {name: getattr(model, "__audit_added_later__", {}) for name, model in models.items()},
    )
    problems.extend(replayed.inconsistencies)

    seen: set[rules.EntityKey] = set()
    for table_name in sorted(models):
        model = models[table_name]
        for obj in session.scalars(select(model).execution_options(yield_per=1000, populate_existing=True)):
            key_ = (table_name, entity_id_of(obj))
            seen.add(key_)
            problems.extend(rules.row_problems(table_name, key_[1], snapshot(obj), replayed.fields.get(key_)))
            _release(session, obj, keep)
    problems.extend(
        f"table {table_name} row {entity_id}: is in the audit trail but missing from the table"
        for table_name, entity_id in sorted(set(replayed.fields) - seen)
    )
    # Last, so the first problem stays the chain's: the schema no longer protecting the data it holds.
    problems.extend(audit_schema.problems(session.connection()))
    return VerifyResult(
        ok=not problems,
        events=report.events,
        problems=tuple(problems),
        broken_event_id=broken_id,
        legacy_events=report.legacy_events,
        checkpoints=report.checkpoints,
    )


def verify_database(
    url: str, *, key: bytes, checkpoints: Iterable[tuple[int, rules.Checkpoint]] = ()
) -> VerifyResult:
    """:func:`verify` of the database at ``url``, in one consistent read-only snapshot: the trail and the
    tables are compared as of one moment while servers go on writing, and no writer waits for the verifier.

    PostgreSQL: a REPEATABLE READ READ ONLY transaction (READ COMMITTED would show rows committed after the
    events were read: "no audit trail"). SQLite: a deferred transaction, which in WAL mode reads one snapshot
    beside the writer (BEGIN IMMEDIATE would hold the write lock for the whole run)."""
    from mfg.db import make_engine

    engine = make_engine(url, begin="deferred")
    try:
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                # The transaction's first statement, before any read takes its snapshot.
                connection.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            with Session(bind=connection) as session:
                return verify(session, key=key, checkpoints=checkpoints)
    finally:
        engine.dispose()
