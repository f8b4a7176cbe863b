"""Dose preparation (MBR stage 6): from a signed order and a closed bank to a labelled syringe whose barcodes
decode back to exactly what the database says."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from labels import isbt128
from labels.data import barcode_strings
from labels.numbers import format_cells, format_ml
from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import Container, LabelPrint
from mfg.dosing import preparation, product_labels
from mfg.dosing import service as order_service
from mfg.dosing.models import DoseOrder, FinalProduct
from mfg.errors import Refusal
from mfg.process import batches
from mfg.process.models import Batch, Deviation, StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import STEP_SEQUENCE, Bench, step_values
from tests.conftest import PASSWORD, World, enroll, require_tool
from tests.integration.test_batch_service import run_step

DOSE_STEPS = ["dose.thaw", "dose.wash", "dose.count", "dose.fill", "dose.final_count"]


def _banked_subject(
    session: Session, world: World, study: StudyDefinition, bench: Bench, name: str = "Jordan Example"
) -> Subject:
    subject = enroll(session, world, study, name=name)
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key, iteration in STEP_SEQUENCE:
        run_step(session, world, study, batch, bench, step_key, iteration)
    return subject


def _order(session: Session, world: World, study: StudyDefinition, subject: Subject) -> DoseOrder:
    order = order_service.place_order(
        session,
        world.users["investigator"],
        PASSWORD,
        subject,
        study,
        injection_number=1,
        dose_cells=5e7,
        body_weight_kg=70.0,
        first_due=clock.today() + timedelta(days=3),
        change_reason=None,
    )
    session.commit()
    return order


def _prepare(
    session: Session,
    world: World,
    study: StudyDefinition,
    bench: Bench,
    order: DoseOrder,
    **changes: dict[str, str],
) -> Batch:
    batch = preparation.start_preparation(session, world.users["technician"], order, study)
    session.commit()
    for step_key in DOSE_STEPS:
        values = {**step_values(session, batch, step_key, clock.now()), **changes.get(step_key, {})}
        run_step(session, world, study, batch, bench, step_key, values=values)
    return batch


@pytest.fixture
def prepared(session: Session, world: World, study: StudyDefinition, bench: Bench) -> Batch:
    subject = _banked_subject(session, world, study, bench)
    return _prepare(session, world, study, bench, _order(session, world, study, subject))


def test_a_prescribed_dose_is_prepared_to_a_syringe_within_tolerance(
    session: Session, study: StudyDefinition, prepared: Batch
) -> None:
    product = preparation.product_of(session, prepared)
    assert product is not None and product.status == "awaiting_release"
    # counts 1.40e7, 1.38e7, 1.42e7 -> C = 1.4e7; 5e7 / 1.4e7 = 3.571 -> 3.6 mL; 3.6 x 1.4e7 = 5.04e7
    assert product.expected_cells == pytest.approx(5.04e7)
    assert product.final_volume_ml == 5.0  # max(5.0, 3.6); Lactated Ringer's 1.4 mL
    assert product.delivered_cells == pytest.approx(5.04e7, rel=1e-3)
    assert prepared.division == "A0"
    assert product.product_code == f"=<{study.product.product_description_code}1A0"
    assert product.expires_at - product.formulated_at == timedelta(hours=study.product.stability_hours)
    thawed = session.scalars(
        select(Container).where(Container.kind == "cryovial", Container.status == "consumed")
    ).all()
    assert len(thawed) == 2  # ceil(5e7 / (5e7 x 0.7))
    syringe = session.get(Container, product.syringe_id)
    assert syringe is not None and syringe.din == prepared.din and syringe.status == "in_use"
    assert audit_service.verify(session).ok


def test_a_fill_volume_off_the_plan_opens_a_deviation(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    subject = _banked_subject(session, world, study, bench)
    batch = _prepare(
        session,
        world,
        study,
        bench,
        _order(session, world, study, subject),
        **{"dose.fill": {"suspension_drawn": "4.2"}},
    )
    deviation = session.scalar(select(Deviation).where(Deviation.batch_id == batch.id))
    assert deviation is not None and deviation.field_key == "suspension_drawn"
    assert "3.5–3.7 mL" in deviation.limit_text


def test_a_delivered_dose_out_of_tolerance_blocks_the_syringe(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    subject = _banked_subject(session, world, study, bench)
    batch = _prepare(
        session,
        world,
        study,
        bench,
        _order(session, world, study, subject),
        **{"dose.final_count": {"post_fill_count": "8.0e6"}},
    )
    product = preparation.product_of(session, batch)
    assert product is not None and product.status == "blocked"
    assert product.delivered_cells == pytest.approx(4.0e7)
    assert "-20.0% from the prescribed" in (product.block_reason or "")
    syringe = session.get(Container, product.syringe_id)
    assert syringe is not None and syringe.status == "quarantined"
    assert audit_service.verify(session).ok


def test_counts_that_disagree_refuse_the_fill(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    subject = _banked_subject(session, world, study, bench)
    order = _order(session, world, study, subject)
    with pytest.raises(Refusal, match="CV .* above limit"):
        _prepare(
            session,
            world,
            study,
            bench,
            order,
            **{"dose.count": {"count_1": "1.0e7", "count_2": "2.0e7", "count_3": ""}},
        )
    session.rollback()
    assert session.scalar(select(func.count()).select_from(FinalProduct)) == 0


def test_preparation_against_a_cancelled_order_is_refused(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    subject = _banked_subject(session, world, study, bench)
    order = _order(session, world, study, subject)
    order_service.cancel_order(session, world.users["investigator"], order, "subject hospitalised")
    session.commit()
    before = session.scalar(select(func.count()).select_from(Batch))
    with pytest.raises(Refusal, match="cancelled"):
        preparation.start_preparation(session, world.users["technician"], order, study)
    session.rollback()
    assert session.scalar(select(func.count()).select_from(Batch)) == before


def _decode(pdf: bytes, tmp_path: Path, name: str) -> tuple[list[str], str]:
    pdftoppm = require_tool("pdftoppm", "rasterises label PDFs")
    zbarimg = require_tool("zbarimg", "decodes printed barcodes")
    pdftotext = require_tool("pdftotext", "extracts label text")
    path = tmp_path / f"{name}.pdf"
    path.write_bytes(pdf)
    subprocess.run([pdftoppm, "-r", "300", "-png", str(path), str(tmp_path / name)], check=True)
    decoded: list[str] = []
    for page in sorted(tmp_path.glob(f"{name}*.png")):
        out = subprocess.run(
            [zbarimg, "-q", "--raw", "-Sdisable", "-Scode128.enable", str(page)],
            capture_output=True,
            text=True,
        )
        decoded += out.stdout.split()
    text = subprocess.run([pdftotext, str(path), "-"], capture_output=True, text=True, check=True).stdout
    return decoded, " ".join(text.split())


def test_syringe_label_barcodes_decode_to_the_database(
    session: Session, world: World, study: StudyDefinition, prepared: Batch, tmp_path: Path
) -> None:
    product = preparation.product_of(session, prepared)
    assert product is not None
    syringe_pdf = product_labels.print_product_labels(session, world.users["technician"], product, study, "")
    session.commit()
    decoded, text = _decode(syringe_pdf, tmp_path, "syringe")
    subject = session.get(Subject, prepared.subject_id)
    assert subject is not None
    expected = barcode_strings(product_labels.syringe_label(session, product, study))
    assert sorted(decoded) == sorted(expected.values())
    din = isbt128.parse(expected["din"])
    assert isinstance(din, isbt128.Din) and din.code == product.din
    assert isbt128.parse(expected["product_code"]).code == product.product_code  # type: ignore[union-attr]
    expiry = isbt128.parse(expected["expiry"])
    assert isinstance(expiry, isbt128.ExpirationDateTime)
    assert expiry.value == product_labels.expiry_local(product, study).replace(
        tzinfo=None, second=0, microsecond=0
    )
    coi = isbt128.parse(expected["coi"])
    assert isinstance(coi, isbt128.ChainOfIdentity) and coi.identifier == subject.coi_identifier
    for element in (
        study.product_name,
        subject.name,
        "1961-04-12",
        subject.study_subject_id,
        "5.0 mL",
        "Lactated Ringer's Injection, USP",
        study.labels.autologous,
        study.labels.not_evaluated,
        "Caution: New Drug—Limited by Federal (or United States) law to investigational use.",
        "Human Cellular Therapy Laboratory",
        din.check_character,
        "Intrathecal",
    ):
        assert element in text, element
    assert "viable cells" in text  # the measured dose: see the test below
    local = product_labels.expiry_local(product, study)
    assert f"{local:%Y-%m-%d %H:%M} {local.tzname()}" in text
    # A second print is a reprint: it needs a reason, and both are on record.
    with pytest.raises(Refusal, match="reprint needs a reason"):
        product_labels.print_product_labels(session, world.users["technician"], product, study, "")
    session.rollback()
    product_labels.print_product_labels(session, world.users["technician"], product, study, "smudged")
    session.commit()
    prints = session.scalars(
        select(LabelPrint).where(LabelPrint.container_id == product.syringe_id).order_by(LabelPrint.id)
    ).all()
    assert [(p.label_kind, p.reprint, p.reason) for p in prints] == [
        ("syringe", False, "first print"),
        ("syringe", True, "smudged"),
    ]
    assert audit_service.verify(session).ok


def test_the_syringe_label_prints_the_measured_dose_and_volume_not_the_prescription(
    session: Session, world: World, study: StudyDefinition, prepared: Batch, tmp_path: Path
) -> None:
    """Issue 9: the label printed the prescribed dose; the clinic needs what the syringe holds."""
    product = preparation.product_of(session, prepared)
    assert product is not None and product.delivered_cells is not None
    measured = format_cells(product.delivered_cells, "label")
    prescribed = format_cells(product.prescribed_cells, "label")
    assert measured != prescribed  # 5.04 × 10⁷ measured against 5 × 10⁷ prescribed
    concentration = product.concentration_per_ml or product.delivered_cells / product.final_volume_ml
    pdf = product_labels.print_product_labels(session, world.users["technician"], product, study, "")
    _, text = _decode(pdf, tmp_path, "measured")
    assert f"{measured} viable cells" in text
    assert prescribed not in text
    assert f"Volume: {format_ml(product.final_volume_ml)}" in text
    assert f"{format_cells(concentration, 'label')} viable cells/mL" in text


def test_a_forty_character_name_keeps_every_barcode_readable(
    session: Session, world: World, study: StudyDefinition, bench: Bench, tmp_path: Path
) -> None:
    long_name = "Maximiliana Alexandrovna Featherstonehau"
    assert len(long_name) == 40
    subject = _banked_subject(session, world, study, bench, name=long_name)
    batch = _prepare(session, world, study, bench, _order(session, world, study, subject))
    product = preparation.product_of(session, batch)
    assert product is not None
    syringe_pdf = product_labels.print_product_labels(session, world.users["technician"], product, study, "")
    decoded, text = _decode(syringe_pdf, tmp_path, "long")
    assert sorted(decoded) == sorted(
        barcode_strings(product_labels.syringe_label(session, product, study)).values()
    )
    assert long_name in text


# --- found by the red team of the engine split; each failed before its fix ----------------------------------


def test_a_thaw_with_no_vial_scanned_is_refused(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    """A lone separator once passed as the vial list: a syringe with no lineage, ready for release."""
    subject = _banked_subject(session, world, study, bench)
    order = _order(session, world, study, subject)
    with pytest.raises(Refusal, match="scan at least one cryovial"):
        _prepare(session, world, study, bench, order, **{"dose.thaw": {"vials": " , "}})
    session.rollback()
    assert (
        session.scalar(select(func.count()).select_from(StepRecord).where(StepRecord.step_key == "dose.thaw"))
        == 0
    )


def test_an_order_being_or_been_prepared_cannot_be_cancelled(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    """Cancelling a prepared order let the same injection be ordered and prepared a second time."""
    subject = _banked_subject(session, world, study, bench)
    order = _order(session, world, study, subject)
    _prepare(session, world, study, bench, order)
    with pytest.raises(Refusal, match="cannot be cancelled"):
        order_service.cancel_order(session, world.users["investigator"], order, "changed my mind")
    session.rollback()
    assert order.status in ("in_preparation", "prepared")


def test_labels_are_reconciled_in_whole_numbers(
    session: Session, world: World, study: StudyDefinition, bench: Bench, prepared: Batch
) -> None:
    """1.9 labels applied was read as 1, and 2 printed = 1 + 1 reported as balanced."""
    product = preparation.product_of(session, prepared)
    assert product is not None
    product_labels.print_product_labels(session, world.users["technician"], product, study, "")
    session.commit()
    values = {**step_values(session, prepared, "dose.label", clock.now()), "labels_applied": "0.9"}
    with pytest.raises(Refusal, match="whole numbers"):
        run_step(session, world, study, prepared, bench, "dose.label", values=values)
    session.rollback()
