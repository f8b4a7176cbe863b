"""Demo data for a first look: sites, one account per role, and an enrolled subject. Safe to run twice."""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.study import service as study_service
from mfg.study.definition import load_study
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
            identity_service.create_user(
                session, actor, username=username, full_name=full_name, role=role, password=DEMO_PASSWORD
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
        study_service.enroll_subject(session, coordinator, study, form, DEMO_PASSWORD)
    return [(username, role) for username, _name, role in DEMO_USERS]
