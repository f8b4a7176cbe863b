"""Issue 8 item 7: a label reprint reason over 200 characters was a 500 on PostgreSQL (and stored whole on
SQLite); reagent lots were registered with a byte-order mark and a right-to-left override in their scan codes.
Every text a service stores is checked against its column, and scan codes carry only printable ASCII, each
with a refusal that names the field (``mfg.text``).
"""

from __future__ import annotations

import re
from datetime import date

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.custody.models import LabelPrint
from mfg.errors import ValidationRefused
from mfg.materials import service as materials_service
from mfg.materials.models import Equipment, ReagentLot
from mfg.process import batches, versions, workstations
from mfg.process.mbr import packaged_mbr_text
from mfg.process.models import Workstation
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from mfg.text import checked_text, scan_code
from tests.bench_data import Bench
from tests.conftest import World, login
from tests.web.test_page_queries import record


def _client(app: Flask, username: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, username).status_code == 302
    return client


def test_checked_text_names_the_field() -> None:
    assert checked_text("  Ficoll  ", "Name", 10) == "Ficoll"
    assert checked_text("", "Name", 10, required=False) == ""
    assert checked_text("line one\nline two", "Reason", 40, multiline=True) == "line one\nline two"
    for value, message in [
        ("", "Name is required"),
        ("x" * 11, "Name is longer than 10 characters (11 typed)"),
        ("a\u202eb", "Name contains a character that does not print (U+202E RIGHT-TO-LEFT OVERRIDE)"),
        ("\ufeffab", "U+FEFF"),
        ("a\nb", "U+000A"),
    ]:
        with pytest.raises(ValidationRefused, match=re.escape(message)):
            checked_text(value, "Name", 10)


def test_scan_codes_are_printable_ascii() -> None:
    assert scan_code(" LOT 7-A ", "Label code", 40) == "LOT 7-A"
    assert scan_code("NaN", "Label code", 40) == "NaN"
    with pytest.raises(ValidationRefused, match="'LOT-é' has a character a barcode does not carry"):
        scan_code("LOT-é", "Label code", 40)


def test_the_services_check_their_columns_not_only_the_views(session: Session, world: World) -> None:
    """A caller other than the web form (the CLI, a script, the demo) meets the same rules."""
    good = {"scan_code": "LOT-X", "name": "Ficoll", "catalogue_number": "C-1", "lot_number": "L-1"}
    for field, label, length in [
        ("scan_code", "Label code", 41),
        ("name", "Name", 201),
        ("catalogue_number", "Catalogue number", 61),
        ("lot_number", "Lot number", 61),
    ]:
        with pytest.raises(ValidationRefused, match=f"^{label} is longer than"):
            materials_service.register_lot(
                session, "t", **{**good, field: "x" * length}, expiry_date=date(2030, 1, 1)
            )
    with pytest.raises(ValidationRefused, match="^Workstation name is longer than 120"):
        workstations.register_workstation(session, "t", "BSC-9", "n" * 121)
    session.rollback()


def test_a_reprint_reason_longer_than_its_column_is_refused_by_name(
    app: Flask,
    session: Session,
    world: World,
    study: StudyDefinition,
    subject: Subject,
    bench: Bench,
    session_factory: sessionmaker[Session],
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    record(session, world, study, bench, batch, 1)
    session.commit()
    batch_id = batch.id
    session.rollback()
    tech = _client(app, "technician")
    response = tech.post(f"/bench/batches/{batch_id}/labels", data={"reason": "r" * 201})
    assert response.status_code == 422, response.get_data(as_text=True)[:300]
    assert "reason" in response.get_data(as_text=True).lower()
    assert "200 characters" in response.get_data(as_text=True)
    with session_factory() as s:
        assert s.scalar(select(func.count()).select_from(LabelPrint)) == 0
        assert audit_service.verify(s).ok


# --- what a barcode can carry ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    ["\ufeffLOT-9", "LOT\u202e9-TOL", "LOT\u200b9", "LOT\t9", "LOT-\u00e99", "LOT-\x079"],
    ids=["bom", "rtl-override", "zero-width-space", "tab", "accent", "bell"],
)
def test_a_scan_code_a_barcode_cannot_carry_is_refused(
    app: Flask, world: World, session_factory: sessionmaker[Session], code: str
) -> None:
    supervisor = _client(app, "supervisor")
    lot = supervisor.post(
        "/materials/lots",
        data={
            "scan_code": code,
            "name": "Collagenase",
            "catalogue_number": "C-1",
            "lot_number": "L-9",
            "expiry_date": "2030-01-01",
        },
    )
    assert lot.status_code == 422 and "Label code" in lot.get_data(as_text=True)
    tag = supervisor.post("/materials/equipment", data={"asset_tag": code, "equipment_type": "centrifuge"})
    assert tag.status_code == 422 and "Asset tag" in tag.get_data(as_text=True)
    station = _client(app, "admin").post("/admin/workstations", data={"code": code, "name": "Cabinet 9"})
    assert station.status_code == 422 and "Workstation code" in station.get_data(as_text=True)
    with session_factory() as s:
        for model in (ReagentLot, Equipment, Workstation):
            assert s.scalar(select(func.count()).select_from(model)) == 0
        assert len(s.scalars(select(AuditEvent).where(AuditEvent.action == "refused")).all()) == 3


def test_nan_is_a_scan_code_like_any_other(
    app: Flask, world: World, session_factory: sessionmaker[Session]
) -> None:
    """A barcode may read "NaN": it is a string, never parsed as a number."""
    supervisor = _client(app, "supervisor")
    lot = supervisor.post(
        "/materials/lots",
        data={
            "scan_code": "NaN",
            "name": "Collagenase",
            "catalogue_number": "C-1",
            "lot_number": "L-9",
            "expiry_date": "2030-01-01",
        },
    )
    assert lot.status_code == 302
    with session_factory() as s:
        assert s.scalars(select(ReagentLot.scan_code)).all() == ["NaN"]


def test_an_mbr_whose_names_do_not_fit_their_columns_is_refused_at_registration(session: Session) -> None:
    text = packaged_mbr_text()
    long_title = text.replace(
        'title = "aaMSC master batch record: collection to cryobank"', f'title = "{"t" * 201}"', 1
    )
    with pytest.raises(ValidationRefused, match="^MBR title is longer than 200 characters"):
        versions.register_mbr(session, "t", long_title)
    session.rollback()
