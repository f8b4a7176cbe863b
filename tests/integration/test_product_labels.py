"""Labels carry what the clinic and the courier need (issue 9, part 3), printed from the record: the syringe
label with the measured dose, the injection and the study's two patient identifiers; the shipper label with
where the package goes and nothing of who it is for beyond the chain of identity and the study subject id;
the bank's cryovials with the intermediate product's code. Real PDFs, read back with pdftotext, zbarimg and
dmtxread."""

from __future__ import annotations

import re
import subprocess
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from labels.data import PatientIdentifier, compound_message
from labels.render import layout_shipper_label
from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody import labels as container_labels
from mfg.custody.models import Container, LabelPrint
from mfg.dosing import preparation, product_labels
from mfg.dosing.models import DoseOrder, FinalProduct
from mfg.errors import Refusal
from mfg.process.models import Batch
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from mfg.study.service import coi_of
from tests.bench_data import Bench
from tests.conftest import World, require_tool
from tests.integration.test_dose_preparation import _banked_subject, _decode, _order, _prepare

SHIPPER_MM = 101.6


@pytest.fixture
def prepared(session: Session, world: World, study: StudyDefinition, bench: Bench) -> Batch:
    """A dose of 5e7 prescribed, prepared and counted: 5.04e7 measured in 5.0 mL."""
    subject = _banked_subject(session, world, study, bench)
    return _prepare(session, world, study, bench, _order(session, world, study, subject))


def _product(session: Session, batch: Batch) -> tuple[FinalProduct, Subject, DoseOrder]:
    product = preparation.product_of(session, batch)
    subject = session.get(Subject, batch.subject_id)
    order = session.get(DoseOrder, batch.dose_order_id)
    assert product is not None and subject is not None and order is not None
    return product, subject, order


def test_the_syringe_label_names_the_injection_the_protocol_and_the_handling(
    session: Session, world: World, study: StudyDefinition, prepared: Batch, tmp_path: Path
) -> None:
    product, _, order = _product(session, prepared)
    pdf = product_labels.print_product_labels(session, world.users["technician"], product, study, "")
    _, text = _decode(pdf, tmp_path, "syringe")
    assert order.injection_number == 1
    for expected in [
        f"Injection 1 of {study.schedule.injections}",
        f"Visit {order.protocol_visit}",
        "Protocol NCT03268603",
        f"IND {study.ind_number}",
        "Do not shake. Do not filter. Do not irradiate.",
        f"Storage: {study.product.storage}",
    ]:
        assert expected in text, expected


def test_the_label_prints_the_two_identifiers_the_bedside_check_will_match(
    session: Session, world: World, study: StudyDefinition, prepared: Batch, tmp_path: Path
) -> None:
    product, subject, _ = _product(session, prepared)
    assert product_labels.label_patient_identifiers(subject, study) == (
        PatientIdentifier("name", "Jordan Example"),
        PatientIdentifier("date_of_birth", "1961-04-12"),
    )
    technician = world.users["technician"]
    pdf = product_labels.print_product_labels(session, technician, product, study, "")
    _, text = _decode(pdf, tmp_path, "default")
    assert "Jordan Example" in text and "DOB: 1961-04-12" in text and "Study ID: ALS-001" in text
    assert "MRN" not in text

    by_record = replace(
        study, labels=replace(study.labels, patient_identifiers=("name", "medical_record_number"))
    )
    assert product_labels.label_patient_identifiers(subject, by_record) == (
        PatientIdentifier("name", "Jordan Example"),
        PatientIdentifier("medical_record_number", "MRN-12345"),
    )
    pdf = product_labels.print_product_labels(session, technician, product, by_record, "other identifiers")
    _, text = _decode(pdf, tmp_path, "by-record")
    assert "Jordan Example" in text and "MRN: MRN-12345" in text and "Study ID: ALS-001" in text
    assert "1961-04-12" not in text and "DOB" not in text


def _next_evening_in_chicago(now: datetime) -> datetime:
    """03:30 UTC after ``now``: still the previous day at the facility (21:30 or 22:30 in Chicago)."""
    instant = now.astimezone(UTC).replace(hour=3, minute=30, second=0, microsecond=0)
    return instant if instant > now else instant + timedelta(days=1)


