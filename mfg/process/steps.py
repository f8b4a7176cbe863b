"""Recording a step and verifying it: the generic step engine. It knows no study and no dose; an MBR's
capability (``mfg.process.extensions``) adds computed fields, planned ranges, lineage and follow-ups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.custody import service as custody_service
from mfg.custody.models import Container
from mfg.errors import NotFound, PermissionRefused, SignatureRefused, ValidationRefused
from mfg.identity import rules as identity_rules
from mfg.identity import service as identity_service
from mfg.identity.models import Signature, User
from mfg.materials.models import EquipmentUse, MaterialUse
from mfg.process import rules
from mfg.process.batches import batch_mbr, current_values, get_batch, latest_record, step_records
from mfg.process.deviations import open_deviation
from mfg.process.entries import FUTURE_SLACK, Entry, EntryContext, parse_entry, parse_local_datetime
from mfg.process.extensions import Capability, StepContext, capability_for
from mfg.process.mbr import COMPUTED_TYPES, StepDef
from mfg.process.models import Batch, FieldValue, StepRecord, Workstation
from mfg.process.workstations import release_workstations, require_same_cabinet, require_workstation
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject


@dataclass
class StepSubmission:
    """What the technician typed or scanned, by field key, plus when the work was done."""

    values: Mapping[str, str]
    performed_at: str = ""  # empty: now


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
    step, progress = _recordable_step(session, user, batch, step_key)
    require_workstation(session, batch, step, workstation)
    require_same_cabinet(step, submission.values, workstation if step.at_workstation else None)
    entered_at = clock.now()
    ctx = StepContext(session, user, batch, mbr, step, study, _performed_at(submission, batch, entered_at))
    capability = capability_for(mbr)
    subject = session.get(Subject, batch.subject_id)
    assert subject is not None
    entries = parse_submission(EntryContext(ctx, subject, capability), submission)
    capability.check_step(ctx, {e.field.key: e.parsed for e in entries})

    iteration = progress.get(step.key, rules.StepProgress()).count + 1
    at_cabinet = workstation if workstation is not None and step.at_workstation else None
    record = StepRecord(
        batch_id=batch.id,
        step_key=step.key,
        iteration=iteration,
        status="awaiting_verification" if step.critical else "done",
        performed_by_id=user.id,
        performed_at=ctx.performed_at,
        entered_at=entered_at,
        late=rules.late_entry(ctx.performed_at, entered_at, mbr.late_entry_minutes),
        workstation_id=at_cabinet.id if at_cabinet else None,
    )
    audit_service.create(session, user.username, record)
    for entry in entries:
        _write_entry(ctx, record, entry, entered_at)
    created = _create_containers(ctx, capability, subject, entries, iteration, at_cabinet)
    capability.after_step(ctx, record, {e.field.key: e.parsed for e in entries}, created)
    identity_service.sign(session, user, password, "performed", record, comment=step.title)
    if step.closes_batch:
        audit_service.update(
            session,
            user.username,
            batch,
            reason=f"{step.title} completed",
            action="close",
            status=mbr.closed_status,
        )
        release_workstations(session, user.username, batch)
        capability.after_close(ctx)
    return record


def _recordable_step(
    session: Session, user: User, batch: Batch, step_key: str
) -> tuple[StepDef, dict[str, rules.StepProgress]]:
    """The step, if this user may record it on this batch now, with the batch's progress (read once, under
    the writer's lock); else a refusal that says why not."""
    mbr = batch_mbr(session, batch)
    try:
        step = mbr.step(step_key)
    except KeyError as exc:
        raise NotFound(str(exc), entity_type="batch", entity_id=str(batch.id)) from exc
    if batch.status == "on_hold":
        raise rules.BatchStopped(
            "the batch is STOPPED by a critical deviation: a supervisor must assess it first",
            entity_type="batch",
            entity_id=str(batch.id),
        )
    if batch.status != "open":
        raise rules.BatchStopped(
            f"the batch is {batch.status}: no more steps", entity_type="batch", entity_id=str(batch.id)
        )
    if user.role not in step.roles:
        raise PermissionRefused(
            f"'{step.title}' is performed by {' or '.join(step.roles)}, not {user.role}",
            entity_type="batch",
            entity_id=str(batch.id),
        )
    records = step_records(session, batch)
    progress = rules.progress(records)
    problem = rules.step_problem(mbr, step, progress)
    if problem:
        raise rules.StepOrderRefused(problem, entity_type="batch", entity_id=str(batch.id))
    reopened = reopened_for_verification(session, records)
    if reopened is not None:
        raise rules.BatchStopped(
            f"the batch is held: a corrected value of '{mbr.step(reopened.step_key).title}' waits for "
            "a second person's verification",
            entity_type="batch",
            entity_id=str(batch.id),
        )
    return step, progress


