"""What a technician typed or scanned into a step's fields, parsed and checked: one table of field types, each
a small parser, used by recording and by corrections alike.

Scans are checked against the registers and the chain of identity here: a reagent lot must be released and in
date on the day of use, equipment in calibration, a container this subject's and this collection's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta

from mfg import clock
from mfg.custody import service as custody_service
from mfg.custody.models import Container
from mfg.errors import ValidationRefused
from mfg.materials import service as materials_service
from mfg.process import rules
from mfg.process.extensions import Capability, StepContext
from mfg.process.mbr import FieldDef
from mfg.study.models import Subject
from mfg.text import checked_text

FUTURE_SLACK = timedelta(minutes=5)  # terminal clocks and typing: "now" may be a few minutes ahead
EARLIEST_YEAR = 2000  # no GMP record of this system predates it; an earlier year is a typing slip


@dataclass
class Entry:
    """One field's parsed value, with what it refers to in the registers and the custody chain."""

    field: FieldDef
    parsed: rules.ParsedValue
    lot_id: int | None = None
    equipment_id: int | None = None
    containers: list[Container] = field(default_factory=list)


@dataclass(frozen=True)
class EntryContext:
    step: StepContext
    subject: Subject
    capability: Capability

    @property
    def day_of_use(self) -> date:
        """The facility's date on which the work was done: lots and calibration are checked against it."""
        return clock.to_local(self.step.performed_at).date()


Parser = Callable[[EntryContext, FieldDef, str], Entry]


# What a datetime-local input sends (seconds optional); fromisoformat alone also takes week dates.
DATETIME_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")


def parse_local_datetime(raw: str, label: str) -> datetime:
    """Times are typed on the facility's wall clock (a datetime-local input) and stored in UTC."""
    try:
        if not DATETIME_PATTERN.fullmatch(raw.strip()):
            raise ValueError(raw)
        value = datetime.fromisoformat(raw.strip())
        when = clock.from_local(value)
    except (ValueError, OverflowError):
        raise rules.FieldInputError(f"{label}: {raw!r} is not a date and time (YYYY-MM-DD HH:MM)") from None
    if when.year < EARLIEST_YEAR:
        raise rules.FieldInputError(f"{label}: {raw} is before {EARLIEST_YEAR}: check the year")
    return when


def iso_utc(when: datetime) -> str:
    return when.astimezone(UTC).isoformat()


def _number(ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    parsed = rules.parse_number(f, raw)
    if not f.plan:
        return Entry(f, parsed)
    # A volume checked against the capability's plan: the plan sets the acceptance range.
    low, high = ctx.capability.planned_range(ctx.step, f)
    return Entry(replace(f, low=low, high=high), parsed)


def _choice(_ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    return Entry(f, rules.parse_choice(f, raw))


def _check(_ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    return Entry(f, rules.parse_check(f, raw))


def _datetime(_ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    when = parse_local_datetime(raw, f.label)
    if when > clock.now() + FUTURE_SLACK:
        raise rules.FieldInputError(f"{f.label}: {raw} is in the future")
    return Entry(f, rules.ParsedValue(iso_utc(when)))


def _text(_ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    if not raw.strip():
        raise rules.FieldInputError(f"{f.label}: the value is empty")
    try:
        return Entry(f, rules.ParsedValue(checked_text(raw, f.label, 500, multiline=True)))
    except ValidationRefused as exc:  # refused as every field is, naming the batch
        raise rules.FieldInputError(exc.message) from None


def _lot(ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    lot = materials_service.usable_lot(ctx.step.session, raw, on=ctx.day_of_use, expected_material=f.material)
    return Entry(f, rules.ParsedValue(f"{lot.name} lot {lot.lot_number}"), lot_id=lot.id)


def _equipment(ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    item = materials_service.usable_equipment(
        ctx.step.session, raw, on=ctx.day_of_use, expected_type=f.equipment_type
    )
    return Entry(f, rules.ParsedValue(item.asset_tag), equipment_id=item.id)


def _container(ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    container = batch_container(ctx, f, raw)
    return Entry(f, rules.ParsedValue(container.scan_id), containers=[container])


def _container_list(ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    scanned = list(dict.fromkeys(raw.replace(",", " ").split()))
    if not scanned:
        raise rules.FieldInputError(f"{f.label}: scan at least one {f.container_kind.replace('_', ' ')}")
    containers = [batch_container(ctx, f, code) for code in scanned]
    return Entry(f, rules.ParsedValue(" ".join(scanned)), containers=containers)


PARSERS: dict[str, Parser] = {
    "number": _number,
    "choice": _choice,
    "check": _check,
    "datetime": _datetime,
    "text": _text,
    "lot": _lot,
    "equipment": _equipment,
    "container": _container,
    "container_list": _container_list,
}
# Scanned values are not corrected in place: a wrong scan is a deviation, not a new value.
CORRECTABLE_TYPES = ("number", "choice", "text", "check", "datetime")


def parse_entry(ctx: EntryContext, f: FieldDef, raw: str) -> Entry:
    """Parse one typed or scanned value; a malformed one is refused naming the field."""
    try:
        return PARSERS[f.type](ctx, f, raw.strip())
    except rules.FieldInputError as exc:
        raise ValidationRefused(str(exc), entity_type="batch", entity_id=str(ctx.step.batch.id)) from exc


def batch_container(ctx: EntryContext, f: FieldDef, raw: str) -> Container:
    """A scanned container must be this subject's, from this collection, of the right kind, and usable."""
    batch = ctx.step.batch
    container = custody_service.find_container(ctx.step.session, raw)
    custody_service.require_same_subject(container, ctx.subject)
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
