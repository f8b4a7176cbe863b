"""Dose preparation (MBR stage 6): from a signed order and a closed bank to a labelled syringe whose barcodes
decode back to exactly what the database says."""

from __future__ import annotations

import re
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
from mfg.dosing import bank, preparation, product_labels
from mfg.dosing import service as order_service
from mfg.dosing.models import DoseOrder, FinalProduct
from mfg.errors import Refusal, ValidationRefused
from mfg.process import batches, corrections, rules, steps, versions
from mfg.process.mbr import packaged_mbr_text
from mfg.process.models import Batch, Deviation, StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from mfg.web import batch_page
from tests.bench_data import STEP_SEQUENCE, Bench, step_values
from tests.conftest import PASSWORD, World, enroll, make_user, require_tool
from tests.integration.test_batch_service import run_step

DOSE_STEPS = ["dose.thaw", "dose.wash", "dose.count", "dose.fill", "dose.inspect", "dose.final_count"]


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
    # counts 1.40e7, 1.38e7, 1.42e7 -> C = 1.4e7; D/C = 5e7 / 1.4e7 = 3.571 mL: the syringe holds 5.0 mL;
    # with the 0.5 mL overage 5.5 mL is formulated: 3.571 x 5.5 / 5.0 = 3.929 -> 3.9 mL + 1.6 mL LR;
    # the syringe holds 1.4e7 x 3.9 x 5.0 / 5.5 = 4.964e7 (-0.7 %)
    assert product.expected_cells == pytest.approx(1.4e7 * 3.9 * 5.0 / 5.5)
    assert product.final_volume_ml == 5.0  # 3.9 + 1.6 drawn, less the 0.5 mL overage
    assert product.delivered_cells == pytest.approx(product.expected_cells, rel=1e-3)
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