def reopened_for_verification(session: Session, records: Sequence[StepRecord]) -> StepRecord | None:
    """Among a batch's records, a verified step whose value was corrected since: it holds the whole batch
    until verified again."""
    waiting = [r for r in records if r.status == "awaiting_verification"]
    if not waiting:
        return None
    verified = set(
        session.scalars(
            select(Signature.entity_id).where(
                Signature.entity_type == "step_record",
                Signature.meaning == "verified",
                Signature.entity_id.in_([str(r.id) for r in waiting]),
            )
        )
    )
    return next((r for r in waiting if str(r.id) in verified), None)


def _performed_at(submission: StepSubmission, batch: Batch, entered_at: datetime) -> datetime:
    if not submission.performed_at.strip():
        return entered_at
    try:
        performed_at = parse_local_datetime(submission.performed_at, "Performed at")
    except rules.FieldInputError as exc:
        raise ValidationRefused(str(exc), entity_type="batch", entity_id=str(batch.id)) from exc
    if performed_at > entered_at + FUTURE_SLACK:
        raise ValidationRefused(
            "the step cannot have been performed in the future", entity_type="batch", entity_id=str(batch.id)
        )
    return performed_at


def parse_submission(ctx: EntryContext, submission: StepSubmission) -> list[Entry]:
    """Every field of the step, parsed and checked, then the values the system computes."""
    step, batch = ctx.step.step, ctx.step.batch
    missing = [
        f.label
        for f in step.fields
        if f.type not in COMPUTED_TYPES and f.required and not submission.values.get(f.key, "").strip()
    ]
    if missing:
        raise rules.MissingFields(
            f"still missing: {', '.join(missing)}", entity_type="batch", entity_id=str(batch.id)
        )
    entries: list[Entry] = []
    for f in step.fields:
        raw = submission.values.get(f.key, "").strip()
        if f.type == "elapsed_hours":
            entries.append(_elapsed_hours(ctx, f.key, f.since, f.label))
        elif f.type not in COMPUTED_TYPES and raw:
            entries.append(parse_entry(ctx, f, raw))
    typed = {e.field.key: e.parsed for e in entries}
    for f in step.fields:
        if f.type in COMPUTED_TYPES and f.type != "elapsed_hours":
            checked, parsed = ctx.capability.computed_value(ctx.step, f, typed)
            entries.append(Entry(checked, parsed))
    return entries


def _elapsed_hours(ctx: EntryContext, key: str, since: str, label: str) -> Entry:
    """Hours from a recorded date and time ("stage.step.field") to when this step was performed."""
    step_key, _, field_key = since.rpartition(".")
    session, batch = ctx.step.session, ctx.step.batch
    record = latest_record(session, batch, step_key)
    row = current_values(session, record).get(field_key) if record is not None else None
    if row is None:
        raise ValidationRefused(
            f"{label}: the time it counts from ({since}) is not recorded",
            entity_type="batch",
            entity_id=str(batch.id),
        )
    hours = (ctx.step.performed_at - datetime.fromisoformat(row.value)).total_seconds() / 3600
    return Entry(ctx.step.step.field(key), rules.ParsedValue(f"{hours:.2f}", round(hours, 2)))