def test_the_shipper_label_goes_from_the_facility_to_the_subjects_site_without_name_or_birth_date(
    session: Session, world: World, study: StudyDefinition, prepared: Batch, tmp_path: Path
) -> None:
    require_tool("dmtxread", "decodes the shipper's DataMatrix")
    product, subject, _ = _product(session, prepared)
    shipped = _next_evening_in_chicago(clock.now())
    with clock.pinned(shipped, frozen=True):
        pdf = product_labels.print_product_labels(
            session, world.users["technician"], product, study, "", kind="shipper"
        )
        label = product_labels.shipper_label(session, product, study)
    session.commit()
    decoded, text = _decode(pdf, tmp_path, "shipper")
    assert sorted(decoded) == sorted([product.din, coi_of(subject).code])
    local_day = clock.to_local(shipped).date()
    assert local_day != shipped.date()  # the facility's day, not UTC's
    for expected in [
        "SHIP FROM",
        world.manufacturing.name,
        *world.manufacturing.address.splitlines(),
        "SHIP TO",
        world.site.name,
        world.site.address,
        f"24-hour contact: {study.shipper.contact_phone}",
        study.shipper.temperature,
        f"Ship date: {local_day.isoformat()}",
        "Do not X-ray",
        f"Study ID: {subject.study_subject_id}",
    ]:
        assert expected in text, expected
    for private in [subject.name, *subject.name.split(), "1961-04-12", "DOB", subject.medical_record_number]:
        assert private not in text, private
    assert re.search(r"CHAIN OF IDENTITY|COI", text)
    # the DataMatrix, cropped from a 300 dpi rendering, decodes to the compound message
    (symbol,) = [p for p in layout_shipper_label(label) if p.kind == "datamatrix"]
    px, box = 300 / 25.4, symbol.box
    page = tmp_path / "dm"
    (tmp_path / "shipper.pdf").write_bytes(pdf)
    subprocess.run(
        [
            "pdftoppm",
            "-r",
            "300",
            "-png",
            "-x",
            str(int((box.x - 1) * px)),
            "-y",
            str(int((SHIPPER_MM - box.top - 1) * px)),
            "-W",
            str(int((box.w + 2) * px)),
            "-H",
            str(int((box.h + 2) * px)),
            str(tmp_path / "shipper.pdf"),
            str(page),
        ],
        check=True,
    )
    (png,) = tmp_path.glob("dm*.png")
    read = subprocess.run(["dmtxread", "-N1", str(png)], capture_output=True, text=True, timeout=60)
    assert read.stdout == compound_message(label)
    prints = session.scalars(select(LabelPrint).where(LabelPrint.container_id == product.syringe_id)).all()
    assert [(p.label_kind, p.printed_at) for p in prints] == [("shipper", shipped)]
    assert audit_service.verify(session).ok


def test_a_study_may_allow_the_name_and_date_of_birth_on_the_shipper(
    session: Session, world: World, study: StudyDefinition, prepared: Batch, tmp_path: Path
) -> None:
    require_tool("gs", "Ghostscript runs treepoem's DataMatrix encoder")
    product, subject, _ = _product(session, prepared)
    open_study = replace(study, shipper=replace(study.shipper, show_name_and_date_of_birth=True))
    label = product_labels.shipper_label(session, product, open_study)
    assert (label.subject_name, label.date_of_birth) == (subject.name, subject.date_of_birth)
    pdf = product_labels.print_product_labels(
        session, world.users["technician"], product, open_study, "", kind="shipper"
    )
    _, text = _decode(pdf, tmp_path, "open")
    assert subject.name in text and "DOB: 1961-04-12" in text


def test_the_measured_concentration_or_for_older_products_the_dose_over_the_volume() -> None:
    settled = FinalProduct(id=1, delivered_cells=5.04e7, final_volume_ml=5.0, concentration_per_ml=1.0e7)
    assert product_labels.measured_dose(settled) == (5.04e7, 1.0e7)
    older = FinalProduct(id=2, delivered_cells=5.04e7, final_volume_ml=5.0, concentration_per_ml=None)
    assert product_labels.measured_dose(older) == (5.04e7, pytest.approx(1.008e7))
    with pytest.raises(Refusal, match="count the retained sample"):
        product_labels.measured_dose(FinalProduct(id=3, final_volume_ml=5.0))


def test_the_bank_cryovials_carry_the_intermediate_product_code(
    session: Session, world: World, study: StudyDefinition, prepared: Batch, tmp_path: Path
) -> None:
    vials = session.scalars(
        select(Container)
        .where(Container.din == prepared.din, Container.kind == "cryovial", Container.status == "stored")
        .order_by(Container.id)
    ).all()
    assert vials
    pdf = container_labels.print_container_labels(session, world.users["technician"], vials[:1], "", study)
    decoded, text = _decode(pdf, tmp_path, "cryovial")
    code = f"=<{study.product.intermediate_description_code}{study.product.collection_type}00"
    assert code == "=<S9998100" and sorted(decoded) == sorted([vials[0].scan_id, code])
    assert "S9998 1 00" in text and "PRODUCT CODE" in text
    assert b"/MediaBox [ 0 0 144 108 ]" in pdf  # the cryovial stock, 2 x 1.5 in
    flask = session.scalar(
        select(Container).where(Container.din == prepared.din, Container.kind != "cryovial")
    )
    assert flask is not None
    with pytest.raises(Refusal, match="print the cryovials and the other containers separately"):
        container_labels.print_container_labels(
            session, world.users["technician"], [vials[1], flask], "", study
        )


def test_a_label_that_cannot_print_whole_is_refused_naming_the_field(
    session: Session, world: World, study: StudyDefinition, prepared: Batch
) -> None:
    product, subject, _ = _product(session, prepared)
    subject.name = "Jordan " + "W" * 30  # one word wider than the label's text column: never split
    with pytest.raises(Refusal, match="syringe label cannot be printed: subject_name: the word 'WWW"):
        product_labels.print_product_labels(session, world.users["technician"], product, study, "")
    session.rollback()
    assert session.scalars(select(LabelPrint)).all() == []
