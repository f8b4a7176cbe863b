"""Sites and subjects: enrollment assigns the chain-of-identity identifier. Nothing here commits."""

from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from labels import isbt128
from mfg import clock
from mfg.audit import service as audit_service
from mfg.audit.models import AuditEvent
from mfg.errors import NotFound, SignatureRefused, ValidationRefused
from mfg.identity import rules as identity_rules
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.study.definition import StudyDefinition
from mfg.study.models import SITE_KINDS, Site, Subject
from mfg.text import checked_text

_SERIAL_ALPHABET = string.ascii_uppercase + string.digits
# Identifying fields a coordinator may correct (with a reason); the COI and study never change.
CORRECTABLE_FIELDS = ("name", "date_of_birth", "medical_record_number", "consent_date", "site_id")


def create_site(
    session: Session,
    actor: str,
    *,
    code: str,
    name: str,
    kind: str,
    address: str,
    isbt_facility_id: str | None = None,
) -> Site:
    code = code.strip().upper()
    if not re.fullmatch(r"[A-Z0-9-]{2,20}", code):
        raise ValidationRefused(f"site code {code!r} must be 2-20 letters, digits or '-'", entity_type="site")
    if kind not in SITE_KINDS:
        raise ValidationRefused(
            f"site kind {kind!r} must be one of {', '.join(SITE_KINDS)}", entity_type="site"
        )
    if not name.strip() or not address.strip():
        raise ValidationRefused(
            "a site needs a name and an address: both are printed on labels", entity_type="site"
        )
    name = checked_text(name, "Site name", 200, entity_type="site")
    address = checked_text(address, "Site address", 1000, multiline=True, entity_type="site")
    if isbt_facility_id:
        try:
            isbt128.build_din(isbt_facility_id, 0, 1)
        except isbt128.InvalidCode as exc:
            raise ValidationRefused(
                f"ISBT 128 facility id {isbt_facility_id!r} is not valid: {exc}", entity_type="site"
            ) from exc
    if session.scalar(select(Site.id).where(Site.code == code)):
        raise ValidationRefused(f"site {code} already exists", entity_type="site")
    site = Site(
        code=code,
        name=name,
        kind=kind,
        address=address,
        isbt_facility_id=isbt_facility_id or None,
        active=True,
    )
    return audit_service.create(session, actor, site)


def clinical_sites(session: Session) -> list[Site]:
    return list(session.scalars(select(Site).where(Site.kind == "clinical", Site.active).order_by(Site.name)))


def get_subject(session: Session, subject_id: int) -> Subject:
    subject = session.get(Subject, subject_id)
    if subject is None:
        raise NotFound(f"no subject with record number {subject_id}", entity_type="subject")
    return subject


def find_subject_by_coi(session: Session, scanned: str) -> Subject:
    """A scanned COI barcode (or the identifier typed with its check character) leads to one subject."""
    try:
        parsed = isbt128.parse(scanned) if scanned.startswith("&/") else isbt128.parse_coi_identifier(scanned)
    except isbt128.InvalidCode as exc:
        raise ValidationRefused(
            f"{scanned!r} is not a chain of identity identifier: {exc}", entity_type="subject"
        ) from exc
    if not isinstance(parsed, isbt128.ChainOfIdentity):
        raise ValidationRefused(f"{scanned!r} is not a chain of identity identifier", entity_type="subject")
    subject = session.scalar(select(Subject).where(Subject.coi_identifier == parsed.identifier))
    if subject is None:
        raise NotFound(f"no subject has chain of identity {parsed.identifier}", entity_type="subject")
    return subject


def coi_of(subject: Subject) -> isbt128.ChainOfIdentity:
    identifier = subject.coi_identifier
    return isbt128.build_coi(identifier[:5], int(identifier[5:7]), identifier[7:])


def _new_coi(session: Session, facility_id: str, year: int) -> isbt128.ChainOfIdentity:
    # Random rather than sequential: a COI says nothing about enrollment order or counts.
    for _ in range(20):
        serial = "".join(secrets.choice(_SERIAL_ALPHABET) for _ in range(6))
        coi = isbt128.build_coi(facility_id, year % 100, serial)
        if session.scalar(select(Subject.id).where(Subject.coi_identifier == coi.identifier)) is None:
            return coi
    raise RuntimeError("could not draw an unused chain of identity identifier")


@dataclass(frozen=True)
class EnrollmentForm:
    study_subject_id: str
    name: str
    date_of_birth: date
    medical_record_number: str
    site_id: int
    consent_date: date