def _write_entry(ctx: StepContext, record: StepRecord, entry: Entry, entered_at: datetime) -> None:
    """One value with its register uses and consumed containers; out of range, it opens a deviation."""
    session, actor = ctx.session, ctx.user.username
    spec_ok = rules.in_spec(entry.field, entry.parsed)
    audit_service.create(
        session,
        actor,
        FieldValue(
            step_record_id=record.id,
            field_key=entry.field.key,
            value=entry.parsed.text,
            number=entry.parsed.number,
            unit=entry.field.unit,
            in_spec=spec_ok,
            entered_by_id=ctx.user.id,
            entered_at=entered_at,
        ),
    )
    if entry.lot_id is not None:
        use = MaterialUse(step_record_id=record.id, field_key=entry.field.key, reagent_lot_id=entry.lot_id)
        audit_service.create(session, actor, use)
    if entry.equipment_id is not None:
        used = EquipmentUse(
            step_record_id=record.id, field_key=entry.field.key, equipment_id=entry.equipment_id
        )
        audit_service.create(session, actor, used)
    for container in entry.containers if entry.field.consume else []:
        _consume(ctx, container)
    if not spec_ok:
        open_deviation(session, actor, ctx.batch, record, entry, ctx.step)


def _consume(ctx: StepContext, container: Container) -> None:
    audit_service.update(
        ctx.session,
        ctx.user.username,
        container,
        reason=f"used in {ctx.step.title}",
        action="consume",
        status="consumed",
    )


def _create_containers(
    ctx: StepContext,
    capability: Capability,
    subject: Subject,
    entries: list[Entry],
    iteration: int,
    workstation: Workstation | None,
) -> list[Container]:
    """The containers the step creates, with their lineage: what it consumed, else the capability's."""
    session, batch, step = ctx.session, ctx.batch, ctx.step
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
            _consume(ctx, container)
    parents += [c for e in entries if e.field.consume for c in e.containers]
    if step.creates and not parents:
        parents = capability.lineage(ctx)
    numbers = {e.field.key: e.parsed.number for e in entries if e.parsed.number is not None}
    storage = next((e.parsed.text for e in entries if e.field.key == "storage_location"), "")
    location = workstation.code if workstation is not None else "clinical site"
    created: list[Container] = []
    for creates in step.creates:
        count = int(numbers.get(creates.count_field, creates.count)) if creates.count_field else creates.count
        if count < 0 or count > 200:
            raise ValidationRefused(
                f"cannot create {count} containers", entity_type="batch", entity_id=str(batch.id)
            )
        contents = creates.contents.replace("{iteration}", str(iteration))
        created += [
            custody_service.create_container(
                session,
                ctx.user.username,
                kind=creates.kind,
                subject=subject,
                contents=contents,
                location=storage or location,
                holder_id=ctx.user.id,
                din=batch.din,
                parents=parents,
                status="stored" if creates.kind == "cryovial" else "in_use",
            )
            for _ in range(count)
        ]
    return created


def verify_step(
    session: Session, verifier: User, password: str, record: StepRecord, *, seen: str | None = None
) -> None:
    """Second-person verification of a critical step, at the same terminal, with the verifier's password.
    ``seen``: the content hash of the values the verifier's page showed (a correction since is refused)."""
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
    corrected_by = session.scalars(
        select(FieldValue.entered_by_id).where(
            FieldValue.step_record_id == record.id, FieldValue.supersedes_id.is_not(None)
        )
    ).all()
    if verifier.id in corrected_by:
        raise SignatureRefused(
            f"{verifier.username} corrected a value of '{step.title}': another person verifies it",
            entity_type="step_record",
            entity_id=str(record.id),
        )
    identity_service.sign(session, verifier, password, "verified", record, comment=step.title, seen=seen)
    audit_service.update(
        session,
        verifier.username,
        record,
        reason="second-person verification",
        action="verify",
        status="done",
        verified_by_id=verifier.id,
    )
