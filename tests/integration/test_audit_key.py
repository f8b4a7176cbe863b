"""Issue 8, item 2: the chain is keyed (HMAC, key outside the database) and anchored (checkpoints outside it).

Each test plays someone who can write to the database but does not hold the audit key, or who rewrites the
chain after it was anchored; and `mfg audit verify` must name every such change, not only the first.
"""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from mfg.audit import key as audit_key
from mfg.audit import rules
from mfg.audit import service as audit_service
from mfg.audit.ddl import append_only, drop_triggers, refuse_replace
from mfg.study.models import Subject
from tests.conftest import World, run_cli

COLUMNS = "id, occurred_at, actor, action, entity_type, entity_id, changes, detail, reason, prev_hash, hash"


def _forge(
    engine: Engine,
    *,
    actor: str,
    entity_type: str,
    entity_id: str,
    changes: dict[str, list[object]],
    hmac: str | None = None,
) -> int:
    """Append an event with a correct SHA-256 link to the head, as anyone with INSERT rights can."""
    with engine.begin() as conn:
        head = conn.execute(text("SELECT id, hash FROM audit_event ORDER BY id DESC LIMIT 1")).first()
        head_id, head_hash = head if head else (0, rules.GENESIS_HASH)
        record = rules.EventRecord(
            id=head_id + 1,
            occurred_at=datetime.now(UTC),
            actor=actor,
            action="update",
            entity_type=entity_type,
            entity_id=entity_id,
            changes=rules.canonical_json(changes),
            detail="{}",
            reason="typo",
            prev_hash=head_hash,
        )
        values = {**record.__dict__, "occurred_at": record.occurred_at.replace(tzinfo=None)}
        values["hash"] = rules.event_hash(record)
        if hmac is None:
            conn.execute(text(f"INSERT INTO audit_event ({COLUMNS}) VALUES (:{', :'.join(values)})"), values)
        else:
            values["hmac"] = hmac
            conn.execute(
                text(f"INSERT INTO audit_event ({COLUMNS}, hmac) VALUES (:{', :'.join(values)})"), values
            )
    return record.id


def _verify(database_url: str, tmp_path: Path, **env: str) -> tuple[int, list[str]]:
    result = run_cli(
        database_url, "audit", "verify", env={"MFG_CHECKPOINT_FILE": str(tmp_path / "cp"), **env}
    )
    return result.returncode, result.stdout.splitlines()


def test_an_event_inserted_without_the_key_is_found(
    database_url: str, engine: Engine, subject: Subject, world: World, tmp_path: Path
) -> None:
    forged = _forge(engine, actor=world.users["qa"].username, entity_type="note", entity_id="1", changes={})
    guessed = _forge(
        engine, actor="qa", entity_type="note", entity_id="2", changes={}, hmac=rules.sha256_hex("guess")
    )
    code, lines = _verify(database_url, tmp_path)
    assert code == 1
    assert f"  audit event {guessed}: its HMAC does not match (not written with the audit key)" in lines
    assert any(line.startswith(f"  audit event {forged}: unkeyed") for line in lines), lines


def test_a_record_edited_out_of_band_with_a_forged_event_is_found(
    database_url: str, engine: Engine, subject: Subject, tmp_path: Path
) -> None:
    # The row and a well-chained event that explains it, in the coordinator's name: the trail tells one story.
    with engine.begin() as conn:
        conn.execute(text("UPDATE subject SET name = 'Someone Else' WHERE id = :id"), {"id": subject.id})
    forged = _forge(
        engine,
        actor="coordinator",
        entity_type="subject",
        entity_id=str(subject.id),
        changes={"name": ["Jordan Example", "Someone Else"]},
    )
    code, lines = _verify(database_url, tmp_path)
    assert code == 1
    assert [line for line in lines if "problem" in line or line.startswith("  ")] == [
        "audit trail BROKEN: 1 problems",
        f"  audit event {forged}: unkeyed (no HMAC, and no key-introduction event follows): "
        "written without the audit key",
    ]


