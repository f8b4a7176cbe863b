"""Pure rules of the audit trail: canonical serialisation, event hashes, chain checks and state replay.

No database here: the service feeds rows in, these functions say whether the story they tell holds together.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

GENESIS_HASH = "0" * 64
# The event that marks where keyed events begin on a trail that predates the audit key (see check_chain).
KEY_INTRODUCED = "key_introduced"
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


def event_hmac(key: bytes, event_hash_hex: str) -> str:
    """HMAC-SHA256 of an event's hash (which covers its content and the previous hash) under the audit key."""
    return hmac.new(key, f"mfg-audit-event:{event_hash_hex}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """The chain head anchored outside the database: event id, its hash, when (UTC), the HMAC of the three."""

    event_id: int
    hash: str
    at: str
    hmac: str

    def line(self) -> str:
        return canonical_json(
            {"at": self.at, "event_id": self.event_id, "hash": self.hash, "hmac": self.hmac}
        )


def checkpoint_hmac(key: bytes, event_id: int, event_hash_hex: str, at: str) -> str:
    message = canonical_json(["mfg-audit-checkpoint", event_id, event_hash_hex, at])
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def make_checkpoint(key: bytes, event_id: int, event_hash_hex: str, at: datetime) -> Checkpoint:
    when = audit_value(at)
    assert isinstance(when, str)
    return Checkpoint(event_id, event_hash_hex, when, checkpoint_hmac(key, event_id, event_hash_hex, when))


def parse_checkpoint(line: str) -> Checkpoint:
    """One line of the checkpoint file; ValueError when it is not a checkpoint."""
    try:
        data = json.loads(line)
        checkpoint = Checkpoint(
            event_id=data["event_id"], hash=data["hash"], at=data["at"], hmac=data["hmac"]
        )
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"not a checkpoint ({exc.__class__.__name__})") from exc
    except RecursionError:
        # Deeply nested JSON exhausts the parser's stack.
        raise ValueError("not a checkpoint (nested too deeply)") from None
    if not isinstance(checkpoint.event_id, int) or not all(
        isinstance(v, str) for v in (checkpoint.hash, checkpoint.at, checkpoint.hmac)
    ):
        raise ValueError("not a checkpoint (wrong field types)")
    return checkpoint


@dataclass(frozen=True)
class StoredEvent:
    record: EventRecord
    stored_hash: str
    stored_hmac: str | None = None


@dataclass
class ChainReport:
    """What a walk of the whole chain found: every problem, in order, each as (event id or None, sentence)."""

    events: int = 0
    problems: list[tuple[int | None, str]] = field(default_factory=list)
    # events written before the audit key existed, accepted as a keyed key-introduction event follows them
    legacy_events: int = 0
    checkpoints: int = 0


def _ranges(ids: list[int]) -> str:
    parts: list[str] = []
    start = previous = ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == previous + 1:
            previous = i
            continue
        parts.append(str(start) if start == previous else f"{start}..{previous}")
        if i is not None:
            start = previous = i
    return ", ".join(parts)


def check_chain(
    events: Iterable[StoredEvent],
    key: bytes,
    checkpoints: Iterable[tuple[int, Checkpoint]] = (),
    *,
    after: tuple[int, str] | None = None,
) -> ChainReport:
    """Walk the chain in id order and report every problem, not only the first.

    Each event must follow the previous one (gapless ids, previous-hash), match its own hash, and carry the
    HMAC of that hash under ``key``: whoever writes without the key is found, even with a right SHA-256 chain.
    Events without an HMAC are accepted only before a ``key_introduced`` event that is the chain's first keyed
    event (a trail written before the key existed); anywhere else they are "unkeyed". ``checkpoints`` are
    (line number, checkpoint): the chain must still hold, at each checkpoint's event id, the hash it recorded.
    ``after`` (event id, hash): ``events`` start after that already-anchored event, instead of at event 1.
    """
    report = ChainReport()
    anchors: dict[int, list[tuple[int, Checkpoint]]] = {}
    for line_no, checkpoint in checkpoints:
        report.checkpoints += 1
        if not hmac.compare_digest(
            checkpoint.hmac, checkpoint_hmac(key, checkpoint.event_id, checkpoint.hash, checkpoint.at)
        ):
            report.problems.append(
                (None, f"checkpoint line {line_no}: its HMAC does not match (not written with the audit key)")
            )
            continue
        anchors.setdefault(checkpoint.event_id, []).append((line_no, checkpoint))

    expected_id, previous_hash = (after[0] + 1, after[1]) if after else (1, GENESIS_HASH)
    unkeyed: list[int] = []
    keyed_before = False
    last_id = 0
    for stored in events:
        rec = stored.record
        report.events += 1
        last_id = rec.id
        linked = True
        if rec.id != expected_id:
            missing = f"{expected_id}" if rec.id == expected_id + 1 else f"{expected_id}..{rec.id - 1}"
            report.problems.append(
                (
                    expected_id,
                    f"audit event {missing} missing: "
                    f"the chain jumps from event {expected_id - 1} to event {rec.id}",
                )
            )
            linked = False  # the gap is the problem; its next link cannot match as well
        if linked and rec.prev_hash != previous_hash:
            report.problems.append(
                (rec.id, f"audit event {rec.id}: its previous-hash does not match event {rec.id - 1}")
            )
        if event_hash(rec) != stored.stored_hash:
            report.problems.append(
                (rec.id, f"audit event {rec.id}: its content does not match its hash (altered)")
            )
        if stored.stored_hmac is None:
            unkeyed.append(rec.id)
        elif not hmac.compare_digest(stored.stored_hmac, event_hmac(key, stored.stored_hash)):
            report.problems.append(
                (rec.id, f"audit event {rec.id}: its HMAC does not match (not written with the audit key)")
            )
        else:
            if rec.action == KEY_INTRODUCED and not keyed_before:
                # Genuine (keyed) and the first keyed event: what precedes it predates the key.
                report.legacy_events = len(unkeyed)
                unkeyed = []
            keyed_before = True
        for line_no, checkpoint in anchors.pop(rec.id, []):
            if checkpoint.hash != stored.stored_hash:
                report.problems.append(
                    (
                        rec.id,
                        f"audit event {rec.id}: differs from checkpoint line {line_no} ({checkpoint.at}): "
                        "the chain was rewritten after it was anchored",
                    )
                )
        previous_hash = stored.stored_hash
        expected_id = rec.id + 1

    if unkeyed:
        report.problems.append(
            (
                unkeyed[0],
                f"audit event {_ranges(unkeyed)}: unkeyed (no HMAC, and no key-introduction event follows): "
                "written without the audit key",
            )
        )
    for event_id in sorted(anchors):
        for line_no, checkpoint in anchors[event_id]:
            where = (
                f"but the trail ends at event {last_id}: truncated after it was anchored"
                if event_id > last_id
                else "which is not in the trail"
            )
            report.problems.append(
                (None, f"checkpoint line {line_no} ({checkpoint.at}) names audit event {event_id}, {where}")
            )
    return report


EntityKey = tuple[str, str]


@dataclass
class ReplayedState:
    fields: dict[EntityKey, dict[str, AuditValue]]
    # every inconsistency inside the trail itself (an event whose "old" is not the replayed value)
    inconsistencies: list[str] = field(default_factory=list)


#: entity type -> {field: the value a migration gave the rows that existed before it added the field}
AddedLater = Mapping[str, Mapping[str, AuditValue]]


def replay(
    events: Iterable[tuple[int, str, str, Mapping[str, list[AuditValue]]]],
    added_later: AddedLater | None = None,
) -> ReplayedState:
    """Apply each event's field changes in order: (event id, entity type, entity id, {field: [old, new]}).

    A field a migration added after rows existed is in none of their earlier events: such a row holds what the
    migration gave it (``added_later``) until an event names the field, and that event's "old" says so. A row
    created after the migration names the field in its "create" event, as every field, with "old" None."""
    later = added_later or {}
    state = ReplayedState(fields={})
    for event_id, entity_type, entity_id, changes in events:
        if not changes:
            continue
        row = state.fields.setdefault((entity_type, entity_id), {})
        defaults = later.get(entity_type, {})
        for name, (old, new) in changes.items():
            if name in row:
                expected: tuple[AuditValue, ...] = (row[name],)
            else:  # the first event naming the field: a creation, or a change to a row older than the field
                expected = (None, defaults[name]) if name in defaults else (None,)
            if old not in expected:
                state.inconsistencies.append(
                    f"audit event {event_id}: says {entity_type} {entity_id} field {name} was {old!r}, "
                    f"but the trail before it says {row.get(name, defaults.get(name))!r}"
                )
            row[name] = new
    for (entity_type, _entity_id), row in state.fields.items():
        for name, value in later.get(entity_type, {}).items():
            row.setdefault(name, value)
    return state


def row_problems(
    entity_type: str,
    entity_id: str,
    current: Mapping[str, AuditValue],
    expected: Mapping[str, AuditValue] | None,
) -> list[str]:
    """Every way a row differs from its trail, one sentence each naming the table, row and field."""
    if expected is None:
        return [f"table {entity_type} row {entity_id}: exists but has no audit trail"]
    return [
        f"table {entity_type} row {entity_id}: field {name} is {current.get(name)!r} "
        f"but its audit trail says {expected.get(name)!r}"
        for name in sorted(set(current) | set(expected))
        if current.get(name) != expected.get(name)
    ]


def compare_row(
    entity_type: str,
    entity_id: str,
    current: Mapping[str, AuditValue],
    expected: Mapping[str, AuditValue] | None,
) -> str:
    """Empty when the row matches its trail, otherwise the first difference."""
    problems = row_problems(entity_type, entity_id, current, expected)
    return problems[0] if problems else ""
