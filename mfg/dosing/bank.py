"""The cryobank check, the one place that says whether a subject's stored cryovials can supply a dose and the
doses still planned after it (whole vials, after post-thaw recovery), and which vials to thaw. The bench's
cryobank card, the dose order page, the subject page and dose preparation all ask here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg.custody.models import Container
from mfg.dosing import orders
from mfg.dosing import service as order_service
from mfg.dosing.models import DoseOrder
from mfg.errors import ValidationRefused
from mfg.process.batches import role_values, values_of_records
from mfg.process.models import Batch, FieldValue, MbrVersion, StepRecord, current_of
from mfg.process.versions import mbr_of
from mfg.study.definition import StudyDefinition
from mfg.study.models import Subject


@dataclass(frozen=True)
class BankStock:
    """The subject's stored cryovials with the viable cells frozen in each, in the order they are used."""

    vials: tuple[tuple[str, float], ...]
    #: stored vials whose batch has no recorded cells per vial: not counted
    unknown_vials: tuple[str, ...]


def freeze_values(session: Session, subject: Subject) -> dict[str, dict[str, FieldValue]]:
    """The current values of each of the subject's freeze steps, by DIN: a fixed number of queries."""
    rows = session.execute(
        select(Batch, MbrVersion)
        .join(MbrVersion, MbrVersion.id == Batch.mbr_version_id)
        .where(Batch.subject_id == subject.id)
    ).all()
    freeze_keys = {}
    for batch, version in rows:
        step = mbr_of(version).step_for_role("freeze")
        if step is not None:
            freeze_keys[batch.id] = (batch.din, step.key)
    if not freeze_keys:
        return {}
    records = session.scalars(
        select(StepRecord).where(StepRecord.batch_id.in_(freeze_keys)).order_by(StepRecord.id)
    ).all()
    wanted = {r.id: freeze_keys[r.batch_id][0] for r in records if r.step_key == freeze_keys[r.batch_id][1]}
    values = values_of_records(session, wanted)
    return {din: current_of(values.get(record_id, [])) for record_id, din in wanted.items()}


def bank_stock(session: Session, subject: Subject, *, din: str | None = None) -> BankStock:
    """Stored cryovials (oldest first; of one collection if ``din`` is given) and, from each one's batch
    freeze step (the step whose MBR role is "freeze"), the cells per vial."""
    per_vial: dict[str, float] = {}
    for din, values in freeze_values(session, subject).items():
        value = values.get("cells_per_vial")
        if value is not None and value.number is not None and value.number > 0:
            per_vial[din] = value.number
    query = (
        select(Container)
        .where(Container.subject_id == subject.id, Container.kind == "cryovial", Container.status == "stored")
        .order_by(Container.id)
    )
    if din is not None:
        query = query.where(Container.din == din)
    vials: list[tuple[str, float]] = []
    unknown: list[str] = []
    for container in session.scalars(query):
        cells = per_vial.get(container.din or "")
        if cells is None:
            unknown.append(container.scan_id)
        else:
            vials.append((container.scan_id, cells))
    return BankStock(vials=tuple(vials), unknown_vials=tuple(unknown))


def _with_unknown(check: orders.BankCheck, stock: BankStock) -> orders.BankCheck:
    if not stock.unknown_vials:
        return check
    note = (
        f" {len(stock.unknown_vials)} stored vial(s) without recorded cells per vial are not counted "
        f"({', '.join(stock.unknown_vials[:5])}{'…' if len(stock.unknown_vials) > 5 else ''})."
    )
    return orders.BankCheck(**{**check.__dict__, "sentence": check.sentence + note})


def bank_check_for(
    session: Session,
    subject: Subject,
    study: StudyDefinition,
    injection_number: int,
    dose_cells: float,
    *,
    stock: BankStock | None = None,
    existing: Sequence[orders.ExistingOrder] | None = None,
) -> orders.BankCheck:
    """The bank check for a dose at this injection (ordered or only proposed): this dose, then every other
    planned dose not yet thawed (unordered later injections assumed at this level)."""
    stock = stock if stock is not None else bank_stock(session, subject)
    existing = existing if existing is not None else order_service.existing_orders(session, subject)
    remaining = orders.remaining_planned_doses(
        injection_number, dose_cells, existing, study.schedule.injections
    )
    check = orders.bank_check(stock.vials, dose_cells, remaining, study.product.post_thaw_recovery)
    return _with_unknown(check, stock)


def bank_status(
    session: Session, subject: Subject, study: StudyDefinition, order: DoseOrder
) -> orders.BankCheck:
    """Can the bank supply this order and the doses still planned after it, and which vials to thaw."""
    if order.subject_id != subject.id:
        raise ValidationRefused(
            f"dose order #{order.id} is not {subject.study_subject_id}'s",
            entity_type="dose_order",
            entity_id=str(order.id),
        )
    return bank_check_for(session, subject, study, order.injection_number, order.dose_cells)


def bank_checks_by_level(
    session: Session, subject: Subject, study: StudyDefinition, injection_number: int
) -> dict[float, orders.BankCheck]:
    """What the bank says for each of the study's levels at this injection: shown before signing."""
    stock = bank_stock(session, subject)
    existing = order_service.existing_orders(session, subject)
    return {
        level: bank_check_for(
            session, subject, study, injection_number, level, stock=stock, existing=existing
        )
        for level in study.dosing.levels
    }


@dataclass(frozen=True)
class BankCapacity:
    """A closed bank against the whole schedule at the study's largest level: the bench's cryobank card."""

    check: orders.BankCheck
    cells_per_vial: float
    viability_percent: float
    injections: int
    largest_dose: float

    @property
    def vials(self) -> int:
        return self.check.stored_vials

    @property
    def total_viable_cells(self) -> float:
        return self.vials * self.cells_per_vial

    @property
    def recovery(self) -> float:
        return self.check.recovery

    @property
    def needed_cells(self) -> float:
        """Banked cells the schedule needs, before thaw losses."""
        return self.check.needed_viable_cells / self.check.recovery

    @property
    def shortfall_cells(self) -> float:
        return 0.0 if self.check.enough else max(0.0, self.needed_cells - self.total_viable_cells)

    @property
    def doses_covered(self) -> int:
        return (1 + self.check.remaining_doses_covered) if self.check.covers_this_dose else 0


def bank_capacity(session: Session, batch: Batch, study: StudyDefinition) -> BankCapacity | None:
    """The batch's bank, once frozen, checked as if every injection were given at the largest level."""
    freeze = role_values(session, batch, "freeze")
    if not freeze:
        return None
    subject = session.get(Subject, batch.subject_id)
    assert subject is not None
    stock = bank_stock(session, subject, din=batch.din)
    largest = max(study.dosing.levels)
    injections = study.schedule.injections
    check = orders.bank_check(
        stock.vials, largest, [largest] * (injections - 1), study.product.post_thaw_recovery
    )
    per_vial, viability = freeze.get("cells_per_vial"), freeze.get("viability")
    return BankCapacity(
        check=_with_unknown(check, stock),
        cells_per_vial=per_vial.number or 0.0 if per_vial else 0.0,
        viability_percent=viability.number or 0.0 if viability else 0.0,
        injections=injections,
        largest_dose=largest,
    )
