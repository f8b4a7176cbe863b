"""Pure rules of the audit trail: canonical serialisation, event hashes, chain checks and state replay.

No database here: the service feeds rows in, these functions say whether the story they tell holds together.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

GENESIS_HASH = "0" * 64
REDACTED_PREFIX = "sha256:"

AuditValue = str | int | float | bool | None


def audit_value(value: Any) -> AuditValue:
    """One representation per value on every backend, so hashes and comparisons agree."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in audited data")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, enum.Enum):
        return audit_value(value.value)
    raise TypeError(f"cannot put {type(value).__name__} in the audit trail")


def redact(value: Any) -> AuditValue:
    """Secrets (password hashes) enter the trail as a digest: changes stay provable, secrets stay secret."""
    if value is None:
        return None
    return REDACTED_PREFIX + hashlib.sha256(str(value).encode()).hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class EventRecord:
    """What is hashed of an event: every stored column but the hash itself."""

    id: int
    occurred_at: datetime
    actor: str
    action: str
    entity_type: str
    entity_id: str
    changes: str
    detail: str
    reason: str | None
    prev_hash: str


def event_hash(event: EventRecord) -> str:
    return sha256_hex(
        canonical_json(
            [
                event.id,
                audit_value(event.occurred_at),
                event.actor,
                event.action,
                event.entity_type,
                event.entity_id,
                event.changes,
                event.detail,
                event.reason,
                event.prev_hash,
            ]
        )
    )


@dataclass(frozen=True)
class StoredEvent:
    record: EventRecord
    stored_hash: str


def first_chain_break(events: Iterable[StoredEvent]) -> tuple[int | None, str]:
    """Walk the chain in id order. Returns (None, "") when intact, else the first broken id and why."""
    expected_id = 1
    previous_hash = GENESIS_HASH
    for stored in events:
        rec = stored.record
        if rec.id != expected_id:
            missing = f"{expected_id}" if rec.id == expected_id + 1 else f"{expected_id}..{rec.id - 1}"
            return expected_id, (
                f"audit event {missing} missing: "
                f"the chain jumps from event {expected_id - 1} to event {rec.id}"
            )
        if rec.prev_hash != previous_hash:
            return rec.id, f"audit event {rec.id}: its previous-hash does not match event {rec.id - 1}"
        recomputed = event_hash(rec)
        if recomputed != stored.stored_hash:
            return rec.id, f"audit event {rec.id}: its content does not match its hash (altered)"
        previous_hash = stored.stored_hash
        expected_id += 1
    return None, ""


EntityKey = tuple[str, str]


@dataclass
class ReplayedState:
    fields: dict[EntityKey, dict[str, AuditValue]]
    # the first inconsistency found inside the trail itself (an event whose "old" is not the replayed value)
    inconsistency: str = ""


def replay(events: Iterable[tuple[int, str, str, Mapping[str, list[AuditValue]]]]) -> ReplayedState:
    """Apply each event's field changes in order: (event id, entity type, entity id, {field: [old, new]})."""
    state = ReplayedState(fields={})
    for event_id, entity_type, entity_id, changes in events:
        if not changes:
            continue
        row = state.fields.setdefault((entity_type, entity_id), {})
        for field, (old, new) in changes.items():
            if not state.inconsistency and row.get(field) != old:
                state.inconsistency = (
                    f"audit event {event_id}: says {entity_type} {entity_id} field {field} was {old!r}, "
                    f"but the trail before it says {row.get(field)!r}"
                )
            row[field] = new
    return state


def compare_row(
    entity_type: str,
    entity_id: str,
    current: Mapping[str, AuditValue],
    expected: Mapping[str, AuditValue] | None,
) -> str:
    """Empty when the row matches its trail, otherwise a sentence naming the table, row and field."""
    if expected is None:
        return f"table {entity_type} row {entity_id}: exists but has no audit trail"
    for field in sorted(set(current) | set(expected)):
        now = current.get(field)
        said = expected.get(field)
        if now != said:
            return (
                f"table {entity_type} row {entity_id}: field {field} is {now!r} "
                f"but its audit trail says {said!r}"
            )
    return ""
