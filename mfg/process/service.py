"""Batches executing an approved master batch record: steps, verification, corrections, deviations and
line clearance. Every function writes its audit events and none commits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody import service as custody_service
from mfg.custody.models import Container
from mfg.dosing import preparation
from mfg.errors import NotFound, PermissionRefused, Refusal, SignatureRefused, ValidationRefused
from mfg.identity import rules as identity_rules
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.materials import service as materials_service
from mfg.materials.models import EquipmentUse, MaterialUse
from mfg.process import rules
from mfg.process.expansion import Passage
from mfg.process.mbr import COMPUTED_TYPES, FieldDef, MasterBatchRecord, StepDef, parse_mbr
from mfg.process.models import (
    Batch,
    Deviation,
    FieldValue,
    LineClearance,
    MbrVersion,
    StepRecord,
    Workstation,
)
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject


class BatchStopped(Refusal):
    """The batch is on hold (critical deviation not yet assessed) or finished."""


class StepOrderRefused(Refusal):
    """The step cannot be recorded now: an earlier step is not done, or this one is complete."""


class MissingFields(ValidationRefused):
    """Required fields are empty; the message lists them."""


# --- master batch records -------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _parsed(definition: str) -> MasterBatchRecord:
    return parse_mbr(definition)


def mbr_of(version: MbrVersion) -> MasterBatchRecord:
    return _parsed(version.definition)


def register_mbr(session: Session, actor: str, definition: str) -> MbrVersion:
    """Store an MBR version as a draft; the same text twice is a no-op, changed text needs a new version."""
    mbr = parse_mbr(definition)
    existing = session.scalar(
        select(MbrVersion).where(MbrVersion.code == mbr.code, MbrVersion.version == mbr.version)
    )
    if existing is not None:
        if existing.definition_sha256 != mbr.source_sha256:
            raise ValidationRefused(
                f"{mbr.code} version {mbr.version} is already registered with different content: "
                "give the changed master batch record a new version number",
                entity_type="mbr_version",
                entity_id=str(existing.id),
            )
        return existing
    version = MbrVersion(
        code=mbr.code,
        version=mbr.version,
        title=mbr.title,
        definition=definition,
        definition_sha256=mbr.source_sha256,
        status="draft",
        registered_at=clock.now(),
    )
    return audit_service.create(session, actor, version)


def approve_mbr(session: Session, approver: User, password: str, version: MbrVersion) -> None:
    if approver.role != identity_rules.QA:
        raise PermissionRefused(
            "only QA approves a master batch record", entity_type="mbr_version", entity_id=str(version.id)
        )
    if version.status != "draft":
        raise ValidationRefused(
            f"{version.code} v{version.version} is {version.status}, not a draft",
            entity_type="mbr_version",
            entity_id=str(version.id),
        )
    identity_service.sign(session, approver, password, "approved", version, comment="MBR approved for use")
    audit_service.update(
        session, approver.username, version, reason="approved by QA", action="approve", status="approved"
    )


def current_approved_mbr(session: Session, code: str) -> MbrVersion:
    version = session.scalar(
        select(MbrVersion)
        .where(MbrVersion.code == code, MbrVersion.status == "approved")
        .order_by(MbrVersion.version.desc())
        .limit(1)
    )
    if version is None:
        raise ValidationRefused(
            f"no approved version of {code}: QA must approve the master batch record first",
            entity_type="mbr_version",
        )
    return version


# --- batches --------------------------------------------------------------------------------------------


def start_batch(
    session: Session, user: User, subject: Subject, study: StudyDefinition, mbr_code: str = "AAMSC-MBR"
) -> Batch:
    """A collection begins a batch: it gets the collection's DIN, and keeps today's approved MBR version."""
    identity_service.require_can_act(user)
    if user.role not in ("coordinator", "supervisor"):
        raise PermissionRefused(
            "a coordinator (at collection) or a supervisor starts a batch", entity_type="batch"
        )
    if subject.status != "enrolled":
        raise ValidationRefused(
            f"{subject.study_subject_id} is {subject.status}: no new batch", entity_type="batch"
        )
    version = current_approved_mbr(session, mbr_code)
    open_batch = session.scalar(
        select(Batch.din).where(Batch.subject_id == subject.id, Batch.status.in_(("open", "on_hold")))
    )
    if open_batch is not None:
        raise ValidationRefused(
            f"{subject.study_subject_id} already has an open batch ({open_batch})", entity_type="batch"
        )
    din = custody_service.allocate_din(
        session, user.username, study.facility.isbt_facility_id, clock.local_now().year
    )
    batch = Batch(
        din=din.code,
        subject_id=subject.id,
        mbr_version_id=version.id,
        status="open",
        started_at=clock.now(),
        started_by_id=user.id,
    )
    return audit_service.create(session, user.username, batch)


def get_batch(session: Session, batch_id: int) -> Batch:
    batch = session.get(Batch, batch_id)
    if batch is None:
        raise NotFound(f"no batch {batch_id}", entity_type="batch")
    return batch


def batch_mbr(session: Session, batch: Batch) -> MasterBatchRecord:
    version = session.get(MbrVersion, batch.mbr_version_id)
    assert version is not None
    return mbr_of(version)


def _records(session: Session, batch: Batch) -> list[StepRecord]:
    return list(
        session.scalars(select(StepRecord).where(StepRecord.batch_id == batch.id).order_by(StepRecord.id))
    )


def progress_of(session: Session, batch: Batch) -> dict[str, rules.StepProgress]:
    progress: dict[str, rules.StepProgress] = {}
    for record in _records(session, batch):
        before = progress.get(record.step_key, rules.StepProgress())
        progress[record.step_key] = rules.StepProgress(
            count=before.count + 1,
            awaiting_verification=before.awaiting_verification or record.status == "awaiting_verification",
        )
    return progress


def current_values(session: Session, record: StepRecord) -> dict[str, FieldValue]:
    """The latest value of each field (corrections supersede; the old rows stay)."""
    rows = session.scalars(
        select(FieldValue).where(FieldValue.step_record_id == record.id).order_by(FieldValue.id)
    ).all()
    superseded = {row.supersedes_id for row in rows if row.supersedes_id is not None}
    return {row.field_key: row for row in rows if row.id not in superseded}


def value_history(session: Session, record: StepRecord) -> list[FieldValue]:
    return list(
        session.scalars(
            select(FieldValue).where(FieldValue.step_record_id == record.id).order_by(FieldValue.id)
        )
    )


def record_values_for_signature(session: Session, record: StepRecord) -> dict[str, str]:
    return {key: row.value for key, row in sorted(current_values(session, record).items())}


def _facility_zone(study: StudyDefinition) -> ZoneInfo:
    return clock.facility_zone()


def parse_local_datetime(raw: str, zone: ZoneInfo, label: str) -> datetime:
    """Bench times are typed in the facility's local time (a datetime-local input) and stored in UTC."""
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise rules.FieldInputError(f"{label}: {raw!r} is not a date and time (YYYY-MM-DD HH:MM)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


@dataclass
class _Entry:
    field: FieldDef
    parsed: rules.ParsedValue
    lot_id: int | None = None
    equipment_id: int | None = None
    container: Container | None = None
    containers: list[Container] = field(default_factory=list)


@dataclass
class StepSubmission:
    """What the technician typed or scanned, by field key, plus when the work was done."""

    values: Mapping[str, str]
    performed_at: str = ""  # empty: now


def _datetime_value(session: Session, batch: Batch, reference: str) -> datetime | None:
    step_key, _, field_key = reference.rpartition(".")
    record = session.scalar(
        select(StepRecord)
        .where(StepRecord.batch_id == batch.id, StepRecord.step_key == step_key)
        .order_by(StepRecord.iteration.desc())
        .limit(1)
    )
    if record is None:
        return None
    row = current_values(session, record).get(field_key)
    return datetime.fromisoformat(row.value) if row is not None else None


def _parse_entries(
    session: Session,
    batch: Batch,
    subject: Subject,
    step: StepDef,
    submission: StepSubmission,
    performed_at: datetime,
    zone: ZoneInfo,
    study: StudyDefinition,
) -> list[_Entry]:
    missing = [
        f.label
        for f in step.fields
        if f.type not in COMPUTED_TYPES and f.required and not submission.values.get(f.key, "").strip()
    ]
    if missing:
        raise MissingFields(
            f"still missing: {', '.join(missing)}", entity_type="batch", entity_id=str(batch.id)
        )
    entries: list[_Entry] = []
    on = performed_at.astimezone(zone).date()
    for f in step.fields:
        raw = submission.values.get(f.key, "").strip()
        if f.type == "elapsed_hours":
            since = _datetime_value(session, batch, f.since)
            if since is None:
                raise ValidationRefused(
                    f"{f.label}: the time it counts from ({f.since}) is not recorded",
                    entity_type="batch",
                    entity_id=str(batch.id),
                )
            hours = (performed_at - since).total_seconds() / 3600
            entries.append(_Entry(f, rules.ParsedValue(f"{hours:.2f}", round(hours, 2))))
            continue
        if f.type in COMPUTED_TYPES or not raw:
            continue
        try:
            if f.type == "number" and not f.plan:
                entries.append(_Entry(f, rules.parse_number(f, raw)))
            elif f.type == "choice":
                entries.append(_Entry(f, rules.parse_choice(f, raw)))
            elif f.type == "check":
                entries.append(_Entry(f, rules.parse_check(f, raw)))
            elif f.type == "datetime":
                when = parse_local_datetime(raw, zone, f.label)
                if when > clock.now() + timedelta(minutes=5):
                    raise rules.FieldInputError(f"{f.label}: {raw} is in the future")
                entries.append(_Entry(f, rules.ParsedValue(rules_iso(when))))
            elif f.type == "text":
                if len(raw) > 500:
                    raise rules.FieldInputError(f"{f.label}: longer than 500 characters")
                entries.append(_Entry(f, rules.ParsedValue(raw)))
            elif f.type == "number" and f.plan:
                entries.append(_plan_checked(session, batch, f, rules.parse_number(f, raw), study))
            elif f.type == "lot":
                lot = materials_service.usable_lot(session, raw, on=on, expected_material=f.material)
                entries.append(
                    _Entry(f, rules.ParsedValue(f"{lot.name} lot {lot.lot_number}"), lot_id=lot.id)
                )
            elif f.type == "equipment":
                item = materials_service.usable_equipment(session, raw, on=on, expected_type=f.equipment_type)
                entries.append(_Entry(f, rules.ParsedValue(item.asset_tag), equipment_id=item.id))
            elif f.type == "container":
                container = _batch_container(session, batch, subject, f, raw)
                entries.append(_Entry(f, rules.ParsedValue(container.scan_id), container=container))
            elif f.type == "container_list":
                scanned = list(dict.fromkeys(raw.replace(",", " ").split()))
                containers = [_batch_container(session, batch, subject, f, code) for code in scanned]
                entries.append(_Entry(f, rules.ParsedValue(" ".join(scanned)), containers=containers))
        except rules.FieldInputError as exc:
            raise ValidationRefused(str(exc), entity_type="batch", entity_id=str(batch.id)) from exc
    return entries + _computed_dose_entries(session, batch, step, entries, study)


def _computed_dose_entries(
    session: Session, batch: Batch, step: StepDef, entries: list[_Entry], study: StudyDefinition
) -> list[_Entry]:
    """Stage 6 values the system works out: the delivered dose and the label reconciliation."""
    from mfg.dosing import preparation

    typed = {e.field.key: e.parsed.number for e in entries}
    computed: list[_Entry] = []
    for f in step.fields:
        if f.type == "delivered_dose":
            count = typed.get("post_fill_count")
            assert count is not None  # a required field of the same step
            delivered, product = preparation.delivered_dose(session, batch, count)
            tolerance = study.dosing.tolerance
            checked = replace(
                f,
                low=product.prescribed_cells * (1 - tolerance),
                high=product.prescribed_cells * (1 + tolerance),
            )
            computed.append(_Entry(checked, rules.ParsedValue(f"{delivered:.4g}", delivered)))
        elif f.type == "label_reconciliation":
            printed = preparation.labels_printed(session, batch)
            applied = int(typed.get("labels_applied") or 0)
            destroyed = int(typed.get("labels_destroyed") or 0)
            balanced = printed == applied + destroyed
            text = (
                f"balanced: printed {printed} = applied {applied} + destroyed {destroyed}"
                if balanced
                else f"UNBALANCED: printed {printed}, applied {applied} + destroyed {destroyed}"
            )
            computed.append(_Entry(f, rules.ParsedValue(text)))
    return computed


def _batch_container(session: Session, batch: Batch, subject: Subject, f: FieldDef, raw: str) -> Container:
    """A scanned container must be this subject's, from this collection, of the right kind, and usable."""
    container = custody_service.find_container(session, raw)
    custody_service.require_same_subject(container, subject)
    if container.din != batch.din:
        raise custody_service.ChainOfIdentityRefused(
            f"STOP: container {container.scan_id} is not from this batch's collection "
            f"(DIN {container.din}, batch {batch.din})",
            entity_type="container",
            entity_id=str(container.id),
        )
    if container.kind != f.container_kind:
        raise ValidationRefused(
            f"{f.label}: {container.scan_id} is a {container.kind}, not a {f.container_kind}",
            entity_type="container",
            entity_id=str(container.id),
        )
    if container.status not in ("in_use", "stored"):
        raise ValidationRefused(
            f"{f.label}: container {container.scan_id} is {container.status}",
            entity_type="container",
            entity_id=str(container.id),
        )
    return container


def _plan_checked(
    session: Session, batch: Batch, f: FieldDef, value: rules.ParsedValue, study: StudyDefinition
) -> _Entry:
    """A volume checked against the fill plan: within one volume step of what the plan says."""
    from mfg.dosing import preparation

    try:
        plan = preparation.fill_plan(session, batch, study)
    except ValueError as exc:
        raise ValidationRefused(f"no fill plan: {exc}", entity_type="batch", entity_id=str(batch.id)) from exc
    target = float(getattr(plan, f.plan))
    step = study.dosing.volume_step_ml
    checked = replace(f, low=round(target - step, 6), high=round(target + step, 6))
    return _Entry(checked, value)


def rules_iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def _open_deviation(
    session: Session, actor: str, batch: Batch, record: StepRecord, entry: _Entry, step: StepDef
) -> Deviation:
    year = clock.local_now().year
    count = session.scalar(select(func.count()).select_from(Deviation)) or 0
    deviation = Deviation(
        number=f"DEV-{year}-{count + 1:04d}",
        batch_id=batch.id,
        step_record_id=record.id,
        subject_id=batch.subject_id,
        field_key=entry.field.key,
        description=f"{step.title}: {entry.field.label} {entry.parsed.text} {entry.field.unit}".strip()
        + f" is outside {entry.field.range_text}",
        value=entry.parsed.text,
        limit_text=entry.field.range_text or "specification",
        critical=entry.field.critical,
        status="open",
        opened_at=clock.now(),
    )
    audit_service.create(session, actor, deviation)
    if entry.field.critical and batch.status == "open":
        audit_service.update(
            session,
            actor,
            batch,
            reason=f"critical parameter out of range: {deviation.number}",
            action="hold",
            status="on_hold",
        )
    return deviation


def _require_workstation(
    session: Session, batch: Batch, step: StepDef, workstation: Workstation | None
) -> None:
    if not step.at_workstation:
        return
    if workstation is None:
        raise ValidationRefused(
            "scan the biosafety cabinet you work at before recording a lab step",
            entity_type="batch",
            entity_id=str(batch.id),
        )
    if workstation.current_batch_id != batch.id:
        raise ValidationRefused(
            f"open this batch at {workstation.code} before recording '{step.title}'",
            entity_type="batch",
            entity_id=str(batch.id),
        )


def record_step(
    session: Session,
    user: User,
    password: str,
    batch: Batch,
    step_key: str,
    submission: StepSubmission,
    study: StudyDefinition,
    workstation: Workstation | None = None,
) -> StepRecord:
    """Record one step: validate it all, write values, uses, containers and deviations, sign 'performed'."""
    identity_service.require_can_act(user)
    mbr = batch_mbr(session, batch)
    try:
        step = mbr.step(step_key)
    except KeyError as exc:
        raise NotFound(str(exc), entity_type="batch", entity_id=str(batch.id)) from exc
    if batch.status == "on_hold":
        raise BatchStopped(
            "the batch is STOPPED by a critical deviation: a supervisor must assess it first",
            entity_type="batch",
            entity_id=str(batch.id),
        )
    if batch.status != "open":
        raise BatchStopped(
            f"the batch is {batch.status}: no more steps", entity_type="batch", entity_id=str(batch.id)
        )
    if user.role not in step.roles:
        raise PermissionRefused(
            f"'{step.title}' is performed by {' or '.join(step.roles)}, not {user.role}",
            entity_type="batch",
            entity_id=str(batch.id),
        )
    problem = rules.step_problem(mbr, step, progress_of(session, batch))
    if problem:
        raise StepOrderRefused(problem, entity_type="batch", entity_id=str(batch.id))
    _require_workstation(session, batch, step, workstation)
    subject = session.get(Subject, batch.subject_id)
    assert subject is not None
    zone = _facility_zone(study)
    entered_at = clock.now()
    performed_at = entered_at
    if submission.performed_at.strip():
        try:
            performed_at = parse_local_datetime(submission.performed_at, zone, "Performed at")
        except rules.FieldInputError as exc:
            raise ValidationRefused(str(exc), entity_type="batch", entity_id=str(batch.id)) from exc
        if performed_at > entered_at + timedelta(minutes=5):
            raise ValidationRefused(
                "the step cannot have been performed in the future",
                entity_type="batch",
                entity_id=str(batch.id),
            )
    entries = _parse_entries(session, batch, subject, step, submission, performed_at, zone, study)

    iteration = progress_of(session, batch).get(step.key, rules.StepProgress()).count + 1
    record = StepRecord(
        batch_id=batch.id,
        step_key=step.key,
        iteration=iteration,
        status="awaiting_verification" if step.critical else "done",
        performed_by_id=user.id,
        performed_at=performed_at,
        entered_at=entered_at,
        late=rules.late_entry(performed_at, entered_at, mbr.late_entry_minutes),
        workstation_id=workstation.id if workstation and step.at_workstation else None,
    )
    audit_service.create(session, user.username, record)
    numbers: dict[str, float] = {}
    for entry in entries:
        spec_ok = rules.in_spec(entry.field, entry.parsed)
        audit_service.create(
            session,
            user.username,
            FieldValue(
                step_record_id=record.id,
                field_key=entry.field.key,
                value=entry.parsed.text,
                number=entry.parsed.number,
                unit=entry.field.unit,
                in_spec=spec_ok,
                entered_by_id=user.id,
                entered_at=entered_at,
            ),
        )
        if entry.parsed.number is not None:
            numbers[entry.field.key] = entry.parsed.number
        if entry.lot_id is not None:
            audit_service.create(
                session,
                user.username,
                MaterialUse(step_record_id=record.id, field_key=entry.field.key, reagent_lot_id=entry.lot_id),
            )
        if entry.equipment_id is not None:
            audit_service.create(
                session,
                user.username,
                EquipmentUse(
                    step_record_id=record.id, field_key=entry.field.key, equipment_id=entry.equipment_id
                ),
            )
        scanned = ([entry.container] if entry.container is not None else []) + entry.containers
        for container in scanned if entry.field.consume else []:
            audit_service.update(
                session,
                user.username,
                container,
                reason=f"used in {step.title}",
                action="consume",
                status="consumed",
            )
        if not spec_ok:
            _open_deviation(session, user.username, batch, record, entry, step)
    location = workstation.code if workstation and step.at_workstation else "clinical site"
    parents: list[Container] = []
    if step.consumes_open:
        parents = list(
            session.scalars(
                select(Container).where(
                    Container.din == batch.din,
                    Container.kind == step.consumes_open,
                    Container.status == "in_use",
                )
            )
        )
        for container in parents:
            audit_service.update(
                session,
                user.username,
                container,
                reason=f"used in {step.title}",
                action="consume",
                status="consumed",
            )
    parents += [e.container for e in entries if e.container is not None and e.field.consume]
    parents += [c for e in entries if e.field.consume for c in e.containers]
    if batch.dose_order_id is not None and step.creates and not parents:
        parents = preparation.thawed_vials(session, batch)
    storage = next((e.parsed.text for e in entries if e.field.key == "storage_location"), "")
    created: list[Container] = []
    for creates in step.creates:
        count = int(numbers.get(creates.count_field, creates.count)) if creates.count_field else creates.count
        if count < 0 or count > 200:
            raise ValidationRefused(
                f"cannot create {count} containers", entity_type="batch", entity_id=str(batch.id)
            )
        contents = creates.contents.replace("{iteration}", str(iteration))
        for _ in range(count):
            created.append(
                custody_service.create_container(
                    session,
                    user.username,
                    kind=creates.kind,
                    subject=subject,
                    contents=contents,
                    location=storage or location,
                    holder_id=user.id,
                    din=batch.din,
                    parents=parents,
                    status="stored" if creates.kind == "cryovial" else "in_use",
                )
            )
    if batch.dose_order_id is not None:
        _dose_follow_up(session, user, batch, step, entries, created, performed_at, study)
    identity_service.sign(session, user, password, "performed", record, comment=step.title)
    if step.closes_batch:
        audit_service.update(
            session,
            user.username,
            batch,
            reason=f"{step.title} completed",
            action="close",
            status="prepared" if batch.dose_order_id is not None else "cryobanked",
        )
        _release_workstations(session, user.username, batch)
        if batch.dose_order_id is not None:
            preparation.finish(session, user.username, batch)
    return record


def _dose_follow_up(
    session: Session,
    user: User,
    batch: Batch,
    step: StepDef,
    entries: list[_Entry],
    created: list[Container],
    performed_at: datetime,
    study: StudyDefinition,
) -> None:
    """Stage 6: filling makes the final product (expiry from formulation); the final count settles it."""
    syringes = [c for c in created if c.kind == "syringe"]
    if syringes:
        plan = preparation.fill_plan(session, batch, study)
        preparation.create_final_product(
            session, user.username, batch, syringes[0], performed_at, plan, study
        )
    delivered = next((e.parsed.number for e in entries if e.field.type == "delivered_dose"), None)
    if delivered is not None:
        preparation.settle_product(session, user.username, batch, delivered, study)


def _release_workstations(session: Session, actor: str, batch: Batch) -> None:
    for workstation in session.scalars(select(Workstation).where(Workstation.current_batch_id == batch.id)):
        audit_service.update(session, actor, workstation, reason="batch closed", current_batch_id=None)


def verify_step(session: Session, verifier: User, password: str, record: StepRecord) -> None:
    """Second-person verification of a critical step, at the same terminal, with the verifier's password."""
    identity_service.require_can_act(verifier)
    batch = get_batch(session, record.batch_id)
    step = batch_mbr(session, batch).step(record.step_key)
    if record.status != "awaiting_verification":
        raise ValidationRefused(
            f"'{step.title}' is not waiting for verification",
            entity_type="step_record",
            entity_id=str(record.id),
        )
    if verifier.role not in (*step.roles, identity_rules.SUPERVISOR):
        raise SignatureRefused(
            f"{verifier.username} ({verifier.role}) cannot verify '{step.title}'",
            entity_type="step_record",
            entity_id=str(record.id),
        )
    performer = session.get(User, record.performed_by_id)
    identity_rules.require_different_person(
        performer.username if performer else "", verifier.username, f"'{step.title}'"
    )
    identity_service.sign(session, verifier, password, "verified", record, comment=step.title)
    audit_service.update(
        session,
        verifier.username,
        record,
        reason="second-person verification",
        action="verify",
        status="done",
        verified_by_id=verifier.id,
    )


def correct_value(
    session: Session, user: User, value_row: FieldValue, new_raw: str, reason: str, study: StudyDefinition
) -> FieldValue:
    """A correction is a new value with a reason; the old one stays visible, earlier signatures go invalid."""
    identity_service.require_can_act(user)
    record = session.get(StepRecord, value_row.step_record_id)
    assert record is not None
    if user.id != record.performed_by_id and user.role != identity_rules.SUPERVISOR:
        raise PermissionRefused(
            "only the performer of the step or a supervisor corrects its values",
            entity_type="field_value",
            entity_id=str(value_row.id),
        )
    if not reason.strip():
        raise ValidationRefused(
            "a correction needs a reason", entity_type="field_value", entity_id=str(value_row.id)
        )
    if current_values(session, record).get(value_row.field_key) is not value_row:
        raise ValidationRefused(
            "this value was already corrected: correct the current one",
            entity_type="field_value",
            entity_id=str(value_row.id),
        )
    batch = get_batch(session, record.batch_id)
    step = batch_mbr(session, batch).step(record.step_key)
    f = step.field(value_row.field_key)
    if f.type not in ("number", "choice", "text", "check", "datetime"):
        raise ValidationRefused(
            f"{f.label} is scanned: record a deviation instead of correcting it",
            entity_type="field_value",
            entity_id=str(value_row.id),
        )
    try:
        if f.type == "number":
            parsed = rules.parse_number(f, new_raw)
        elif f.type == "choice":
            parsed = rules.parse_choice(f, new_raw)
        elif f.type == "check":
            parsed = rules.parse_check(f, new_raw)
        elif f.type == "datetime":
            parsed = rules.ParsedValue(
                rules_iso(parse_local_datetime(new_raw, _facility_zone(study), f.label))
            )
        else:
            if not new_raw.strip():
                raise rules.FieldInputError(f"{f.label}: the new value is empty")
            parsed = rules.ParsedValue(new_raw.strip())
    except rules.FieldInputError as exc:
        raise ValidationRefused(str(exc), entity_type="field_value", entity_id=str(value_row.id)) from exc
    spec_ok = rules.in_spec(f, parsed)
    new_row = FieldValue(
        step_record_id=record.id,
        field_key=f.key,
        value=parsed.text,
        number=parsed.number,
        unit=f.unit,
        in_spec=spec_ok,
        entered_by_id=user.id,
        entered_at=clock.now(),
        supersedes_id=value_row.id,
        correction_reason=reason.strip(),
    )
    audit_service.create(session, user.username, new_row, reason=reason.strip())
    if not spec_ok:
        _open_deviation(session, user.username, batch, record, _Entry(f, parsed), step)
    return new_row


# --- deviations -----------------------------------------------------------------------------------------


def assess_deviation(
    session: Session, supervisor: User, password: str, deviation: Deviation, assessment: str
) -> None:
    """A supervisor's assessment lets a batch stopped by a critical deviation go on (QA still closes it)."""
    identity_service.require_can_act(supervisor)
    if supervisor.role != identity_rules.SUPERVISOR:
        raise PermissionRefused(
            "a supervisor assesses deviations", entity_type="deviation", entity_id=str(deviation.id)
        )
    if deviation.status != "open":
        raise ValidationRefused(
            f"{deviation.number} is {deviation.status}", entity_type="deviation", entity_id=str(deviation.id)
        )
    if not assessment.strip():
        raise ValidationRefused(
            "write the assessment: impact on the batch and whether it may go on",
            entity_type="deviation",
            entity_id=str(deviation.id),
        )
    audit_service.update(
        session,
        supervisor.username,
        deviation,
        reason="supervisor assessment",
        action="assess",
        status="assessed",
        assessment=assessment.strip(),
        assessed_by_id=supervisor.id,
    )
    identity_service.sign(session, supervisor, password, "reviewed", deviation, comment="deviation assessed")
    batch = get_batch(session, deviation.batch_id)
    still_open = session.scalar(
        select(func.count())
        .select_from(Deviation)
        .where(Deviation.batch_id == batch.id, Deviation.critical, Deviation.status == "open")
    )
    if batch.status == "on_hold" and not still_open:
        audit_service.update(
            session,
            supervisor.username,
            batch,
            reason=f"{deviation.number} assessed",
            action="resume",
            status="open",
        )


def close_deviation(
    session: Session, qa: User, password: str, deviation: Deviation, investigation: str, root_cause: str
) -> None:
    identity_service.require_can_act(qa)
    if qa.role != identity_rules.QA:
        raise PermissionRefused("QA closes deviations", entity_type="deviation", entity_id=str(deviation.id))
    if deviation.status == "closed":
        raise ValidationRefused(
            f"{deviation.number} is already closed", entity_type="deviation", entity_id=str(deviation.id)
        )
    if deviation.critical and deviation.status != "assessed":
        raise ValidationRefused(
            f"{deviation.number} stopped the batch: a supervisor assesses it before QA closes",
            entity_type="deviation",
            entity_id=str(deviation.id),
        )
    if not investigation.strip() or not root_cause.strip():
        raise ValidationRefused(
            "closing a deviation needs the investigation and the root cause",
            entity_type="deviation",
            entity_id=str(deviation.id),
        )
    audit_service.update(
        session,
        qa.username,
        deviation,
        reason="closed by QA",
        action="close",
        status="closed",
        investigation=investigation.strip(),
        root_cause=root_cause.strip(),
        closed_by_id=qa.id,
    )
    identity_service.sign(session, qa, password, "approved", deviation, comment="deviation closed")


# --- workstations and line clearance --------------------------------------------------------------------


def register_workstation(session: Session, actor: str, code: str, name: str) -> Workstation:
    code = code.strip().upper()
    if not code or session.scalar(select(Workstation.id).where(Workstation.code == code)) is not None:
        raise ValidationRefused(f"workstation code {code!r} is empty or taken", entity_type="workstation")
    return audit_service.create(session, actor, Workstation(code=code, name=name.strip() or code))


def find_workstation(session: Session, scanned: str) -> Workstation:
    workstation = session.scalar(select(Workstation).where(Workstation.code == scanned.strip().upper()))
    if workstation is None:
        raise NotFound(f"no workstation {scanned.strip()!r}", entity_type="workstation")
    return workstation


def open_at_workstation(session: Session, user: User, workstation: Workstation, batch: Batch) -> None:
    """One subject per cabinet: another subject's batch needs a signed line clearance first."""
    identity_service.require_can_act(user)
    if batch.status not in ("open", "on_hold"):
        raise BatchStopped(
            f"batch {batch.din} is {batch.status}", entity_type="batch", entity_id=str(batch.id)
        )
    if workstation.current_batch_id == batch.id:
        return
    if workstation.current_batch_id is not None:
        holder = get_batch(session, workstation.current_batch_id)
        if holder.subject_id != batch.subject_id:
            holder_subject = session.get(Subject, holder.subject_id)
            who = holder_subject.study_subject_id if holder_subject else "another subject"
            raise custody_service.ChainOfIdentityRefused(
                f"STOP: {workstation.code} holds the batch of {who}"
                f" ({holder.din}): sign line clearance before bringing in another subject's material",
                entity_type="workstation",
                entity_id=str(workstation.id),
            )
    audit_service.update(
        session,
        user.username,
        workstation,
        reason=f"batch {batch.din} opened",
        action="open",
        current_batch_id=batch.id,
    )


def clear_line(session: Session, user: User, password: str, workstation: Workstation) -> LineClearance:
    identity_service.require_can_act(user)
    if workstation.current_batch_id is None:
        raise ValidationRefused(
            f"{workstation.code} holds no batch", entity_type="workstation", entity_id=str(workstation.id)
        )
    clearance = LineClearance(
        workstation_id=workstation.id,
        previous_batch_id=workstation.current_batch_id,
        cleared_by_id=user.id,
        cleared_at=clock.now(),
    )
    audit_service.create(session, user.username, clearance)
    identity_service.sign(session, user, password, "performed", clearance, comment="line clearance")
    audit_service.update(
        session,
        user.username,
        workstation,
        reason="line clearance signed",
        action="clear",
        current_batch_id=None,
    )
    return clearance


# --- expansion and cryobank views -----------------------------------------------------------------------


def passages(session: Session, batch: Batch) -> list[Passage]:
    """Each harvest's seeded cells and time come from the plating (P0) or the previous passage's re-plate."""
    records = _records(session, batch)
    plate = next((r for r in records if r.step_key == "processing.plate_p0"), None)
    if plate is None:
        return []
    plate_values = current_values(session, plate)
    seeded = plate_values.get("seeded_cells")
    seeded_at_row = plate_values.get("seeded_at")
    if seeded is None or seeded.number is None:
        return []
    seeded_cells = seeded.number
    seeded_at = datetime.fromisoformat(seeded_at_row.value) if seeded_at_row else plate.performed_at
    result: list[Passage] = []
    for record in (r for r in records if r.step_key == "expansion.passage"):
        values = current_values(session, record)
        harvested = values.get("harvested_cells")
        viability = values.get("viability")
        harvested_at_row = values.get("harvested_at")
        if harvested is None or harvested.number is None or seeded_cells <= 0:
            break
        harvested_at = (
            datetime.fromisoformat(harvested_at_row.value) if harvested_at_row else record.performed_at
        )
        result.append(
            Passage(
                number=record.iteration - 1,
                seeded_cells=seeded_cells,
                seeded_at=seeded_at,
                harvested_cells=harvested.number,
                harvested_at=harvested_at,
                viability_percent=viability.number if viability and viability.number else 0.0,
            )
        )
        replated = values.get("replated_cells")
        seeded_cells = replated.number if replated and replated.number else 0.0
        seeded_at = harvested_at
    return result


@dataclass(frozen=True)
class BankSummary:
    vials: int
    cells_per_vial: float
    viability_percent: float
    total_viable_cells: float
    needed_cells: float
    recovery: float
    injections: int
    largest_dose: float

    @property
    def shortfall_cells(self) -> float:
        return max(0.0, self.needed_cells - self.total_viable_cells)

    @property
    def doses_covered(self) -> int:
        per_dose = self.largest_dose / self.recovery
        return int(math.floor(self.total_viable_cells / per_dose + 1e-9)) if per_dose > 0 else 0


def bank_summary(session: Session, batch: Batch, study: StudyDefinition) -> BankSummary | None:
    freeze = session.scalar(
        select(StepRecord).where(StepRecord.batch_id == batch.id, StepRecord.step_key == "cryobank.freeze")
    )
    if freeze is None:
        return None
    values = current_values(session, freeze)
    vials = (
        session.scalar(
            select(func.count())
            .select_from(Container)
            .where(Container.din == batch.din, Container.kind == "cryovial", Container.status == "stored")
        )
        or 0
    )
    per_vial = values["cells_per_vial"].number or 0.0 if "cells_per_vial" in values else 0.0
    viability = values["viability"].number or 0.0 if "viability" in values else 0.0
    largest = max(study.dosing.levels)
    recovery = study.product.post_thaw_recovery
    injections = study.schedule.injections
    return BankSummary(
        vials=vials,
        cells_per_vial=per_vial,
        viability_percent=viability,
        total_viable_cells=vials * per_vial,
        needed_cells=injections * largest / recovery,
        recovery=recovery,
        injections=injections,
        largest_dose=largest,
    )