def test_the_delivered_dose_is_measured_from_the_volumes_drawn(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    # Issue 9: the plan is 3.9 mL + 1.6 mL = 5.5 mL, 0.5 mL of it the overage; the technician drew 3.9 mL +
    # 1.7 mL (in specification): the syringe holds 5.1 mL. The final count, 1.0e7 /mL twice, times the 5.1 mL
    # is 5.1e7, not 1.0e7 x 5.0.
    subject = _banked_subject(session, world, study, bench)
    batch = _prepare(
        session,
        world,
        study,
        bench,
        _order(session, world, study, subject),
        **{
            "dose.fill": {"diluent_added": "1.7"},
            "dose.final_count": {"post_fill_count": "1.0e7", "post_fill_count_2": "1.0e7"},
        },
    )
    product = preparation.product_of(session, batch)
    assert product is not None
    assert product.final_volume_ml == 5.1
    assert product.concentration_per_ml == 1.0e7
    assert product.delivered_cells == pytest.approx(5.1e7)
    assert product.status == "awaiting_release"


def test_one_step_off_a_small_plan_is_a_deviation(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    # Issue 9: counts of 5e7 /mL plan 1.0 x 5.5 / 5.0 = 1.1 mL of suspension (0.5 mL overage) and 4.4 mL LR.
    # Drawing 1.2 mL puts 5e7 x 1.2 x 5.1 / 5.6 = 5.46e7 cells in the syringe, +9.3 %: one 0.1 mL step from
    # the plan, which the old rule (plan ± one step) accepted.
    subject = _banked_subject(session, world, study, bench)
    batch = _prepare(
        session,
        world,
        study,
        bench,
        _order(session, world, study, subject),
        **{
            "dose.count": {"count_1": "5.0e7", "count_2": "5.0e7", "count_3": ""},
            "dose.fill": {"suspension_drawn": "1.2", "diluent_added": "4.4"},
        },
    )
    deviation = session.scalar(select(Deviation).where(Deviation.batch_id == batch.id))
    assert deviation is not None and deviation.field_key == "suspension_drawn"
    # the dose within ±5 %: 1.047 to 1.153 mL
    assert "1.047–1.153 mL" in deviation.limit_text


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
    # the dose in the syringe within 5e7 x (1 ± 0.05), with 1.6 mL LR and 0.5 mL overage: 3.744 to 4.109 mL
    assert "3.744–4.109 mL" in deviation.limit_text


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
        **{"dose.final_count": {"post_fill_count": "8.0e6", "post_fill_count_2": "8.0e6"}},
    )
    product = preparation.product_of(session, batch)
    assert product is not None and product.status == "blocked"
    assert product.delivered_cells == pytest.approx(4.0e7)
    reason = product.block_reason or ""
    assert "delivered dose 4.00 × 10⁷ cells is -20.0% from the prescribed 5 × 10⁷" in reason
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


def test_thaw_takes_exactly_the_vials_the_bank_check_chose(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    # Issue 9: thaw accepted any cryovials, or fewer than planned.
    subject = _banked_subject(session, world, study, bench)
    order = _order(session, world, study, subject)
    batch = preparation.start_preparation(session, world.users["technician"], order, study)
    session.commit()
    planned = list(bank.bank_status(session, subject, study, order).vials_to_thaw)
    others = [
        vial.scan_id
        for vial in session.scalars(select(Container).where(Container.kind == "cryovial"))
        if vial.scan_id not in planned
    ]
    assert len(planned) == 2 and others
    values = step_values(session, batch, "dose.thaw", clock.now())
    for vials, words in (
        (planned[:1], f"not scanned: {planned[1]}"),
        ([*planned, others[0]], f"not chosen for this dose: {others[0]}"),
        ([planned[0], others[0]], f"not scanned: {planned[1]}; not chosen for this dose: {others[0]}"),
    ):
        with pytest.raises(ValidationRefused, match=re.escape(words)):  # scan ids may hold '*'
            run_step(
                session, world, study, batch, bench, "dose.thaw", values={**values, "vials": " ".join(vials)}
            )
        session.rollback()
    assert batches.latest_record(session, batch, "dose.thaw") is None
    stored = session.scalars(select(Container).where(Container.scan_id.in_(planned + others))).all()
    assert all(vial.status != "consumed" for vial in stored)
    run_step(session, world, study, batch, bench, "dose.thaw", values=values)
    assert batches.latest_record(session, batch, "dose.thaw") is not None


def test_a_suspension_too_concentrated_is_pre_diluted_and_counted_again(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    # Issue 9: counts of 2.2e8 /mL need 5e7 / 2.2e8 x 5.5 / 5.0 = 0.25 mL: not measurable.
    subject = _banked_subject(session, world, study, bench)
    batch = preparation.start_preparation(
        session, world.users["technician"], _order(session, world, study, subject), study
    )
    session.commit()
    high = {"count_1": "2.2e8", "count_2": "2.2e8", "count_3": "", "viability": "90"}
    for step_key in ("dose.thaw", "dose.wash", "dose.count"):
        extra = high if step_key == "dose.count" else {}
        values = {**step_values(session, batch, step_key, clock.now()), **extra}
        run_step(session, world, study, batch, bench, step_key, values=values)
    with pytest.raises(Refusal, match="pre-dilute to at most") as refused:
        preparation.fill_plan(session, batch, study)
    # at most 5e7 x 5.5 / (5.0 x 1.0 mL) = 5.5e7 cells/mL
    assert "5.50 × 10⁷ viable cells/mL and count again" in str(refused.value)
    # the bench opens on the fill (the pre-dilution is optional), and offers the pre-dilution
    mbr = batches.batch_mbr(session, batch)
    available = rules.available_steps(mbr, batches.progress_of(session, batch))
    assert [s.key for s in available] == ["dose.predilute", "dose.fill"]
    assert batch_page._current_step(available, None).key == "dose.fill"
    diluted = {
        **step_values(session, batch, "dose.predilute", clock.now()),
        "count_1": "1.40e7",
        "count_2": "1.42e7",
    }
    run_step(session, world, study, batch, bench, "dose.predilute", values=diluted)
    plan = preparation.fill_plan(session, batch, study)
    assert plan.counts_per_ml == (1.40e7, 1.42e7)  # the latest counts
    for step_key in ("dose.fill", "dose.inspect", "dose.final_count"):
        run_step(session, world, study, batch, bench, step_key)
    product = preparation.product_of(session, batch)
    assert product is not None and product.status == "awaiting_release"
    # once the fill is recorded, no more pre-dilutions
    assert "dose.predilute" not in {
        s.key for s in rules.available_steps(mbr, batches.progress_of(session, batch))
    }


def test_the_retained_samples_counts_must_agree(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    subject = _banked_subject(session, world, study, bench)
    with pytest.raises(
        Refusal, match="the retained sample's counts disagree, CV 28.3% above the limit 10.0%"
    ):
        _prepare(
            session,
            world,
            study,
            bench,
            _order(session, world, study, subject),
            **{"dose.final_count": {"post_fill_count": "1.0e7", "post_fill_count_2": "1.5e7"}},
        )


def test_a_dose_batch_on_version_1_keeps_it(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    """Version 2 is approved (the bench set-up did it); a batch begun on version 1 before it carries on with
    version 1's steps: one final count, no inspection, no second person at thaw."""
    v1 = versions.register_mbr(session, "test-setup", packaged_mbr_text("aamsc_dose_v1"))
    versions.approve_mbr(session, world.users["qa"], PASSWORD, v1)
    subject = _banked_subject(session, world, study, bench)
    batch = preparation.start_preparation(
        session, world.users["technician"], _order(session, world, study, subject), study
    )
    assert batches.batch_mbr(session, batch).version == 2  # new batches take the latest approved
    # as if it had been started before version 2 was approved
    audit_service.update(
        session, "test-setup", batch, reason="started before v2", action="test", mbr_version_id=v1.id
    )
    session.commit()
    assert batches.batch_mbr(session, batch).version == 1
    thaw = run_step(
        session,
        world,
        study,
        batch,
        bench,
        "dose.thaw",
        values={
            k: v for k, v in step_values(session, batch, "dose.thaw", clock.now()).items() if k != "thawed_at"
        },
    )
    assert thaw.status == "done"
    for step_key in ("dose.wash", "dose.count", "dose.fill"):
        run_step(session, world, study, batch, bench, step_key)
    product = preparation.product_of(session, batch)
    assert product is not None
    concentration = product.expected_cells / product.final_volume_ml
    run_step(
        session,
        world,
        study,
        batch,
        bench,
        "dose.final_count",
        values={"post_fill_count": f"{concentration:.4g}"},
    )
    assert product.status == "awaiting_release"
    assert product.delivered_cells == pytest.approx(product.expected_cells, rel=1e-3)
    assert audit_service.verify(session).ok


def test_a_corrected_final_count_or_volume_recomputes_the_delivered_dose(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    """A corrected final count left the delivered dose (and the product's status) as computed from the
    old count; a corrected drawn volume left the syringe's volume."""
    subject = _banked_subject(session, world, study, bench)
    batch = _prepare(
        session,
        world,
        study,
        bench,
        _order(session, world, study, subject),
        **{"dose.final_count": {"post_fill_count": "1.0e7", "post_fill_count_2": "1.0e7"}},
    )
    product = preparation.product_of(session, batch)
    assert product is not None and product.delivered_cells == pytest.approx(5.0e7)
    final = batches.latest_record(session, batch, "dose.final_count")
    assert final is not None
    tech = world.users["technician"]

    def correct(record: StepRecord, key: str, value: str) -> None:
        row = batches.current_values(session, record)[key]
        corrections.correct_value(session, tech, row, value, "transcription error", study)
        session.commit()

    # mean (1.1e7 + 1.0e7) / 2 = 1.05e7 x 5.0 mL = 5.25e7: +5 %, still within ±10 %
    correct(final, "post_fill_count", "1.1e7")
    assert product.delivered_cells == pytest.approx(5.25e7)
    assert batches.current_values(session, final)["delivered_cells"].number == pytest.approx(5.25e7)
    assert product.status == "awaiting_release"
    # the fill's diluent was 0.2 mL more than typed: the syringe holds 5.2 mL, 1.05e7 x 5.2 = 5.46e7 (+9.2 %)
    fill = batches.latest_record(session, batch, "dose.fill")
    assert fill is not None
    typed = batches.current_values(session, fill)["diluent_added"].number
    assert typed is not None
    correct(fill, "diluent_added", f"{typed + 0.2:.1f}")
    assert product.final_volume_ml == pytest.approx(5.2)
    assert product.delivered_cells == pytest.approx(1.05e7 * 5.2)
    # and a second count corrected to 1.2e7: (1.1e7 + 1.2e7) / 2 x 5.2 = 5.98e7, +19.6 %: blocked
    correct(final, "post_fill_count_2", "1.2e7")
    assert product.status == "blocked" and "+19.6% from the prescribed" in (product.block_reason or "")
    syringe = session.get(Container, product.syringe_id)
    assert syringe is not None and syringe.status == "quarantined"
    # a correction never releases a blocked syringe
    correct(final, "post_fill_count_2", "1.0e7")
    assert product.status == "blocked"
    assert audit_service.verify(session).ok


def test_a_dose_corrected_after_its_labels_were_printed_blocks_the_syringe(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    subject = _banked_subject(session, world, study, bench)
    batch = _prepare(session, world, study, bench, _order(session, world, study, subject))
    product = preparation.product_of(session, batch)
    assert product is not None and product.status == "awaiting_release"
    product_labels.print_product_labels(session, world.users["technician"], product, study, "")
    session.commit()
    final = batches.latest_record(session, batch, "dose.final_count")
    assert final is not None
    row = batches.current_values(session, final)["post_fill_count"]
    assert row.number is not None
    corrections.correct_value(
        session, world.users["technician"], row, f"{row.number * 1.02:.4g}", "misread", study
    )
    session.commit()
    assert product.status == "blocked"
    assert "after the labels were printed with the earlier dose: reprint them" in (product.block_reason or "")


def test_no_dose_from_a_bank_whose_corrected_value_awaits_verification(
    session: Session, world: World, study: StudyDefinition, bench: Bench
) -> None:
    """A new-user review: a verified critical freeze value was corrected, and a dose was started from the bank
    at once, its thaw planned from the unverified value."""
    subject = _banked_subject(session, world, study, bench)
    collection = session.scalar(select(Batch).where(Batch.subject_id == subject.id, Batch.division == "00"))
    assert collection is not None
    freeze = batches.latest_record(session, collection, "cryobank.freeze")
    assert freeze is not None and freeze.status == "done"
    row = batches.current_values(session, freeze)["cells_per_vial"]
    assert row.number is not None
    corrections.correct_value(
        session, world.users["supervisor"], row, f"{row.number * 1.1:.4g}", "transcription", study
    )
    session.commit()
    assert freeze.status == "awaiting_verification"
    order = _order(session, world, study, subject)
    with pytest.raises(Refusal, match=r"waiting for second-person verification \(Freeze the cell bank\)"):
        preparation.start_preparation(session, world.users["technician"], order, study)
    session.rollback()
    # verified by someone other than the corrector
    steps.verify_step(session, make_user(session, "supervisor", "sup2"), PASSWORD, freeze)
    session.commit()
    assert preparation.start_preparation(session, world.users["technician"], order, study) is not None