def test_every_tampering_is_reported_not_only_the_first(
    database_url: str, engine: Engine, subject: Subject, world: World, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        for statement in drop_triggers(engine.dialect.name, "audit_event"):
            conn.execute(text(statement))
        conn.execute(text("UPDATE audit_event SET reason = 'rewritten' WHERE id = 3"))
        conn.execute(text("UPDATE subject SET name = 'Someone Else' WHERE id = :id"), {"id": subject.id})
        conn.execute(text("UPDATE site SET name = 'Elsewhere' WHERE id = :id"), {"id": world.other_site.id})
        # Put the triggers back, as a careful intruder would: only the data is left to give it away.
        dialect = engine.dialect.name
        for statement in append_only(dialect, "audit_event") + refuse_replace(
            dialect, "audit_event", ("id", "hash")
        ):
            conn.execute(text(statement))
    code, lines = _verify(database_url, tmp_path)
    assert code == 1
    assert "audit trail BROKEN: 3 problems" in lines
    assert "  audit event 3: its content does not match its hash (altered)" in lines
    assert any(f"table subject row {subject.id}: field name is 'Someone Else'" in line for line in lines)
    assert any(f"table site row {world.other_site.id}: field name is 'Elsewhere'" in line for line in lines)


def test_verify_lists_fifty_problems_then_counts_the_rest(
    database_url: str, engine: Engine, subject: Subject, tmp_path: Path
) -> None:
    for n in range(60):
        _forge(engine, actor="x", entity_type="note", entity_id=str(n), changes={}, hmac="0" * 64)
    code, lines = _verify(database_url, tmp_path)
    assert code == 1
    assert "audit trail BROKEN: 60 problems" in lines
    assert sum(1 for line in lines if line.startswith("  audit event")) == 50
    assert lines[-1] == "  … and 10 more"


def _checkpoint(database_url: str, checkpoints: Path) -> None:
    result = run_cli(database_url, "audit", "checkpoint", env={"MFG_CHECKPOINT_FILE": str(checkpoints)})
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_chain_truncated_after_a_checkpoint_fails_verify(
    database_url: str, engine: Engine, subject: Subject, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints.jsonl"
    _checkpoint(database_url, checkpoints)
    line = json.loads(checkpoints.read_text())
    with engine.connect() as conn:
        head = conn.execute(text("SELECT max(id) FROM audit_event")).scalar_one()
    assert set(line) == {"event_id", "hash", "hmac", "at"} and line["event_id"] == head
    code, lines = _verify(database_url, tmp_path, MFG_CHECKPOINT_FILE=str(checkpoints))
    assert code == 0 and lines[-1] == f"audit trail intact: {head} events"
    assert f"held against 1 checkpoint in {checkpoints}" in lines

    # Drop the head: what remains is a well-keyed chain, and only the checkpoint remembers the lost event.
    with engine.begin() as conn:
        for statement in drop_triggers(engine.dialect.name, "audit_event"):
            conn.execute(text(statement))
        conn.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": head})
    code, lines = _verify(database_url, tmp_path, MFG_CHECKPOINT_FILE=str(checkpoints))
    assert code == 1
    assert any(
        f"names audit event {head}, but the trail ends at event {head - 1}: truncated" in line
        for line in lines
    ), lines
    refused = run_cli(database_url, "audit", "checkpoint", env={"MFG_CHECKPOINT_FILE": str(checkpoints)})
    assert refused.returncode == 1 and "no longer holds the last checkpoint" in refused.stderr


def test_a_chain_rewritten_with_the_key_after_a_checkpoint_fails_verify(
    database_url: str, engine: Engine, session: Session, subject: Subject, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints.jsonl"
    _checkpoint(database_url, checkpoints)
    with engine.connect() as conn:
        head = conn.execute(text("SELECT max(id) FROM audit_event")).scalar_one()
    # Someone holding the key (or restoring an older backup) rewrites the head: every HMAC is right.
    with engine.begin() as conn:
        for statement in drop_triggers(engine.dialect.name, "audit_event"):
            conn.execute(text(statement))
        conn.execute(text("DELETE FROM audit_event WHERE id = :id"), {"id": head})
    audit_service.record_event(
        session, actor="qa", action="note", entity_type="note", entity_id="1", detail={"n": 1}
    )
    session.commit()
    code, lines = _verify(database_url, tmp_path, MFG_CHECKPOINT_FILE=str(checkpoints))
    assert code == 1
    assert any(line.startswith(f"  audit event {head}: differs from checkpoint line 1") for line in lines), (
        lines
    )


def test_init_makes_a_private_key_once(database_url: str, tmp_path: Path) -> None:
    # No MFG_AUDIT_KEY_FILE: the key goes into the instance folder, as on a fresh machine.
    for _ in range(2):
        result = run_cli(database_url, "init", tmp_path=tmp_path, env={"MFG_AUDIT_KEY_FILE": ""})
        assert result.returncode == 0, result.stderr
        key = tmp_path / "audit.key"
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        if _ == 0:
            first = key.read_text()
            assert "audit key created at" in result.stdout
    assert key.read_text() == first and "audit key created" not in result.stdout


def test_the_key_lives_in_the_instance_folder_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from mfg import config
    from mfg.audit import key as audit_key

    monkeypatch.setenv("MFG_INSTANCE_PATH", str(tmp_path))
    monkeypatch.delenv("MFG_AUDIT_KEY_FILE")
    monkeypatch.delenv("MFG_CHECKPOINT_FILE")
    assert audit_key.key_path() == config.instance_path() / "audit.key"
    assert Path(config.from_environment({"SECRET_KEY": "x"})["AUDIT_KEY_FILE"]) == audit_key.key_path()
    assert audit_key.checkpoint_path() == tmp_path / "audit-checkpoints.jsonl"


def test_verify_without_the_key_says_so(database_url: str, subject: Subject, tmp_path: Path) -> None:
    code = run_cli(database_url, "audit", "verify", env={"MFG_AUDIT_KEY_FILE": str(tmp_path / "none")})
    assert code.returncode == 1
    assert f"error: no audit key at {tmp_path / 'none'}" in code.stderr


def test_a_trail_from_before_the_key_is_keyed_from_init_on(database_url: str, tmp_path: Path) -> None:
    from mfg.db import make_engine

    engine = make_engine(database_url, begin="deferred")
    try:
        # Events as the previous release wrote them: chained, no HMAC.
        legacy = [
            _forge(engine, actor="old-release", entity_type="note", entity_id=str(n), changes={})
            for n in range(3)
        ]
        code, lines = _verify(database_url, tmp_path)
        assert code == 1 and "  audit event 1..3: unkeyed" in " ".join(lines)

        result = run_cli(database_url, "init")
        assert result.returncode == 0, result.stderr
        assert "3 earlier events rest on its SHA-256 chain" in result.stdout
        # init also brings the package's MBR versions to QA as drafts: one keyed event each
        drafts = result.stdout.count("registered as a draft")
        assert drafts == 2
        code, lines = _verify(database_url, tmp_path)
        assert code == 0, lines
        assert lines[0] == (
            "3 events precede the audit key's introduction: "
            "they are covered by the SHA-256 chain, not by HMACs"
        )
        assert lines[-1] == f"audit trail intact: {len(legacy) + 1 + drafts} events"
        # An event without the key after the introduction is unkeyed, and a later init does not bless it.
        late = _forge(engine, actor="someone", entity_type="note", entity_id="late", changes={})
        assert run_cli(database_url, "init").returncode == 0
        code, lines = _verify(database_url, tmp_path)
        assert code == 1 and any(line.startswith(f"  audit event {late}: unkeyed") for line in lines)
    finally:
        engine.dispose()


def test_init_does_not_bless_unkeyed_events_on_a_keyed_trail(
    database_url: str, engine: Engine, subject: Subject, tmp_path: Path
) -> None:
    forged = _forge(engine, actor="someone", entity_type="note", entity_id="1", changes={})
    result = run_cli(database_url, "init")
    assert result.returncode == 0 and "earlier events" not in result.stdout
    code, lines = _verify(database_url, tmp_path)
    assert code == 1 and any(line.startswith(f"  audit event {forged}: unkeyed") for line in lines)


def test_init_never_replaces_the_key_a_trail_was_written_with(
    database_url: str, subject: Subject, tmp_path: Path
) -> None:
    """A new-user review: run from the wrong folder, verify said "run `mfg init`"; init then made a new key
    for a trail of 598 keyed events, and the server wrote on under it."""
    elsewhere = {"MFG_AUDIT_KEY_FILE": str(tmp_path / "elsewhere" / "audit.key")}
    refused = run_cli(database_url, "init", env=elsewhere)
    assert refused.returncode == 1
    assert "this database's audit trail was written with one: put that key back" in refused.stderr
    assert not (tmp_path / "elsewhere" / "audit.key").exists()


def test_the_server_refuses_another_key(database_url: str, subject: Subject, tmp_path: Path) -> None:
    other = tmp_path / "other.key"
    audit_key.create_key_file(other)
    started = run_cli(database_url, "serve", "--port", "0", env={"MFG_AUDIT_KEY_FILE": str(other)})
    assert started.returncode == 1
    assert "is not this database's: audit event" in started.stderr and "Traceback" not in started.stderr
    again = run_cli(database_url, "init", env={"MFG_AUDIT_KEY_FILE": str(other)})
    assert again.returncode == 1 and "is not this database's" in again.stderr


def test_a_taken_port_is_one_line(database_url: str, subject: Subject, tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli(database_url, "serve", "--port", str(port), tmp_path=tmp_path)
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


def test_a_malformed_checkpoint_line_is_a_problem_not_a_traceback(
    database_url: str, subject: Subject, tmp_path: Path
) -> None:
    checkpoints = tmp_path / "checkpoints.jsonl"
    _checkpoint(database_url, checkpoints)
    with checkpoints.open("ab") as f:
        f.write(b"[" * 100_000 + b"\n")  # deep enough to exhaust the JSON parser's recursion
        f.write(b'{"event_id": 1, "hash": "\xff\xfe"}\n')  # not UTF-8
    env = {"MFG_CHECKPOINT_FILE": str(checkpoints)}

    verify = run_cli(database_url, "audit", "verify", env=env)
    assert verify.returncode == 1 and "Traceback" not in verify.stderr, verify.stderr
    assert "  checkpoint line 2: not a checkpoint (nested too deeply)" in verify.stdout.splitlines()
    assert "  checkpoint line 3: not a checkpoint (not UTF-8)" in verify.stdout.splitlines()

    checkpoint = run_cli(database_url, "audit", "checkpoint", env=env)
    assert checkpoint.returncode == 0 and "Traceback" not in checkpoint.stderr, checkpoint.stderr
    assert "warning: checkpoint line 2: not a checkpoint (nested too deeply)" in checkpoint.stderr


@pytest.mark.parametrize("anchored_first", [False, True])
def test_checkpoint_refuses_a_chain_with_a_forged_event_behind_a_genuine_head(
    database_url: str,
    engine: Engine,
    session: Session,
    subject: Subject,
    tmp_path: Path,
    anchored_first: bool,
) -> None:
    checkpoints = tmp_path / "checkpoints.jsonl"
    if anchored_first:
        _checkpoint(database_url, checkpoints)
    forged = _forge(engine, actor="mallory", entity_type="note", entity_id="1", changes={}, hmac="0" * 64)
    # A legitimate event follows: the head is keyed with the audit key, and links to the forged event.
    audit_service.record_event(session, actor="test", action="comment", entity_type="note", entity_id="2")
    session.commit()
    before = checkpoints.read_bytes() if anchored_first else b""

    refused = run_cli(database_url, "audit", "checkpoint", env={"MFG_CHECKPOINT_FILE": str(checkpoints)})
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"audit event {forged}: its HMAC does not match" in refused.stderr, refused.stderr
    assert (checkpoints.read_bytes() if checkpoints.exists() else b"") == before
