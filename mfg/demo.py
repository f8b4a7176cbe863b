"""Demo data for a first look: sites, accounts, registers, an approved MBR, and a batch part-way through
expansion. Safe to run twice. The same in-spec step values drive the tests of the full batch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from labels.data import parse_din
from mfg import clock
from mfg.custody.models import Container
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.materials import service as materials_service
from mfg.materials.models import Equipment, ReagentLot
from mfg.process import batches, steps, versions, workstations
from mfg.process.mbr import packaged_mbr_text
from mfg.process.models import Batch, MbrVersion, Workstation
from mfg.study import service as study_service
from mfg.study.definition import StudyDefinition, load_study
from mfg.study.models import Site, Subject

DEMO_PASSWORD = "demo-password"

DEMO_USERS: tuple[tuple[str, str, str], ...] = (
    ("coord", "Casey Coordinator", "coordinator"),
    ("coord2", "Corey Second-Coordinator", "coordinator"),
    ("inv", "Dr. Ines Investigator", "investigator"),
    ("tech", "Taylor Technician", "technician"),
    ("tech2", "Toni Second-Technician", "technician"),
    ("super", "Sam Supervisor", "supervisor"),
    ("qc", "Quinn QC-Analyst", "qc_analyst"),
    ("qa", "Alex QA-Reviewer", "qa"),
    ("pharm", "Pat Pharmacist", "pharmacist"),
    ("nurse", "Noa Nurse", "nurse"),
    ("admin", "Ari Administrator", "admin"),
)

DEMO_SITES: tuple[tuple[str, str, str, str, str | None], ...] = (
    (
        "HCTL",
        "Human Cellular Therapy Laboratory (DEMO)",
        "manufacturing",
        "200 First Street SW\nRochester, MN 55905, USA",
        "A9999",
    ),
    (
        "RST",
        "Rochester clinical site (DEMO)",
        "clinical",
        "200 First Street SW\nRochester, MN 55905, USA",
        None,
    ),
    (
        "JAX",
        "Jacksonville clinical site (DEMO)",
        "clinical",
        "4500 San Pablo Road\nJacksonville, FL 32224, USA",
        None,
    ),
    (
        "SCT",
        "Scottsdale clinical site (DEMO)",
        "clinical",
        "13400 East Shea Boulevard\nScottsdale, AZ 85259, USA",
        None,
    ),
)


def seed_demo(session: Session, actor: str) -> list[tuple[str, str]]:
    """Create whatever part of the demo data is missing. Returns (username, role) of the demo accounts."""
    for code, name, kind, address, facility_id in DEMO_SITES:
        if session.scalar(select(Site.id).where(Site.code == code)) is None:
            study_service.create_site(
                session, actor, code=code, name=name, kind=kind, address=address, isbt_facility_id=facility_id
            )
    for username, full_name, role in DEMO_USERS:
        if session.scalar(select(User.id).where(User.username == username)) is None:
            # Ready to use: the demo's published password is the point, nobody signs anything real with it.
            identity_service.create_user(
                session,
                actor,
                username=username,
                full_name=full_name,
                role=role,
                password=DEMO_PASSWORD,
                one_time=False,
            )
    study = load_study()
    if session.scalar(select(Subject.id).where(Subject.study_subject_id == "ALS-001")) is None:
        coordinator = session.scalar(select(User).where(User.username == "coord"))
        site = session.scalar(select(Site).where(Site.code == "RST"))
        assert coordinator is not None and site is not None
        form = study_service.EnrollmentForm(
            study_subject_id="ALS-001",
            name="Jordan Demo-Subject",
            date_of_birth=date(1961, 4, 12),
            medical_record_number="MRN-0042117",
            site_id=site.id,
            consent_date=date(2026, 10, 1),
        )
        enrolled = study_service.enroll_subject(session, coordinator, study, form, DEMO_PASSWORD)
        investigator = session.scalar(select(User).where(User.username == "inv"))
        assert investigator is not None
        study_service.verify_enrollment(session, investigator, DEMO_PASSWORD, enrolled)
    if session.scalar(select(Workstation.id)) is None:
        qa = session.scalar(select(User).where(User.username == "qa"))
        supervisor = session.scalar(select(User).where(User.username == "super"))
        assert qa is not None and supervisor is not None
        set_up_bench(session, qa, DEMO_PASSWORD, actor, supervisor)
    subject = session.scalar(select(Subject).where(Subject.study_subject_id == "ALS-001"))
    if subject is not None and session.scalar(select(Batch.id).where(Batch.subject_id == subject.id)) is None:
        _demo_batch(session, subject, study)
    return [(username, role) for username, _name, role in DEMO_USERS]


DEMO_USER_FOR_ROLE = {"coordinator": "coord", "technician": "tech", "supervisor": "super", "qc_analyst": "qc"}
DEMO_STEPS_DONE = 8  # collection to the first passage: the demo batch is part-way through expansion


def _demo_batch(session: Session, subject: Subject, study: StudyDefinition) -> None:
    users = {u.username: u for u in session.scalars(select(User))}
    batch = batches.start_batch(session, users["coord"], subject, study)
    cabinet = session.scalar(select(Workstation).where(Workstation.code == "BSC-01"))
    assert cabinet is not None
    for step_key, iteration in STEP_SEQUENCE[:DEMO_STEPS_DONE]:
        performer = users[DEMO_USER_FOR_ROLE[PERFORMER.get(step_key, "technician")]]
        if batches.batch_mbr(session, batch).step(step_key).at_workstation:
            workstations.open_at_workstation(session, performer, cabinet, batch)
        record = steps.record_step(
            session,
            performer,
            DEMO_PASSWORD,
            batch,
            step_key,
            steps.StepSubmission(step_values(session, batch, step_key, clock.now(), iteration)),
            study,
            cabinet,
        )
        if record.status == "awaiting_verification":
            verifier = users["super" if performer.username != "super" else "tech2"]
            steps.verify_step(session, verifier, DEMO_PASSWORD, record)


@dataclass
class Bench:
    mbr: MbrVersion
    lots: dict[str, ReagentLot]
    equipment: dict[str, Equipment]
    cabinet: Workstation
    cabinet2: Workstation


def set_up_bench(
    session: Session, qa: User, password: str, actor: str = "test-setup", supervisor: User | None = None
) -> Bench:
    """Register and approve the MBR, lots (released by ``qa``, signed; two deliberately unusable), equipment
    with its calibration records
    (signed by ``supervisor``, by default the first supervisor on record; CEN-OLD's is past due) and two
    cabinets."""
    mbr = versions.register_mbr(session, actor, packaged_mbr_text())
    if mbr.status == "draft":
        versions.approve_mbr(session, qa, password, mbr)
    dose_mbr = versions.register_mbr(session, actor, packaged_mbr_text("aamsc_dose"))
    if dose_mbr.status == "draft":
        versions.approve_mbr(session, qa, password, dose_mbr)
    far = clock.today() + timedelta(days=365)
    lots = {}
    for code, name in [
        ("LOT-COLL-1", "Collagenase type I"),
        ("LOT-MEM-1", "Advanced MEM"),
        ("LOT-HPL-1", "Human platelet lysate"),
        ("LOT-CRYO-1", "Cryomedium CS10"),
        ("LOT-LR-1", "Lactated Ringer's Injection, USP"),
        ("LOT-SYR-1", "Syringe 10 mL, sterile, Luer lock"),
    ]:
        lots[code] = materials_service.register_lot(
            session,
            actor,
            scan_code=code,
            name=name,
            catalogue_number="CAT-" + code[-6:],
            lot_number=code + "X",
            expiry_date=far,
        )
        materials_service.set_lot_status(
            session, qa, password, lots[code], "released", "certificate of analysis reviewed"
        )
    # Released while in date, expired yesterday: seeded as released, since nobody may sign a release of an
    # expired lot today (its register row says it has no signature on record).
    lots["LOT-COLL-OLD"] = materials_service.register_lot(
        session,
        actor,
        scan_code="LOT-COLL-OLD",
        name="Collagenase type I",
        catalogue_number="CAT-1",
        lot_number="OLD1",
        expiry_date=clock.today() - timedelta(days=1),
        status="released",
    )
    lots["LOT-COLL-Q"] = materials_service.register_lot(
        session,
        actor,
        scan_code="LOT-COLL-Q",
        name="Collagenase type I",
        catalogue_number="CAT-1",
        lot_number="Q1",
        expiry_date=far,
        status="quarantined",
    )
    supervisor = supervisor or session.scalar(
        select(User).where(User.role == "supervisor", User.active).order_by(User.id).limit(1)
    )
    assert supervisor is not None, "a supervisor signs the equipment's calibrations"
    equipment = {}
    for tag, kind in [
        ("BSC-01", "biosafety cabinet"),
        ("BSC-02", "biosafety cabinet"),
        ("INC-01", "incubator"),
        ("CEN-01", "centrifuge"),
        ("CRF-01", "controlled-rate freezer"),
        ("WB-01", "water bath"),
    ]:
        equipment[tag] = materials_service.register_equipment(
            session, actor, asset_tag=tag, equipment_type=kind, description=kind
        )
        _calibrate(session, supervisor, password, equipment[tag], clock.today() - timedelta(days=30), far)
    # calibrated a year ago, due three days ago: the terminal refuses it
    equipment["CEN-OLD"] = materials_service.register_equipment(
        session, actor, asset_tag="CEN-OLD", equipment_type="centrifuge", description="old centrifuge"
    )
    _calibrate(
        session,
        supervisor,
        password,
        equipment["CEN-OLD"],
        clock.today() - timedelta(days=368),
        clock.today() - timedelta(days=3),
    )
    cabinet = workstations.register_workstation(session, actor, "BSC-01", "Cabinet 1")
    cabinet2 = workstations.register_workstation(session, actor, "BSC-02", "Cabinet 2")
    return Bench(mbr=mbr, lots=lots, equipment=equipment, cabinet=cabinet, cabinet2=cabinet2)


def _calibrate(
    session: Session, supervisor: User, password: str, item: Equipment, calibrated_on: date, next_due: date
) -> None:
    certificate = f"CAL-DEMO-{item.asset_tag}-{calibrated_on:%Y%m%d}"
    materials_service.record_calibration(
        session,
        supervisor,
        password,
        item,
        materials_service.CalibrationEntry(calibrated_on, next_due, certificate, "pass"),
    )


def local(dt: datetime) -> str:
    """What a datetime-local input sends: the facility's wall-clock time."""
    return clock.to_local(dt).strftime("%Y-%m-%dT%H:%M")


def _cabinet_of(session: Session, batch: Batch) -> str:
    """The cabinet the batch is open at (a step scans the terminal's own cabinet)."""
    code = session.scalar(select(Workstation.code).where(Workstation.current_batch_id == batch.id))
    return code or "BSC-01"


def open_container(session: Session, batch: Batch, kind: str) -> str:
    container = session.scalar(
        select(Container)
        .where(Container.din == batch.din, Container.kind == kind, Container.status == "in_use")
        .order_by(Container.id)
    )
    assert container is not None, f"no open {kind} in batch {batch.din}"
    return container.scan_id


def step_values(
    session: Session, batch: Batch, step_key: str, now: datetime, iteration: int = 1
) -> dict[str, str]:
    """In-specification values for each step; container fields take the batch's real containers."""
    if step_key == "collection.harvest":
        return {
            "collected_at": local(now - timedelta(hours=20)),
            "tissue_weight": "1.5",
            "collector": "Dr. Fat",
            "label_checked": "yes",
        }
    if step_key == "collection.handoff":
        return {
            "tissue_tube": open_container(session, batch, "tissue_tube"),
            "courier": "Quick Courier",
            "shipper_temperature": "18",
            "seal_intact": "yes",
        }
    if step_key == "receipt.accept":
        return {
            "tissue_tube": open_container(session, batch, "tissue_tube"),
            "arrival_temperature": "15",
            "condition": "intact",
            "decision": "accept",
        }
    if step_key == "processing.digest":
        return {
            "cabinet": _cabinet_of(session, batch),
            "tissue_tube": open_container(session, batch, "tissue_tube"),
            "collagenase_lot": "LOT-COLL-1",
            "collagenase_concentration": "0.075",
            "incubator": "INC-01",
            "digestion_temperature": "37",
            "digestion_minutes": "90",
        }
    if step_key == "processing.separate":
        return {"centrifuge": "CEN-01", "g_force": "400", "spin_minutes": "5", "strained": "yes"}
    if step_key == "processing.svf_count":
        return {"svf_viable_cells": "2.4e6", "svf_viability": "85"}
    if step_key == "processing.plate_p0":
        return {
            "medium_lot": "LOT-MEM-1",
            "platelet_lysate_lot": "LOT-HPL-1",
            "seeded_cells": "1.0e6",
            "seeding_density": "1500",
            "flasks": "2",
            "seeded_at": local(now - timedelta(hours=10)),
        }
    if step_key == "expansion.passage":
        harvested = {1: "8.0e6", 2: "6.4e7", 3: "5.12e8"}[iteration]
        replated = {1: "2.0e6", 2: "1.6e7", 3: "0"}[iteration]
        flasks = {1: "4", 2: "8", 3: "0"}[iteration]
        return {
            "flask": open_container(session, batch, "culture_flask"),
            "harvested_at": local(now - timedelta(hours=10 - 3 * iteration)),
            "confluence": "85",
            "harvested_cells": harvested,
            "viability": "95",
            "replated_cells": replated,
            "flasks": flasks,
        }
    if step_key == "cryobank.freeze":
        return {
            "final_viable_cells": "5.0e8",
            "viability": "93",
            "cryomedium_lot": "LOT-CRYO-1",
            "freezer": "CRF-01",
            "vials": "10",
            "cells_per_vial": "5.0e7",
            "storage_location": "LN2 tank 2 / rack B / box 4",
        }
    if step_key == "cryobank.bank_tests":
        return {
            "sterility": "pending",
            "mycoplasma": "not detected",
            "endotoxin": "0.1",
            "identity": "conforms",
        }
    if step_key == "cryobank.close":
        return {"sufficiency_reviewed": "yes", "comment": ""}
    if step_key.startswith("dose."):
        return _dose_step_values(session, batch, step_key, now)
    raise KeyError(step_key)


def _dose_step_values(session: Session, batch: Batch, step_key: str, now: datetime) -> dict[str, str]:
    """Stage 6 in specification: 2 vials of 5e7 thawed with 70 % recovery, 1.4e7 viable cells/mL."""
    from mfg.dosing import bank, preparation

    study = load_study()
    if step_key == "dose.thaw":
        order = preparation.order_of(session, batch)
        subject = session.get(Subject, batch.subject_id)
        assert subject is not None
        vials = bank.bank_status(session, subject, study, order).vials_to_thaw
        return {
            "vials": " ".join(vials),
            "water_bath": "WB-01",
            "thaw_minutes": "2",
            "thawed_at": local(now),
        }
    if step_key == "dose.wash":
        return {"lr_lot": "LOT-LR-1", "centrifuge": "CEN-01", "resuspension_volume": "5"}
    if step_key == "dose.count":
        return {"count_1": "1.40e7", "count_2": "1.38e7", "count_3": "1.42e7", "viability": "92"}
    if step_key == "dose.fill":
        plan = preparation.fill_plan(session, batch, study)
        return {
            "syringe_lot": "LOT-SYR-1",
            "lr_lot": "LOT-LR-1",
            "suspension_drawn": f"{plan.suspension_ml}",
            "diluent_added": f"{plan.diluent_ml}",
        }
    if step_key == "dose.predilute":
        return {
            "lr_lot": "LOT-LR-1",
            "suspension_volume": "1.0",
            "diluent_volume": "4.0",
            "count_1": "1.00e7",
            "count_2": "1.02e7",
            "count_3": "",
            "viability": "92",
        }
    if step_key == "dose.inspect":
        return {"no_clumps": "yes", "no_particles": "yes", "no_leak": "yes"}
    if step_key == "dose.final_count":
        product = preparation.product_of(session, batch)
        assert product is not None
        # the concentration in the syringe as planned, counted twice (0.5 % apart)
        concentration = product.expected_cells / product.final_volume_ml
        return {
            "post_fill_count": f"{concentration * 1.0025:.4g}",
            "post_fill_count_2": f"{concentration * 0.9975:.4g}",
            "post_fill_count_3": "",
            "viability": "91",
        }
    if step_key == "dose.label":
        printed = preparation.labels_printed(session, batch)
        return {"labels_checked": "yes", "labels_applied": str(printed), "labels_destroyed": "0"}
    raise KeyError(step_key)


DOSE_STEPS = (
    "dose.thaw",
    "dose.wash",
    "dose.count",
    "dose.fill",
    "dose.inspect",
    "dose.final_count",
    "dose.label",
)


# Who performs and who verifies each step in the reference scenario.
PERFORMER = {
    "collection.harvest": "coordinator",
    "collection.handoff": "coordinator",
    "cryobank.bank_tests": "qc_analyst",
    "cryobank.close": "supervisor",
}
STEP_SEQUENCE = [
    ("collection.harvest", 1),
    ("collection.handoff", 1),
    ("receipt.accept", 1),
    ("processing.digest", 1),
    ("processing.separate", 1),
    ("processing.svf_count", 1),
    ("processing.plate_p0", 1),
    ("expansion.passage", 1),
    ("expansion.passage", 2),
    ("expansion.passage", 3),
    ("cryobank.freeze", 1),
    ("cryobank.bank_tests", 1),
    ("cryobank.close", 1),
]


# --- the reference scenario (mfg demo --out DIR) --------------------------------------------------------


def _next_subject_id(session: Session) -> str:
    taken = set(session.scalars(select(Subject.study_subject_id)))
    return next(f"ALS-{n:03d}" for n in range(2, 1000) if f"ALS-{n:03d}" not in taken)


def _run_steps(
    session: Session,
    users: dict[str, User],
    batch: Batch,
    sequence: Sequence[tuple[str, int]],
    study: StudyDefinition,
    cabinet: Workstation,
) -> None:
    for step_key, iteration in sequence:
        role = PERFORMER.get(step_key, "technician")
        performer = users[DEMO_USER_FOR_ROLE[role]]
        if batches.batch_mbr(session, batch).step(step_key).at_workstation:
            workstations.open_at_workstation(session, performer, cabinet, batch)
        values = step_values(session, batch, step_key, clock.now(), iteration)
        record = steps.record_step(
            session,
            performer,
            DEMO_PASSWORD,
            batch,
            step_key,
            steps.StepSubmission(values),
            study,
            cabinet,
        )
        if record.status == "awaiting_verification":
            verifier = users["super" if performer.username != "super" else "tech2"]
            steps.verify_step(session, verifier, DEMO_PASSWORD, record)


def run_reference_scenario(
    session: Session, out: Path, actor: str
) -> tuple[dict[str, Any], dict[Path, bytes]]:
    """Enroll, collect, process, expand, bank, order 5e7, prepare the dose, print labels: the whole story
    through the service layer, in the caller's one unit of work. Returns the summary ``mfg demo`` prints and
    the label PDFs to write once it is committed."""
    from mfg.custody import labels as container_labels
    from mfg.dosing import preparation, product_labels
    from mfg.dosing import service as order_service

    study = load_study()
    seed_demo(session, actor)
    users = {u.username: u for u in session.scalars(select(User))}
    site = session.scalar(select(Site).where(Site.code == "RST"))
    assert site is not None
    form = study_service.EnrollmentForm(
        study_subject_id=_next_subject_id(session),
        name="Morgan Reference-Scenario",
        date_of_birth=date(1968, 9, 30),
        medical_record_number="MRN-7700123",
        site_id=site.id,
        consent_date=clock.today(),
    )
    subject = study_service.enroll_subject(session, users["coord"], study, form, DEMO_PASSWORD)
    study_service.verify_enrollment(session, users["inv"], DEMO_PASSWORD, subject)
    batch = batches.start_batch(session, users["coord"], subject, study)
    cabinet = session.scalar(select(Workstation).where(Workstation.code == "BSC-02"))
    assert cabinet is not None
    if cabinet.current_batch_id is not None:
        workstations.clear_line(session, users["tech"], DEMO_PASSWORD, cabinet)
    _run_steps(session, users, batch, STEP_SEQUENCE, study, cabinet)
    vials = session.scalars(
        select(Container)
        .where(Container.din == batch.din, Container.kind == "cryovial")
        .order_by(Container.id)
    ).all()
    files = {
        out / "cryovial-labels.pdf": container_labels.print_container_labels(
            session, users["tech"], vials, "", study
        )
    }
    order = order_service.place_order(
        session,
        users["inv"],
        DEMO_PASSWORD,
        subject,
        study,
        injection_number=1,
        dose_cells=study.dosing.first_dose,
        body_weight_kg=72.5,
        first_due=clock.today() + timedelta(days=1),
        change_reason=None,
    )
    dose_batch = preparation.start_preparation(session, users["tech"], order, study)
    cabinet = session.scalar(select(Workstation).where(Workstation.code == "BSC-02"))
    assert cabinet is not None
    if cabinet.current_batch_id not in (None, dose_batch.id):
        holder = session.get(Batch, cabinet.current_batch_id)
        if holder is not None and holder.subject_id != subject.id:
            workstations.clear_line(session, users["tech"], DEMO_PASSWORD, cabinet)
    _run_steps(session, users, dose_batch, [(k, 1) for k in DOSE_STEPS[:-1]], study, cabinet)
    product = preparation.product_of(session, dose_batch)
    assert product is not None
    syringe_pdf = product_labels.print_product_labels(session, users["tech"], product, study, "")
    shipper_pdf = product_labels.print_product_labels(
        session, users["tech"], product, study, "", kind="shipper"
    )
    files[out / "syringe-label.pdf"] = syringe_pdf
    files[out / "shipper-label.pdf"] = shipper_pdf
    _run_steps(session, users, dose_batch, [("dose.label", 1)], study, cabinet)
    label = product_labels.syringe_label(session, product, study)
    from labels.data import barcode_strings
    from mfg.study.service import coi_of

    din = parse_din(product.din)
    coi = coi_of(subject)
    summary: dict[str, Any] = {
        "subject": {
            "study_subject_id": subject.study_subject_id,
            "coi": coi.identifier,
            "coi_check_character": coi.check_character,
            "wristband": coi.code,
        },
        "dose": {
            "prescribed_cells": product.prescribed_cells,
            "delivered_cells": product.delivered_cells,
            "final_volume_ml": product.final_volume_ml,
            "status": product.status,
        },
        "syringe": {
            "din": din.din,
            "din_code": product.din,
            "din_check_character": din.check_character,
            "product_code": product.product_code,
            "expiry": product_labels.expiry_local(product, study).isoformat(timespec="minutes"),
            "barcodes": barcode_strings(label),
        },
        "files": [str(path) for path in files],
    }
    return summary, files
