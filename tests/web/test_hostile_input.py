"""What a red team found after the engine split, kept as tests: each answered with a 500 or a redirect off the
site, or flooded the audit trail, before its fix. Every refusal here is named, recorded and stores nothing.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mfg import clock
from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.process import batches, corrections, versions
from mfg.process.models import Batch, MbrVersion, StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import Bench, local, step_values
from tests.conftest import PASSWORD, World, enrollment_form, login
from tests.web.test_page_queries import record


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def _refusals(factory: sessionmaker[Session]) -> list[AuditEvent]:
    with factory() as s:
        return list(
            s.scalars(select(AuditEvent).where(AuditEvent.action == "refused").order_by(AuditEvent.id))
        )


@pytest.mark.parametrize("typed", ["9999-12-31T23:59", "0001-01-01T00:00", "1899-05-01T10:00"])
def test_a_date_the_calendar_cannot_hold_is_refused_not_a_500(
    app: Flask,
    session: Session,
    world: World,
    study: StudyDefinition,
    subject: Subject,
    bench: Bench,
    session_factory: sessionmaker[Session],
    typed: str,
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    values = step_values(session, batch, "collection.harvest", clock.now())
    batch_id = batch.id
    session.rollback()
    client = _client(app, "coordinator")
    for field in ("f.collected_at", "performed_at"):
        form = {**{f"f.{k}": v for k, v in values.items()}, field: typed, "password": PASSWORD}
        response = client.post(f"/bench/batches/{batch_id}/steps/collection.harvest", data=form)
        assert response.status_code == 422, response.get_data(as_text=True)[:300]
        assert typed in response.get_data(as_text=True)
    assert session.scalar(select(func.count()).select_from(StepRecord)) == 0
    assert len(_refusals(session_factory)) == 2


def test_a_growth_curve_that_cannot_be_drawn_is_refused_not_a_500(
    app: Flask, session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    record(session, world, study, bench, batch, 8)  # to the first passage
    passage = batches.latest_record(session, batch, "expansion.passage")
    assert passage is not None
    harvested_at = batches.current_values(session, passage)["harvested_at"]
    early = local(clock.now() - timedelta(days=30))  # before the seeding: no growth curve
    corrections.correct_value(session, world.users["technician"], harvested_at, early, "test", study)
    session.commit()
    client = _client(app, "supervisor")
    svg = client.get(f"/bench/batches/{batch.id}/growth.svg")
    assert svg.status_code == 422 and "growth curve not drawn" in svg.get_data(as_text=True)
    page = client.get(f"/bench/batches/{batch.id}")
    assert page.status_code == 200 and "Growth curve not drawn" in page.get_data(as_text=True)


@pytest.mark.parametrize(
    "target", ["https://evil.example/x", "//evil.example", "/\\evil.example", "javascript:alert(1)"]
)
def test_no_redirect_leaves_the_site(app: Flask, world: World, bench: Bench, target: str) -> None:
    client = _client(app, "technician")
    chosen = client.post("/bench/workstation", data={"code": "BSC-01", "next": target})
    assert chosen.status_code == 302 and chosen.headers["Location"] == "/bench/"
    refused = client.get("/scan?code=nothing-like-a-code", headers={"Referer": target})
    assert refused.status_code == 302 and refused.headers["Location"] == "/"
    same_site = client.get("/scan?code=nothing", headers={"Referer": "http://localhost/bench/?x=1"})
    assert same_site.headers["Location"] == "/bench/?x=1"


def test_a_flood_of_form_fields_is_counted_not_kept(
    app: Flask, world: World, session_factory: sessionmaker[Session]
) -> None:
    client = _client(app, "coordinator")
    form = enrollment_form(world, date_of_birth="not a date")
    form.update({f"junk{i}": "x" * 150 for i in range(1500)})
    response = client.post("/clinic/subjects/new", data=form)
    assert response.status_code == 422
    [refusal] = _refusals(session_factory)
    kept = refusal.detail["form"] if isinstance(refusal.detail, dict) else json.loads(refusal.detail)["form"]
    assert len(kept) <= 61 and kept["(not kept)"].endswith("more fields")
    assert len(json.dumps(kept)) < 20_000


def test_a_batch_whose_stored_mbr_this_release_cannot_read_is_refused_by_name(
    app: Flask, session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    """A database seeded by an earlier release keeps MBR texts in an older form: a clear refusal, no 500."""
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    legacy = MbrVersion(
        code="AAMSC-MBR",
        version=99,
        title="stored by an earlier release",
        definition='[mbr]\ncode = "AAMSC-MBR"\nversion = 99\n',
        definition_sha256="0" * 64,
        status="approved",
        registered_at=clock.now(),
    )
    audit_service.create(session, "test-setup", legacy)
    session.flush()
    # A batch row as an earlier release left it (no service would start one on an unreadable version).
    old = Batch(
        din=batch.din,
        division="Z0",
        subject_id=subject.id,
        mbr_version_id=legacy.id,
        status="cryobanked",
        started_at=clock.now(),
        started_by_id=world.users["supervisor"].id,
    )
    audit_service.create(session, "test-setup", old)
    session.commit()
    with pytest.raises(Exception, match="cannot be read by this release"):
        versions.mbr_of(legacy)
    page = _client(app, "supervisor").get(f"/bench/batches/{old.id}")
    assert page.status_code == 422 and "AAMSC-MBR v99 as stored cannot be read" in page.get_data(as_text=True)


def test_a_huge_refused_path_does_not_grow_the_trail_by_its_size(app, session) -> None:  # type: ignore[no-untyped-def]
    """A red-team review: GET /api/subjects/by-coi/<400 kB> stored a 400 kB refusal event."""
    from sqlalchemy import select

    from mfg.audit.models import AuditEvent
    from tests.conftest import login

    client = app.test_client()
    assert login(client, "coordinator").status_code == 302
    response = client.get("/api/subjects/by-coi/" + "A" * 400_000)
    assert response.status_code in (400, 404, 422)
    session.rollback()
    event = session.scalars(
        select(AuditEvent).where(AuditEvent.action == "refused").order_by(AuditEvent.id.desc())
    ).first()
    assert event is not None
    assert len(event.detail) + len(event.entity_id) < 5_000
    assert "(400" in event.detail  # the length is on record


def test_week_and_compact_dates_are_not_dates(app, session) -> None:  # type: ignore[no-untyped-def]
    """A red-team review: 2026-W48-5 and 20261127 were taken as dates (fromisoformat takes them), and a
    passage's harvest time typed 2026-W01-1 became 2025-12-29."""
    from mfg.process.entries import parse_local_datetime
    from mfg.process.rules import FieldInputError

    for typed in ("2026-W01-1T10:00", "20261127T10:00", "2026-11-27T10", "2026-11-27"):
        with pytest.raises(FieldInputError, match="is not a date and time"):
            parse_local_datetime(typed, "Harvested at")
    assert parse_local_datetime("2026-11-27T10:00", "Harvested at").tzinfo is not None
    from mfg.web import forms

    for typed in ("2026-W48-5", "20261127"):
        with (
            app.test_request_context("/", method="POST", data={"d": typed}),
            pytest.raises(Exception, match="is not a date"),
        ):
            forms.iso_date("d", "Calibrated on")
