"""The bench terminal through HTTP: a whole batch, and every refusal leaving the record as it was."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.custody.models import Container
from mfg.identity import service as identity_service
from mfg.process import batches
from mfg.process.models import Batch, Deviation, FieldValue, StepRecord
from mfg.study.models import Subject
from tests.bench_data import PERFORMER, STEP_SEQUENCE, Bench, step_values
from tests.conftest import PASSWORD, World, enroll, login

Terminal = Callable[[str], FlaskClient]


@pytest.fixture
def terminal(app: Flask) -> Terminal:
    """One signed-in client per role, as if each person used their own terminal session."""
    clients: dict[str, FlaskClient] = {}

    def get(role: str) -> FlaskClient:
        if role not in clients:
            client = app.test_client()
            username = role.replace("_", "")
            assert login(client, username).status_code == 302
            if role in ("technician", "supervisor"):
                client.post("/bench/workstation", data={"code": "BSC-01"})
            clients[role] = client
        return clients[role]

    return get


def _form(values: dict[str, str], password: str = PASSWORD) -> dict[str, str]:
    return {**{f"f.{k}": v for k, v in values.items()}, "password": password}


def _start(terminal: Terminal, session: Session, subject: Subject) -> Batch:
    subject_id = subject.id
    session.rollback()
    response = terminal("coordinator").post(f"/clinic/subjects/{subject_id}/batches")
    assert response.status_code == 302, response.get_data(as_text=True)
    batch = session.scalar(select(Batch).where(Batch.subject_id == subject_id))
    assert batch is not None
    session.rollback()
    return batch


def _record(
    terminal: Terminal, session: Session, batch: Batch, step_key: str, iteration: int = 1, **changes: str
) -> tuple[int, str]:
    role = PERFORMER.get(step_key, "technician")
    client = terminal(role)
    # Every read starts a fresh transaction after the app's last commit (SQLite WAL reads a snapshot).
    session.rollback()
    batch_id = batch.id
    step = batches.batch_mbr(session, batch).step(step_key)
    session.rollback()
    if step.at_workstation:
        client.post(f"/bench/batches/{batch_id}/open")
    values = {**step_values(session, batch, step_key, clock.now(), iteration), **changes}
    session.rollback()
    response = client.post(f"/bench/batches/{batch_id}/steps/{step_key}", data=_form(values))
    if response.status_code == 302 and step.critical:
        record = session.scalar(
            select(StepRecord)
            .where(StepRecord.batch_id == batch_id, StepRecord.step_key == step_key)
            .order_by(StepRecord.id.desc())
            .limit(1)
        )
        assert record is not None
        verifier = "supervisor" if role != "supervisor" else "technician"
        record_id = record.id
        session.rollback()
        verified = client.post(
            f"/bench/records/{record_id}/verify",
            data={"username": verifier.replace("_", ""), "password": PASSWORD},
        )
        assert verified.status_code == 302, verified.get_data(as_text=True)
    return response.status_code, response.get_data(as_text=True)


def _counts(session: Session) -> tuple[int, int, int]:
    session.rollback()
    result = (
        session.scalar(select(func.count()).select_from(StepRecord)) or 0,
        session.scalar(select(func.count()).select_from(FieldValue)) or 0,
        session.scalar(select(func.count()).select_from(Container)) or 0,
    )
    session.rollback()
    return result


def test_a_full_batch_through_the_bench_terminal(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench
) -> None:
    batch = _start(terminal, session, subject)
    for step_key, iteration in STEP_SEQUENCE:
        status, body = _record(terminal, session, batch, step_key, iteration)
        assert status == 302, f"{step_key}: {body[:2000]}"
    session.expire_all()
    batch = session.get(Batch, batch.id)  # type: ignore[assignment]
    assert batch.status == "cryobanked"
    records = session.scalars(select(StepRecord).where(StepRecord.batch_id == batch.id)).all()
    assert [(r.step_key, r.iteration) for r in records] == STEP_SEQUENCE
    for record in records:
        views = identity_service.signatures_for(session, record)
        assert views and all(v.valid for v in views)
    assert (
        session.scalar(select(func.count()).select_from(Container).where(Container.kind == "cryovial")) == 10
    )
    page = terminal("qa").get(f"/bench/batches/{batch.id}").get_data(as_text=True)
    assert "cryobanked" in page
    assert "<svg" in page and "P2" in page  # the growth curve, server-rendered
    assert "SHORTFALL" in page  # 5e8 banked < 4 × 1e8 / 0.7 needed
    assert "LN2 tank 2 / rack B / box 4" in page
    assert audit_service.verify(session).ok


def test_the_current_step_is_shown_with_units_ranges_and_instructions(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench
) -> None:
    batch = _start(terminal, session, subject)
    page = terminal("coordinator").get(f"/bench/batches/{batch.id}").get_data(as_text=True)
    assert "Harvest abdominal adipose tissue" in page
    assert "Collect 1-2 g of abdominal fat" in page
    assert "spec 1–2 g" in page
    assert 'name="f.collected_at"' in page and "autofocus" in page


def test_refusals_keep_the_values_on_screen_and_the_record_unchanged(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench
) -> None:
    batch = _start(terminal, session, subject)
    for step_key in ("collection.harvest", "collection.handoff", "receipt.accept"):
        assert _record(terminal, session, batch, step_key)[0] == 302
    before = _counts(session)
    cases = [
        ({"collagenase_lot": "LOT-COLL-OLD"}, "EXPIRED"),
        ({"collagenase_lot": "LOT-COLL-Q"}, "QUARANTINED"),
        ({"incubator": "CEN-OLD"}, "past its calibration date"),
        ({"digestion_minutes": ""}, "still missing: Digestion time"),
        ({"digestion_minutes": "9O"}, "is not a number"),
    ]
    for changes, message in cases:
        status, body = _record(terminal, session, batch, "processing.digest", **changes)
        assert status == 422, message
        assert message in body
        assert 'value="0.075"' in body  # what was typed stays on the screen
    assert _counts(session) == before
    refused = session.scalar(
        select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "refused")
    )
    assert (refused or 0) >= len(cases)
    status, body = _record(terminal, session, batch, "processing.separate")
    assert status == 422 and "comes after" in body
    wrong_password = terminal("technician").post(
        f"/bench/batches/{batch.id}/steps/processing.digest",
        data=_form(step_values(session, batch, "processing.digest", clock.now()), password="not-mine-123"),
    )
    assert wrong_password.status_code == 422 and "password for technician is wrong" in wrong_password.text
    assert _counts(session) == before
    assert audit_service.verify(session).ok


def test_another_subjects_container_and_line_clearance(
    terminal: Terminal,
    session: Session,
    world: World,
    study,
    subject: Subject,
    bench: Bench,  # type: ignore[no-untyped-def]
) -> None:
    other = enroll(session, world, study, "ALS-002", "Robin Other")
    mine = _start(terminal, session, subject)
    theirs = _start(terminal, session, other)
    for batch in (mine, theirs):
        for step_key in ("collection.harvest", "collection.handoff"):
            assert _record(terminal, session, batch, step_key)[0] == 302
    their_tube = step_values(session, theirs, "receipt.accept", clock.now())["tissue_tube"]
    before = _counts(session)
    status, body = _record(terminal, session, mine, "receipt.accept", tissue_tube=their_tube)
    assert status == 422 and "belongs to another subject" in body
    assert _counts(session) == before
    attempt = session.scalar(
        select(AuditEvent).where(AuditEvent.action == "refused").order_by(AuditEvent.id.desc()).limit(1)
    )
    assert attempt is not None and "ChainOfIdentityRefused" in attempt.detail
    session.rollback()
    # The cabinet holds ALS-001's batch: ALS-002's cannot be opened there until line clearance is signed.
    tech = terminal("technician")
    refused = tech.post(f"/bench/batches/{theirs.id}/open")
    assert refused.status_code == 422 and "sign line clearance" in refused.text
    assert tech.post("/bench/workstation/clear", data={"password": PASSWORD}).status_code == 302
    assert tech.post(f"/bench/batches/{theirs.id}/open").status_code == 302
    assert audit_service.verify(session).ok


def test_self_verification_is_refused_at_the_terminal(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench
) -> None:
    batch = _start(terminal, session, subject)
    for step_key in ("collection.harvest", "collection.handoff"):
        assert _record(terminal, session, batch, step_key)[0] == 302
    tech = terminal("technician")
    session.rollback()
    batch_id = batch.id
    tech.post(f"/bench/batches/{batch_id}/open")
    values = step_values(session, batch, "receipt.accept", clock.now())
    session.rollback()
    assert tech.post(f"/bench/batches/{batch_id}/steps/receipt.accept", data=_form(values)).status_code == 302
    record = session.scalar(select(StepRecord).where(StepRecord.step_key == "receipt.accept"))
    assert record is not None
    record_id = record.id
    session.rollback()
    response = tech.post(
        f"/bench/records/{record_id}/verify", data={"username": "technician", "password": PASSWORD}
    )
    assert response.status_code == 422 and "second person must sign" in response.text
    assert session.get(StepRecord, record_id).status == "awaiting_verification"  # type: ignore[union-attr]


def test_critical_deviation_stops_the_batch_until_a_supervisor_assesses_it(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench
) -> None:
    batch = _start(terminal, session, subject)
    for step_key in ("collection.harvest", "collection.handoff", "receipt.accept"):
        assert _record(terminal, session, batch, step_key)[0] == 302
    status, _ = _record(terminal, session, batch, "processing.digest", digestion_temperature="41")
    assert status == 302  # recorded, never lost
    deviation = session.scalar(select(Deviation))
    assert deviation is not None and deviation.value == "41" and deviation.critical
    session.rollback()
    page = terminal("technician").get(f"/bench/batches/{batch.id}").text
    assert "STOPPED" in page and "OUT OF SPEC" in page
    status, body = _record(terminal, session, batch, "processing.separate")
    assert status == 422 and "STOPPED" in body
    assert (
        terminal("technician")
        .post(f"/bench/deviations/{deviation.id}/assess", data={"assessment": "ok", "password": PASSWORD})
        .status_code
        == 403
    )
    assessed = terminal("supervisor").post(
        f"/bench/deviations/{deviation.id}/assess",
        data={"assessment": "Probe offset; no impact.", "password": PASSWORD},
    )
    assert assessed.status_code == 302
    assert _record(terminal, session, batch, "processing.separate")[0] == 302
    closed = terminal("qa").post(
        f"/bench/deviations/{deviation.id}/close",
        data={"investigation": "Probe checked", "root_cause": "Probe offset", "password": PASSWORD},
    )
    assert closed.status_code == 302
    assert audit_service.verify(session).ok


def test_a_correction_without_a_reason_is_refused_and_with_one_keeps_the_old_value(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench
) -> None:
    batch = _start(terminal, session, subject)
    assert _record(terminal, session, batch, "collection.harvest")[0] == 302
    value = session.scalar(select(FieldValue).where(FieldValue.field_key == "tissue_weight"))
    assert value is not None
    session.rollback()
    coordinator = terminal("coordinator")
    refused = coordinator.post(f"/bench/values/{value.id}/correct", data={"new_value": "1.8", "reason": ""})
    assert refused.status_code == 422 and "needs a reason" in refused.text
    assert (
        coordinator.post(
            f"/bench/values/{value.id}/correct", data={"new_value": "1.8", "reason": "scale misread"}
        ).status_code
        == 302
    )
    page = coordinator.get(f"/bench/batches/{batch.id}").text
    assert "<s>1.5 g</s>" in page and "scale misread" in page and "INVALID" in page
    assert audit_service.verify(session).ok


def test_a_scanned_container_opens_its_batch(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench
) -> None:
    batch = _start(terminal, session, subject)
    assert _record(terminal, session, batch, "collection.harvest")[0] == 302
    tube = session.scalar(select(Container).where(Container.kind == "tissue_tube"))
    assert tube is not None
    session.rollback()
    response = terminal("technician").get(f"/scan?code={tube.scan_id}")
    assert response.status_code == 302 and f"/bench/batches/{batch.id}" in response.headers["Location"]
    mistyped = tube.scan_id[:-1] + ("A" if tube.scan_id[-1] != "A" else "B")
    refused = terminal("technician").get(f"/scan?code={mistyped}", follow_redirects=True)
    assert "wrong check character" in refused.text


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    garbage=st.text(min_size=1, max_size=30).filter(
        lambda s: s.strip() != "" and not _is_number(s) and "\x00" not in s
    )
)
def test_malformed_numbers_are_refused_never_stored(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench, garbage: str
) -> None:
    batch = session.scalar(select(Batch))
    if batch is None:
        batch = _start(terminal, session, subject)
    before = _counts(session)
    values = {
        **step_values(session, batch, "collection.harvest", clock.now()),
        "tissue_weight": garbage,
    }
    session.rollback()
    response = terminal("coordinator").post(
        f"/bench/batches/{batch.id}/steps/collection.harvest", data=_form(values)
    )
    assert response.status_code == 422
    assert "Tissue weight" in response.text
    assert _counts(session) == before


def _is_number(text: str) -> bool:
    try:
        float(text.strip().replace(" ", ""))
    except ValueError:
        return False
    return True


def test_container_labels_decode_and_every_print_is_recorded(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    from mfg.custody.models import LabelPrint
    from tests.conftest import require_tool

    pdftoppm = require_tool("pdftoppm", "rasterises label PDFs")
    zbarimg = require_tool("zbarimg", "decodes printed barcodes")
    batch = _start(terminal, session, subject)
    for step_key in (
        "collection.harvest",
        "collection.handoff",
        "receipt.accept",
        "processing.digest",
        "processing.separate",
        "processing.svf_count",
        "processing.plate_p0",
    ):
        assert _record(terminal, session, batch, step_key)[0] == 302
    session.rollback()
    open_ids = sorted(
        c.scan_id for c in session.scalars(select(Container).where(Container.status == "in_use"))
    )
    assert len(open_ids) == 2  # the two P0 flasks
    session.rollback()
    tech = terminal("technician")
    response = tech.post(f"/bench/batches/{batch.id}/labels")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    (tmp_path / "labels.pdf").write_bytes(response.data)
    subprocess.run(
        [pdftoppm, "-r", "300", "-png", str(tmp_path / "labels.pdf"), str(tmp_path / "page")], check=True
    )
    decoded = []
    for page in sorted(tmp_path.glob("page*.png")):
        out = subprocess.run(
            [zbarimg, "-q", "--raw", "-Sdisable", "-Scode128.enable", str(page)],
            capture_output=True,
            text=True,
            check=True,
        )
        decoded += out.stdout.split()
    assert sorted(decoded) == open_ids
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "labels.pdf"), "-"], capture_output=True, text=True
    ).stdout
    assert "Jordan Example" in text and "1961-04-12" in text and "P0 culture" in text
    # A second print is a reprint: refused without a reason, recorded with one.
    refused = tech.post(f"/bench/batches/{batch.id}/labels")
    assert refused.status_code == 422 and "reprint needs a reason" in refused.text
    assert tech.post(f"/bench/batches/{batch.id}/labels", data={"reason": "label smudged"}).status_code == 200
    session.rollback()
    prints = session.scalars(select(LabelPrint).order_by(LabelPrint.id)).all()
    assert [(p.reprint, p.reason) for p in prints] == [(False, "first print")] * 2 + [
        (True, "label smudged")
    ] * 2
    assert audit_service.verify(session).ok


def test_a_verification_covers_the_values_the_verifier_saw(
    terminal: Terminal, session: Session, subject: Subject, bench: Bench
) -> None:
    """A red-team review: the verifier opened the page showing one value, the performer corrected it, and the
    verifier's signature then covered the corrected value, which they never saw."""
    batch = _start(terminal, session, subject)
    for step_key in ("collection.harvest", "collection.handoff"):
        assert _record(terminal, session, batch, step_key)[0] == 302
    tech, supervisor = terminal("technician"), terminal("supervisor")
    batch_id = batch.id
    tech.post(f"/bench/batches/{batch_id}/open")
    values = step_values(session, batch, "receipt.accept", clock.now())
    session.rollback()
    assert tech.post(f"/bench/batches/{batch_id}/steps/receipt.accept", data=_form(values)).status_code == 302
    page = supervisor.get(f"/bench/batches/{batch_id}").text
    seen = re.search(r'name="seen" value="([0-9a-f]{64})"', page)
    assert seen is not None
    record = session.scalar(select(StepRecord).where(StepRecord.step_key == "receipt.accept"))
    assert record is not None
    record_id = record.id
    row = batches.current_values(session, record)["arrival_temperature"]
    row_id = row.id
    session.rollback()
    corrected = tech.post(f"/bench/values/{row_id}/correct", data={"new_value": "16", "reason": "misread"})
    assert corrected.status_code == 302, corrected.text
    stale = supervisor.post(
        f"/bench/records/{record_id}/verify",
        data={"username": "supervisor", "password": PASSWORD, "seen": seen.group(1)},
    )
    assert stale.status_code == 422 and "changed after your page showed it" in stale.text
    session.rollback()
    assert session.get(StepRecord, record_id).status == "awaiting_verification"  # type: ignore[union-attr]
    fresh = re.search(
        r'name="seen" value="([0-9a-f]{64})"', supervisor.get(f"/bench/batches/{batch_id}").text
    )
    assert fresh is not None and fresh.group(1) != seen.group(1)
    verified = supervisor.post(
        f"/bench/records/{record_id}/verify",
        data={"username": "supervisor", "password": PASSWORD, "seen": fresh.group(1)},
    )
    assert verified.status_code == 302, verified.text
