"""Dose preparation at the bench terminal: the fill plan on screen, the syringe label as a PDF."""

from __future__ import annotations

from datetime import timedelta

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody.models import Container
from mfg.dosing import service as order_service
from mfg.dosing.models import DoseOrder, FinalProduct
from mfg.process import batches
from mfg.process.models import Batch, StepRecord
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import STEP_SEQUENCE, Bench, step_values
from tests.conftest import PASSWORD, World, login
from tests.integration.test_batch_service import run_step

CRITICAL = {"dose.thaw", "dose.count", "dose.fill"}


def test_a_dose_is_prepared_and_labelled_through_the_terminal(
    app: Flask, session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key, iteration in STEP_SEQUENCE:
        run_step(session, world, study, batch, bench, step_key, iteration)
    order = order_service.place_order(
        session,
        world.users["investigator"],
        PASSWORD,
        subject,
        study,
        injection_number=1,
        dose_cells=5e7,
        body_weight_kg=68.0,
        first_due=clock.today() + timedelta(days=2),
        change_reason=None,
    )
    session.commit()
    order_id = order.id
    tech = app.test_client()
    assert login(tech, "technician").status_code == 302
    tech.post("/bench/workstation", data={"code": "BSC-01"})
    assert f"/bench/orders/{order_id}/prepare" in tech.get("/bench/").text
    started = tech.post(f"/bench/orders/{order_id}/prepare")
    assert started.status_code == 302, started.text
    dose_batch = session.scalar(select(Batch).where(Batch.dose_order_id == order_id))
    assert dose_batch is not None
    batch_id = dose_batch.id
    session.rollback()
    tech.post(f"/bench/batches/{batch_id}/open")
    for step_key in ("dose.thaw", "dose.wash", "dose.count", "dose.fill", "dose.inspect", "dose.final_count"):
        session.rollback()
        values = step_values(session, session.get(Batch, batch_id), step_key, clock.now())  # type: ignore[arg-type]
        session.rollback()
        if step_key == "dose.fill":
            page = tech.get(f"/bench/batches/{batch_id}").text
            assert "Fill plan" in page and "5 × 10⁷ / 1.40 × 10⁷" in page
            assert "Draw <strong>3.9 mL</strong>" in page  # 5.0 mL in the syringe + 0.5 mL overage
        if step_key == "dose.final_count":
            # The delivered dose is computed, not typed: no input box the browser would insist on.
            page = tech.get(f"/bench/batches/{batch_id}").text
            assert 'name="f.post_fill_count"' in page and 'name="f.delivered_cells"' not in page
            assert "computed when recorded" in page
        form = {**{f"f.{k}": v for k, v in values.items()}, "password": PASSWORD}
        response = tech.post(f"/bench/batches/{batch_id}/steps/{step_key}", data=form)
        assert response.status_code == 302, f"{step_key}: {response.text[:1500]}"
        session.rollback()
        record = session.scalar(
            select(StepRecord).where(StepRecord.batch_id == batch_id, StepRecord.step_key == step_key)
        )
        assert record is not None
        if step_key in CRITICAL:
            # Issue 9: the thaw's vials, the counts and the fill wait for a second person.
            assert record.status == "awaiting_verification", step_key
            record_id = record.id
            session.rollback()
            verified = tech.post(
                f"/bench/records/{record_id}/verify", data={"username": "supervisor", "password": PASSWORD}
            )
            assert verified.status_code == 302, verified.text[:1500]
        else:
            assert record.status == "done", step_key
        session.rollback()
    label = tech.post(f"/bench/batches/{batch_id}/product-labels", data={"kind": "syringe"})
    assert label.status_code == 200 and label.mimetype == "application/pdf"
    reprint = tech.post(f"/bench/batches/{batch_id}/product-labels", data={"kind": "syringe"})
    assert reprint.status_code == 422 and "reprint needs a reason" in reprint.text
    session.rollback()
    product = session.scalar(select(FinalProduct))
    assert product is not None and product.status == "awaiting_release"
    assert session.get(DoseOrder, order_id).status == "in_preparation"  # type: ignore[union-attr]
    assert audit_service.verify(session).ok


def test_cryovial_labels_print_apart_on_the_cryovial_stock(
    app: Flask, session: Session, world: World, study: StudyDefinition, subject: Subject, bench: Bench
) -> None:
    """Issue 9: a bank vial carries the intermediate product code, on its own (cryogenic, taller) stock."""
    batch = batches.start_batch(session, world.users["coordinator"], subject, study)
    session.commit()
    for step_key, iteration in STEP_SEQUENCE:
        run_step(session, world, study, batch, bench, step_key, iteration)
    batch_id = batch.id
    stored = session.scalars(
        select(Container).where(Container.kind == "cryovial", Container.status == "stored")
    ).all()
    flask = session.scalar(select(Container).where(Container.kind == "culture_flask"))
    assert stored and flask is not None
    flask_id = flask.scan_id
    session.rollback()
    tech = app.test_client()
    assert login(tech, "technician").status_code == 302
    assert "Print cryovial labels" in tech.get(f"/bench/batches/{batch_id}").text
    vials = tech.post(f"/bench/batches/{batch_id}/labels", data={"stock": "cryovial"})
    assert vials.status_code == 200 and vials.mimetype == "application/pdf"
    assert vials.data.count(b"/MediaBox [ 0 0 144 108 ]") == len(stored)  # 2 x 1.5 in
    # the other button prints the open flasks and tubes on the container stock: after banking, none
    rest = tech.post(f"/bench/batches/{batch_id}/labels")
    assert rest.status_code == 422 and "no container to label" in rest.text
    flask_label = tech.post(f"/bench/batches/{batch_id}/labels", data={"container": flask_id})
    assert flask_label.data.count(b"/MediaBox [ 0 0 144 72 ]") == 1  # 2 x 1 in
    mixed = tech.post(
        f"/bench/batches/{batch_id}/labels",
        data={"container": [stored[0].scan_id, flask_id], "reason": "smudged"},
    )
    assert mixed.status_code == 422
    assert "print the cryovials and the other containers separately" in mixed.text
