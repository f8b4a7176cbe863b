"""Issue 8 item 6: "An administrator changed an equipment calibration date (CEN-OLD, 2026-11-25 → 2031-01-01)
with no signature, and the terminal then accepted CEN-OLD. Calibration is a GMP record."

A calibration is recorded by a supervisor with its certificate reference and an e-signature; it is the only
way an item's calibration due date changes. Administrators manage accounts, sites and workstations only.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, func, select, text
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from mfg import clock
from mfg.audit.models import AuditEvent
from mfg.errors import PermissionRefused, ValidationRefused
from mfg.identity.models import Signature, User
from mfg.materials import service as materials_service
from mfg.materials.models import Equipment, EquipmentCalibration
from mfg.process import batches
from mfg.process.models import Batch
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import Bench, step_values
from tests.conftest import PASSWORD, World, login, run_cli
from tests.web.test_page_queries import record

DIGESTED = 4  # harvest, hand-off, receipt, digestion: the next step spins in a centrifuge


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def _batch_at_the_centrifuge(
    session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> Batch:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    record(session, world, study, bench, batch, DIGESTED)
    return batch


def _spin_in(app: Flask, session: Session, batch: Batch, centrifuge: str) -> Any:
    """The technician records the separation step at the bench, scanning ``centrifuge``."""
    tech = _client(app, "technician")
    tech.post("/bench/workstation", data={"code": "BSC-01"})
    values = {**step_values(session, batch, "processing.separate", clock.now()), "centrifuge": centrifuge}
    batch_id = batch.id
    session.rollback()
    form = {**{f"f.{k}": v for k, v in values.items()}, "password": PASSWORD}
    return tech.post(f"/bench/batches/{batch_id}/steps/processing.separate", data=form)


def test_an_administrator_cannot_move_a_calibration_date_and_cen_old_stays_refused(
    app: Flask, session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    """The finding, replayed: the administrator's change of CEN-OLD's date is refused, and the bench still
    refuses CEN-OLD."""
    cen_old = bench.equipment["CEN-OLD"].id
    batch = _batch_at_the_centrifuge(session, world, study, subject, bench)
    session.rollback()
    admin = _client(app, "admin")
    # the old register form: gone from the administration pages
    old_form = admin.post(
        f"/admin/equipment/{cen_old}", data={"calibration_due": "2031-01-01", "reason": "recalibrated"}
    )
    assert old_form.status_code == 404
    # the calibration record itself: refused to the administrator's role, signed or not
    calibration = admin.post(
        f"/materials/equipment/{cen_old}/calibrations",
        data={
            "calibrated_on": clock.today().isoformat(),
            "next_due": "2031-01-01",
            "certificate_ref": "CAL-2026-0001",
            "result": "pass",
            "password": PASSWORD,
        },
    )
    assert calibration.status_code == 403
    assert "the admin role may not use this page" in calibration.text
    refused = _spin_in(app, session, batch, "CEN-OLD")
    assert refused.status_code == 422
    assert "CEN-OLD is past its calibration date" in refused.text


def _calibration_form(**changes: str) -> dict[str, str]:
    form = {
        "calibrated_on": clock.today().isoformat(),
        "next_due": (clock.today() + timedelta(days=365)).isoformat(),
        "certificate_ref": "CAL-2026-0117 (Acme Metrology)",
        "result": "pass",
        "password": PASSWORD,
    }
    form.update(changes)
    return form


def _calibrations(session_factory: sessionmaker[Session], equipment_id: int) -> list[EquipmentCalibration]:
    with session_factory() as s:
        found = list(
            s.scalars(
                select(EquipmentCalibration)
                .where(EquipmentCalibration.equipment_id == equipment_id)
                .order_by(EquipmentCalibration.id)
            )
        )
        s.expunge_all()
        return found


def _ids(records: list[EquipmentCalibration]) -> list[int]:
    return [r.id for r in records]


def _equipment(session_factory: sessionmaker[Session], equipment_id: int) -> Equipment:
    with session_factory() as s:
        item = s.get(Equipment, equipment_id)
        assert item is not None
        s.expunge(item)
        return item


def test_a_supervisor_records_a_signed_calibration_and_the_bench_accepts_the_item(
    app: Flask,
    session: Session,
    world: World,
    study: StudyDefinition,
    subject: Subject,
    bench: Bench,
    session_factory: sessionmaker[Session],
) -> None:
    cen_old = bench.equipment["CEN-OLD"].id
    batch = _batch_at_the_centrifuge(session, world, study, subject, bench)
    session.rollback()
    supervisor = _client(app, "supervisor")
    next_due = clock.today() + timedelta(days=365)
    response = supervisor.post(f"/materials/equipment/{cen_old}/calibrations", data=_calibration_form())
    assert response.status_code == 302, response.text[:2000]
    page = supervisor.get(response.headers["Location"]).text
    assert "CAL-2026-0117 (Acme Metrology)" in page
    assert f"due again on {next_due.isoformat()}" in page
    assert world.users["supervisor"].full_name in page and "approved" in page and "valid" in page
    assert _equipment(session_factory, cen_old).calibration_due == next_due
    [calibration] = _calibrations(session_factory, cen_old)[-1:]
    assert (calibration.result, calibration.certificate_ref) == ("pass", "CAL-2026-0117 (Acme Metrology)")
    with session_factory() as s:
        signature = s.scalar(
            select(Signature).where(
                Signature.entity_type == "equipment_calibration", Signature.entity_id == str(calibration.id)
            )
        )
        assert signature is not None and signature.meaning == "approved"
        assert signature.signer_id == world.users["supervisor"].id
    accepted = _spin_in(app, session, batch, "CEN-OLD")
    assert accepted.status_code == 302, accepted.text[:2000]


def test_a_wrong_password_stores_nothing_and_counts_a_failure(
    app: Flask, world: World, bench: Bench, session_factory: sessionmaker[Session]
) -> None:
    cen_old = bench.equipment["CEN-OLD"].id
    before = _calibrations(session_factory, cen_old)
    due_before = _equipment(session_factory, cen_old).calibration_due
    supervisor = _client(app, "supervisor")
    response = supervisor.post(
        f"/materials/equipment/{cen_old}/calibrations", data=_calibration_form(password="not-my-password-1")
    )
    assert response.status_code == 422
    assert "password for supervisor is wrong: not signed" in response.text
    assert 'value="CAL-2026-0117 (Acme Metrology)"' in response.text  # what was typed stays on screen
    assert _ids(_calibrations(session_factory, cen_old)) == _ids(before)
    assert _equipment(session_factory, cen_old).calibration_due == due_before
    with session_factory() as s:
        user = s.scalar(select(User).where(User.username == "supervisor"))
        assert user is not None and user.failed_logins == 1
        failure = s.scalar(
            select(AuditEvent).where(AuditEvent.action == "login_failed", AuditEvent.actor == "supervisor")
        )
        assert failure is not None and json.loads(failure.detail)["where"] == "approved signature"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"certificate_ref": ""}, "Certificate reference is required"),
        ({"certificate_ref": "   "}, "Certificate reference is required"),
        ({"certificate_ref": "C" * 81}, "Certificate reference is longer than 80 characters"),
        (
            {"certificate_ref": "CAL\u202e-0117"},
            "Certificate reference contains a character that does not print",
        ),
        ({"calibrated_on": ""}, "Calibration date is required"),
        ({"calibrated_on": "2026-02-30"}, "is not a date"),
        ({"calibrated_on": "2999-01-01", "next_due": "3000-01-01"}, "is in the future"),
        ({"next_due": ""}, "the next due date is required for a passing calibration"),
        ({"next_due": "2000-01-01"}, "must come after the calibration date"),
        ({"result": "maybe"}, "calibration result must be pass or fail"),
        ({"result": "fail"}, "a failed calibration has no next due date"),
        ({"password": ""}, "enter your password to sign"),
    ],
    ids=[
        "no-certificate",
        "blank-certificate",
        "long-certificate",
        "unprintable-certificate",
        "no-date",
        "bad-date",
        "future",
        "no-next-due",
        "due-before",
        "result",
        "fail-with-due",
        "no-password",
    ],
)
def test_an_incomplete_calibration_is_refused_with_a_message(
    app: Flask,
    world: World,
    bench: Bench,
    session_factory: sessionmaker[Session],
    changes: dict[str, str],
    message: str,
) -> None:
    cen_old = bench.equipment["CEN-OLD"].id
    before = _calibrations(session_factory, cen_old)
    response = _client(app, "supervisor").post(
        f"/materials/equipment/{cen_old}/calibrations", data=_calibration_form(**changes)
    )
    assert response.status_code == 422
    assert message in response.text
    assert _ids(_calibrations(session_factory, cen_old)) == _ids(before)
    assert _equipment(session_factory, cen_old).calibration_due == clock.today() - timedelta(days=3)


def test_a_failed_calibration_takes_the_item_out_of_service(
    app: Flask,
    session: Session,
    world: World,
    study: StudyDefinition,
    subject: Subject,
    bench: Bench,
    session_factory: sessionmaker[Session],
) -> None:
    centrifuge = bench.equipment["CEN-01"].id
    due_before = bench.equipment["CEN-01"].calibration_due
    batch = _batch_at_the_centrifuge(session, world, study, subject, bench)
    session.rollback()
    supervisor = _client(app, "supervisor")
    failed = supervisor.post(
        f"/materials/equipment/{centrifuge}/calibrations",
        data=_calibration_form(result="fail", next_due="", certificate_ref="CAL-2026-0200"),
    )
    assert failed.status_code == 302, failed.text[:2000]
    item = _equipment(session_factory, centrifuge)
    assert item.status == "out_of_service"
    assert item.calibration_due == due_before  # the due date follows the latest *passing* calibration
    refused = _spin_in(app, session, batch, "CEN-01")
    assert refused.status_code == 422 and "CEN-01 is OUT OF SERVICE" in refused.text
    back = supervisor.post(
        f"/materials/equipment/{centrifuge}/status",
        data={"status": "in_service", "reason": "fixed", "password": PASSWORD},
    )
    assert back.status_code == 422
    assert (
        "CEN-01 cannot go back in service: CEN-01 failed its latest calibration (CAL-2026-0200" in back.text
    )
    assert _equipment(session_factory, centrifuge).status == "out_of_service"
    # adjusted and calibrated again: then, and only then, back in service
    passed = supervisor.post(
        f"/materials/equipment/{centrifuge}/calibrations",
        data=_calibration_form(certificate_ref="CAL-2026-0201"),
    )
    assert passed.status_code == 302
    assert (
        _equipment(session_factory, centrifuge).status == "out_of_service"
    )  # a pass is no return to service
    back = supervisor.post(
        f"/materials/equipment/{centrifuge}/status",
        data={"status": "in_service", "reason": "recalibrated", "password": PASSWORD},
    )
    assert back.status_code == 302, back.text[:2000]
    assert _spin_in(app, session, batch, "CEN-01").status_code == 302


def test_an_item_past_its_calibration_cannot_go_back_in_service(
    app: Flask, world: World, bench: Bench, session_factory: sessionmaker[Session]
) -> None:
    cen_old = bench.equipment["CEN-OLD"].id
    supervisor = _client(app, "supervisor")
    out = supervisor.post(
        f"/materials/equipment/{cen_old}/status",
        data={"status": "out_of_service", "reason": "due", "password": PASSWORD},
    )
    assert out.status_code == 302
    back = supervisor.post(
        f"/materials/equipment/{cen_old}/status",
        data={"status": "in_service", "reason": "ok", "password": PASSWORD},
    )
    assert back.status_code == 422
    overdue = (clock.today() - timedelta(days=3)).isoformat()
    assert f"CEN-OLD is past its calibration date ({overdue}): record a new calibration first" in back.text
    assert _equipment(session_factory, cen_old).status == "out_of_service"
    with session_factory() as s:
        refusal = s.scalars(
            select(AuditEvent).where(AuditEvent.action == "refused").order_by(AuditEvent.id.desc())
        ).first()
        assert refusal is not None and refusal.entity_type == "equipment" and refusal.actor == "supervisor"


def test_new_equipment_is_refused_at_the_bench_until_it_is_calibrated(
    app: Flask, session: Session, world: World, bench: Bench
) -> None:
    supervisor = _client(app, "supervisor")
    registered = supervisor.post(
        "/materials/equipment", data={"asset_tag": "cen-02", "equipment_type": "Centrifuge"}
    )
    assert registered.status_code == 302
    session.rollback()
    with pytest.raises(materials_service.MaterialRefused, match="CEN-02 has no calibration on record"):
        materials_service.usable_equipment(session, "CEN-02", on=clock.today())
    session.rollback()
    item = session.scalar(select(Equipment).where(Equipment.asset_tag == "CEN-02"))
    assert item is not None and item.calibration_due is None
    item_id = item.id
    session.rollback()
    assert "never calibrated" in supervisor.get(f"/materials/equipment/{item_id}").text
    assert (
        supervisor.post(f"/materials/equipment/{item_id}/calibrations", data=_calibration_form()).status_code
        == 302
    )
    session.rollback()
    assert materials_service.usable_equipment(session, "CEN-02", on=clock.today()).asset_tag == "CEN-02"


def test_the_calibration_is_in_the_audit_trail_and_verify_passes(
    app: Flask, database_url: str, world: World, bench: Bench, session_factory: sessionmaker[Session]
) -> None:
    cen_old = bench.equipment["CEN-OLD"].id
    old_due = (clock.today() - timedelta(days=3)).isoformat()
    new_due = (clock.today() + timedelta(days=365)).isoformat()
    assert (
        _client(app, "supervisor")
        .post(f"/materials/equipment/{cen_old}/calibrations", data=_calibration_form())
        .status_code
        == 302
    )
    calibration = _calibrations(session_factory, cen_old)[-1]
    with session_factory() as s:
        created = s.scalar(
            select(AuditEvent).where(
                AuditEvent.entity_type == "equipment_calibration", AuditEvent.entity_id == str(calibration.id)
            )
        )
        assert created is not None and created.action == "create" and created.actor == "supervisor"
        assert json.loads(created.changes)["certificate_ref"] == [None, "CAL-2026-0117 (Acme Metrology)"]
        moved = s.scalars(
            select(AuditEvent)
            .where(AuditEvent.entity_type == "equipment", AuditEvent.entity_id == str(cen_old))
            .order_by(AuditEvent.id.desc())
        ).first()
        assert moved is not None and moved.action == "calibrated"
        assert json.loads(moved.changes) == {"calibration_due": [old_due, new_due]}
        assert json.loads(moved.detail)["calibration_id"] == calibration.id
        assert moved.reason == "calibration CAL-2026-0117 (Acme Metrology) passed"
    page = _client(app, "qa").get("/admin/audit").text
    assert "equipment_calibration" in page
    result = run_cli(database_url, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit trail intact" in result.stdout


def test_the_database_refuses_to_change_or_delete_a_calibration_record(
    engine: Engine, world: World, bench: Bench
) -> None:
    for statement in (
        "UPDATE equipment_calibration SET next_due = '2031-01-01'",
        "DELETE FROM equipment_calibration",
    ):
        with (
            pytest.raises(DatabaseError, match="calibration records are append-only"),
            engine.begin() as conn,
        ):
            conn.execute(text(statement))
    if engine.dialect.name == "postgresql":
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(text("TRUNCATE equipment_calibration"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM equipment_calibration")).scalar_one() == 7


def test_only_a_supervisor_signs_a_calibration_and_never_out_of_order(
    session: Session, world: World, bench: Bench
) -> None:
    cen_old = session.get(Equipment, bench.equipment["CEN-OLD"].id)
    assert cen_old is not None
    entry = materials_service.CalibrationEntry(
        clock.today(), clock.today() + timedelta(days=90), "CAL-9", "pass"
    )
    for role in ("admin", "technician", "qa"):
        with pytest.raises(PermissionRefused, match="a Lab supervisor does"):
            materials_service.record_calibration(session, world.users[role], PASSWORD, cen_old, entry)
        session.rollback()
    older = materials_service.CalibrationEntry(
        clock.today() - timedelta(days=400), clock.today() - timedelta(days=10), "CAL-OLDER", "pass"
    )
    with pytest.raises(ValidationRefused, match="an older one cannot follow it"):
        materials_service.record_calibration(session, world.users["supervisor"], PASSWORD, cen_old, older)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(EquipmentCalibration)) == 7


def test_administrators_keep_accounts_sites_and_workstations_only(app: Flask, world: World) -> None:
    admin = _client(app, "admin")
    home = admin.get("/").text
    assert ">Workstations<" in home and ">Materials<" not in home
    assert admin.get("/materials/").status_code == 403
    assert (
        admin.post("/materials/equipment", data={"asset_tag": "X-1", "equipment_type": "x"}).status_code
        == 403
    )
    assert admin.post("/admin/lots", data={"scan_code": "LOT-A"}).status_code == 404
    supervisor = _client(app, "supervisor").get("/").text
    assert ">Materials<" in supervisor and ">Workstations<" not in supervisor
