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

KEY = bytes(range(32))


def _first_break(chain: list[rules.StoredEvent]) -> tuple[int | None, str]:
    problems = rules.check_chain(chain, KEY).problems
    return problems[0] if problems else (None, "")


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
        events.append(rules.StoredEvent(record, previous, rules.event_hmac(KEY, previous)))
    return events


def test_an_intact_chain_has_no_break() -> None:
    assert _first_break(_chain(10)) == (None, "")


@given(st.integers(min_value=1, max_value=8), st.sampled_from(["actor", "reason", "changes", "entity_id"]))
def test_altering_any_field_of_any_event_breaks_the_chain_there(index: int, field: str) -> None:
    chain = _chain(8)
    victim = chain[index - 1]
    chain[index - 1] = replace(victim, record=replace(victim.record, **{field: "tampered"}))
    broken, message = _first_break(chain)
    assert broken == index
    assert f"audit event {index}" in message


def test_removing_an_event_names_the_missing_id() -> None:
    chain = _chain(6)
    del chain[2]
    broken, message = _first_break(chain)
    assert broken == 3
    assert "audit event 3 missing" in message


def test_rehashing_a_tampered_event_still_breaks_the_next_link() -> None:
    chain = _chain(5)
    forged = replace(chain[1].record, reason="forged")
    chain[1] = rules.StoredEvent(forged, rules.event_hash(forged), chain[1].stored_hmac)
    problems = rules.check_chain(chain, KEY).problems
    assert problems == [
        (2, "audit event 2: its HMAC does not match (not written with the audit key)"),
        (3, "audit event 3: its previous-hash does not match event 2"),
    ]


def test_an_event_chained_correctly_without_the_key_is_found() -> None:
    chain = _chain(4)
    forged = replace(chain[-1].record, id=5, prev_hash=chain[-1].stored_hash, actor="qa")
    chain.append(rules.StoredEvent(forged, rules.event_hash(forged), rules.event_hmac(b"guess" * 8, "x")))
    chain.append(
        rules.StoredEvent(replace(forged, id=6, prev_hash=chain[-1].stored_hash), "", None)  # no HMAC at all
    )
    messages = [m for _i, m in rules.check_chain(chain, KEY).problems]
    assert "audit event 5: its HMAC does not match (not written with the audit key)" in messages
    assert any(m.startswith("audit event 6: unkeyed") for m in messages)


def test_unkeyed_events_before_the_key_introduction_are_legacy() -> None:
    chain = [rules.StoredEvent(e.record, e.stored_hash, None) for e in _chain(3)]
    intro = rules.EventRecord(
        id=4,
        occurred_at=datetime(2026, 11, 27, tzinfo=UTC),
        actor="cli:root",
        action=rules.KEY_INTRODUCED,
        entity_type="audit_key",
        entity_id="1",
        changes="{}",
        detail="{}",
        reason=None,
        prev_hash=chain[-1].stored_hash,
    )
    digest = rules.event_hash(intro)
    chain.append(rules.StoredEvent(intro, digest, rules.event_hmac(KEY, digest)))
    report = rules.check_chain(chain, KEY)
    assert report.problems == [] and report.legacy_events == 3
    # the same introduction without the key covers nothing
    chain[-1] = rules.StoredEvent(intro, digest, rules.event_hmac(b"k" * 32, digest))
    assert len(rules.check_chain(chain, KEY).problems) == 2


def test_checkpoints_anchor_the_chain() -> None:
    chain = _chain(6)
    at = datetime(2026, 11, 28, tzinfo=UTC)
    good = rules.make_checkpoint(KEY, 5, chain[4].stored_hash, at)
    assert rules.parse_checkpoint(good.line()) == good
    assert rules.check_chain(chain, KEY, [(1, good)]).problems == []
    messages = [m for _i, m in rules.check_chain(chain[:4], KEY, [(1, good)]).problems]
    assert messages == [
        "checkpoint line 1 (2026-11-28T00:00:00.000000Z) names audit event 5, "
        "but the trail ends at event 4: truncated after it was anchored"
    ]
    forged = rules.make_checkpoint(b"k" * 32, 5, chain[4].stored_hash, at)
    assert "HMAC does not match" in rules.check_chain(chain, KEY, [(2, forged)]).problems[0][1]


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
    assert state.inconsistencies == []
    assert rules.compare_row("subject", "1", {"name": "B"}, state.fields[("subject", "1")]) == ""
    assert "field name is 'C' but its audit trail says 'B'" in rules.compare_row(
        "subject", "1", {"name": "C"}, state.fields[("subject", "1")]
    )


def test_a_field_added_later_holds_its_migrations_value_in_rows_older_than_it() -> None:
    """user_account 1 predates the column (its trail never names it), 2 changed it since, 3 was created with
    it; a row that claims another old value than the migration's is still an inconsistency."""
    added_later = {"user_account": {"session_version": 0}}
    state = rules.replay(
        [
            (1, "user_account", "1", {"username": [None, "old"]}),
            (2, "user_account", "2", {"username": [None, "older"]}),
            (3, "user_account", "2", {"session_version": [0, 1]}),
            (4, "user_account", "3", {"username": [None, "new"], "session_version": [None, 0]}),
        ],
        added_later,
    )
    assert state.inconsistencies == []
    assert [state.fields[("user_account", i)]["session_version"] for i in "123"] == [0, 1, 0]
    forged = rules.replay(
        [
            (1, "user_account", "1", {"username": [None, "old"]}),
            (2, "user_account", "1", {"session_version": [7, 8]}),
        ],
        added_later,
    )
    assert forged.inconsistencies == [
        "audit event 2: says user_account 1 field session_version was 7, but the trail before it says 0"
    ]
    assert rules.replay([(1, "user_account", "1", {"username": [None, "old"]})]).fields == {
        ("user_account", "1"): {"username": "old"}
    }


def test_separation_of_duties_and_signed_content() -> None:
    with pytest.raises(SignatureRefused, match="second person"):
        require_different_person("tech", "tech", "step 3")
    require_different_person("tech", "tech2", "step 3")
    a = content_sha256("subject", "1", {"name": "A"})
    assert a != content_sha256("subject", "1", {"name": "B"})
    assert a == content_sha256("subject", "1", {"name": "A"})
