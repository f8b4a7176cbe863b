"""Pure chain arithmetic: any change to an event, a removed event or a re-linked event is found."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mfg.audit import rules
from mfg.errors import SignatureRefused
from mfg.identity.rules import content_sha256, require_different_person


def _chain(n: int) -> list[rules.StoredEvent]:
    events: list[rules.StoredEvent] = []
    previous = rules.GENESIS_HASH
    for i in range(1, n + 1):
        record = rules.EventRecord(
            id=i,
            occurred_at=datetime(2026, 11, 26, 12, 0, i, tzinfo=UTC),
            actor="tech",
            action="update",
            entity_type="subject",
            entity_id="1",
            changes=rules.canonical_json({"name": [f"n{i - 1}", f"n{i}"]}),
            detail="{}",
            reason="typo",
            prev_hash=previous,
        )
        previous = rules.event_hash(record)
        events.append(rules.StoredEvent(record, previous))
    return events


def test_an_intact_chain_has_no_break() -> None:
    assert rules.first_chain_break(_chain(10)) == (None, "")


@given(st.integers(min_value=1, max_value=8), st.sampled_from(["actor", "reason", "changes", "entity_id"]))
def test_altering_any_field_of_any_event_breaks_the_chain_there(index: int, field: str) -> None:
    chain = _chain(8)
    victim = chain[index - 1]
    chain[index - 1] = rules.StoredEvent(replace(victim.record, **{field: "tampered"}), victim.stored_hash)
    broken, message = rules.first_chain_break(chain)
    assert broken == index
    assert f"audit event {index}" in message


def test_removing_an_event_names_the_missing_id() -> None:
    chain = _chain(6)
    del chain[2]
    broken, message = rules.first_chain_break(chain)
    assert broken == 3
    assert "audit event 3 missing" in message


def test_rehashing_a_tampered_event_still_breaks_the_next_link() -> None:
    chain = _chain(5)
    forged = replace(chain[1].record, reason="forged")
    chain[1] = rules.StoredEvent(forged, rules.event_hash(forged))
    broken, message = rules.first_chain_break(chain)
    assert broken == 3 and "previous-hash does not match" in message


def test_values_have_one_canonical_form() -> None:
    assert rules.audit_value(datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2026-01-02T03:04:05.000006Z"
    assert rules.audit_value(date(2026, 1, 2)) == "2026-01-02"
    assert rules.audit_value(Decimal("1.50")) == "1.50"
    with pytest.raises(ValueError, match="naive"):
        rules.audit_value(datetime(2026, 1, 2))
    assert rules.redact("secret").startswith("sha256:") and "secret" not in rules.redact("secret")


def test_replay_and_compare_name_the_differing_field() -> None:
    state = rules.replay(
        [(1, "subject", "1", {"name": [None, "A"]}), (2, "subject", "1", {"name": ["A", "B"]})]
    )
    assert state.inconsistency == ""
    assert rules.compare_row("subject", "1", {"name": "B"}, state.fields[("subject", "1")]) == ""
    assert "field name is 'C' but its audit trail says 'B'" in rules.compare_row(
        "subject", "1", {"name": "C"}, state.fields[("subject", "1")]
    )


def test_separation_of_duties_and_signed_content() -> None:
    with pytest.raises(SignatureRefused, match="second person"):
        require_different_person("tech", "tech", "step 3")
    require_different_person("tech", "tech2", "step 3")
    a = content_sha256("subject", "1", {"name": "A"})
    assert a != content_sha256("subject", "1", {"name": "B"})
    assert a == content_sha256("subject", "1", {"name": "A"})