def _checked_identity(
    session: Session, name: str, mrn: str, date_of_birth: date, consent_date: date, site_id: int
) -> dict[str, object]:
    """The rules for a subject's identifying data, at enrollment and at every correction alike."""
    name = " ".join(name.split())
    if len(name) < 2 or len(name) > 200:
        raise ValidationRefused(
            "the subject's full name is required (2-200 characters)", entity_type="subject"
        )
    name = checked_text(name, "The subject's full name", 200, entity_type="subject")
    mrn = mrn.strip()
    if not re.fullmatch(r"[A-Za-z0-9-]{3,40}", mrn):
        raise ValidationRefused(
            "the medical record number must be 3-40 letters, digits or '-'", entity_type="subject"
        )
    today = clock.today()
    if date_of_birth >= today or date_of_birth.year < 1900:
        raise ValidationRefused(
            f"date of birth {date_of_birth.isoformat()} is not possible", entity_type="subject"
        )
    if consent_date > today:
        raise ValidationRefused(
            f"consent date {consent_date.isoformat()} is in the future", entity_type="subject"
        )
    if consent_date < date_of_birth:
        raise ValidationRefused("consent date is before the date of birth", entity_type="subject")
    site = session.get(Site, site_id)
    if site is None or site.kind != "clinical" or not site.active:
        raise ValidationRefused(
            "choose the clinical site where the subject was consented", entity_type="subject"
        )
    return {
        "name": name,
        "medical_record_number": mrn,
        "date_of_birth": date_of_birth,
        "consent_date": consent_date,
        "site_id": site.id,
    }


def enroll_subject(
    session: Session, coordinator: User, study: StudyDefinition, form: EnrollmentForm, password: str
) -> Subject:
    """Create the subject with its COI identifier; the coordinator signs the enrollment as performed."""
    identity_service.require_can_act(coordinator)
    if coordinator.role != identity_rules.COORDINATOR:
        raise ValidationRefused("only a clinical site coordinator enrolls subjects", entity_type="subject")
    study_subject_id = form.study_subject_id.strip().upper()
    problem = study.subject_id_problem(study_subject_id)
    if problem:
        raise ValidationRefused(problem, entity_type="subject")
    checked = _checked_identity(
        session, form.name, form.medical_record_number, form.date_of_birth, form.consent_date, form.site_id
    )
    existing = session.scalar(
        select(Subject.id).where(
            Subject.study_code == study.code, Subject.study_subject_id == study_subject_id
        )
    )
    if existing is not None:
        raise ValidationRefused(
            f"{study_subject_id} is already enrolled in {study.code}",
            entity_type="subject",
            entity_id=str(existing),
        )
    coi = _new_coi(session, study.facility.isbt_facility_id, clock.local_now().year)
    subject = Subject(
        study_code=study.code,
        study_subject_id=study_subject_id,
        name=checked["name"],
        date_of_birth=checked["date_of_birth"],
        medical_record_number=checked["medical_record_number"],
        site_id=checked["site_id"],
        consent_date=checked["consent_date"],
        status="enrolled",
        coi_identifier=coi.identifier,
        enrolled_at=clock.now(),
        enrolled_by_id=coordinator.id,
    )
    audit_service.create(session, coordinator.username, subject)
    identity_service.sign(session, coordinator, password, "performed", subject, comment="enrollment")
    return subject


def correct_subject(
    session: Session, user: User, subject: Subject, reason: str, **values: object
) -> audit_service.Changes:
    """Correct identifying data. The old value stays in the trail, and earlier signatures show as invalid."""
    identity_service.require_can_act(user)
    unknown = set(values) - set(CORRECTABLE_FIELDS)
    if unknown:
        raise ValidationRefused(
            f"{', '.join(sorted(unknown))} cannot be corrected",
            entity_type="subject",
            entity_id=str(subject.id),
        )
    merged = {field: getattr(subject, field) for field in CORRECTABLE_FIELDS} | values
    try:
        checked = _checked_identity(
            session,
            str(merged["name"]),
            str(merged["medical_record_number"]),
            merged["date_of_birth"],
            merged["consent_date"],
            merged["site_id"],
        )  # type: ignore[arg-type]
    except ValidationRefused as exc:
        exc.entity_id = str(subject.id)
        raise
    corrected = {field: checked[field] for field in values}
    return audit_service.update(session, user.username, subject, reason=reason, action="correct", **corrected)


def verify_enrollment(
    session: Session, verifier: User, password: str, subject: Subject, *, seen: str | None = None
) -> None:
    """A second person checks the subject's identity data against the source documents."""
    identity_service.require_can_act(verifier)
    if verifier.role not in (identity_rules.COORDINATOR, identity_rules.INVESTIGATOR):
        raise SignatureRefused(
            f"{verifier.username} ({verifier.role}) cannot verify an enrollment: "
            "a coordinator or investigator must",
            entity_type="subject",
            entity_id=str(subject.id),
        )
    enroller = session.get(User, subject.enrolled_by_id)
    identity_rules.require_different_person(
        enroller.username if enroller else "",
        verifier.username,
        f"the enrollment of {subject.study_subject_id}",
    )
    corrector = session.scalar(
        select(AuditEvent.actor)
        .where(
            AuditEvent.entity_type == "subject",
            AuditEvent.entity_id == str(subject.id),
            AuditEvent.action == "correct",
        )
        .order_by(AuditEvent.id.desc())
        .limit(1)
    )
    if corrector == verifier.username:
        raise SignatureRefused(
            f"{verifier.username} corrected {subject.study_subject_id}'s identity data: another person "
            "verifies the correction",
            entity_type="subject",
            entity_id=str(subject.id),
        )
    identity_service.sign(
        session, verifier, password, "verified", subject, comment="enrollment verified", seen=seen
    )


def enrollment_verified(session: Session, subject: Subject) -> bool:
    """A second person's verification of the identity data as they are now (a correction since voids it)."""
    return any(
        view.valid and view.signature.meaning == "verified"
        for view in identity_service.signatures_for(session, subject)
    )
