"""Pure dose-order rules: the visit schedule, what an investigator may prescribe, and whether the cryobank
can supply the dose. No database, no web: numbers and dates in, a plan or a refusal message out.

Every ``*_problem`` function returns the refusal message, or ``""`` when the rule is met.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta

from labels.numbers import format_cells
from mfg.study.definition import StudyDefinition

#: a body weight outside this range is a typing or unit error (the weight sets the endotoxin limit)
MIN_BODY_WEIGHT_KG = 20.0
MAX_BODY_WEIGHT_KG = 300.0
#: statuses of an order that still stands (a cancelled order is kept, but no longer counts)
ACTIVE_STATUSES = ("ordered", "in_preparation", "prepared")
# dose levels typed or posted as numbers are matched to the study's levels to this relative precision
_LEVEL_MATCH = 1e-9
# whole-vial arithmetic: a vial giving exactly the dose covers it despite binary rounding of the recovery
_COVER_SLACK = 1e-9


# --------------------------------------------------------------------------------------------- display


def dose_text(cells: float) -> str:
    """A prescribed number of cells, as orders and their refusals print it: "5 × 10⁷"."""
    return format_cells(cells, "dose")


def format_levels(levels: Sequence[float]) -> str:
    """'1 × 10⁷, 5 × 10⁷ or 1 × 10⁸'."""
    shown = [dose_text(level) for level in levels]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


# --------------------------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class PlannedVisit:
    """One injection visit of the protocol, with its window (both ends included)."""

    injection_number: int
    protocol_visit: int
    due_date: date
    window_start: date
    window_end: date


def add_months(day: date, months: int) -> date:
    """Calendar months later; a day the target month lacks becomes its last day (31 Jan + 1 = 28/29 Feb)."""
    years, month_index = divmod(day.month - 1 + months, 12)
    year, month = day.year + years, month_index + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def visit_schedule(first_due: date, study: StudyDefinition) -> list[PlannedVisit]:
    """Every injection visit, each counted from the first one's due date (not from the previous visit, so
    a clamped month end does not drift: 31 Jan, 30 Apr, 31 Jul, 31 Oct)."""
    schedule = study.schedule
    window = timedelta(days=schedule.visit_window_days)
    visits = []
    for number in range(1, schedule.injections + 1):
        due = add_months(first_due, (number - 1) * schedule.interval_months)
        visits.append(
            PlannedVisit(
                injection_number=number,
                protocol_visit=schedule.first_injection_visit + number - 1,
                due_date=due,
                window_start=due - window,
                window_end=due + window,
            )
        )
    return visits


# --------------------------------------------------------------------------------------------- order rules


@dataclass(frozen=True)
class ExistingOrder:
    """What the rules need to know of an order already on record."""

    id: int
    injection_number: int
    dose_cells: float
    status: str

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES


def study_level(dose_cells: float, study: StudyDefinition) -> float | None:
    """The study's dose level this number names (posted as '50000000', say), or None."""
    if isinstance(dose_cells, bool) or not math.isfinite(dose_cells):
        return None
    for level in study.dosing.levels:
        if math.isclose(dose_cells, level, rel_tol=_LEVEL_MATCH):
            return level
    return None


def injection_problem(injection_number: int, study: StudyDefinition) -> str:
    last = study.schedule.injections
    if not 1 <= injection_number <= last:
        return f"injection {injection_number} is not in the schedule: {study.code} has injections 1 to {last}"
    return ""


def level_problem(dose_cells: float, study: StudyDefinition) -> str:
    if study_level(dose_cells, study) is None:
        shown = dose_text(dose_cells) if math.isfinite(dose_cells) else str(dose_cells)
        return (
            f"{shown} cells is not a dose level of {study.code}: "
            f"choose {format_levels(study.dosing.levels)} cells"
        )
    return ""


def first_dose_problem(injection_number: int, dose_cells: float, study: StudyDefinition) -> str:
    first = study.dosing.first_dose
    if injection_number == 1 and not math.isclose(dose_cells, first, rel_tol=_LEVEL_MATCH):
        return (
            f"the first injection of {study.code} is always {dose_text(first)} cells, "
            f"not {dose_text(dose_cells)}"
        )
    return ""


def weight_problem(body_weight_kg: float) -> str:
    if (
        isinstance(body_weight_kg, bool)
        or not math.isfinite(body_weight_kg)
        or not MIN_BODY_WEIGHT_KG <= body_weight_kg <= MAX_BODY_WEIGHT_KG
    ):
        return (
            f"body weight {body_weight_kg:g} kg is not plausible (expected {MIN_BODY_WEIGHT_KG:g}-"
            f"{MAX_BODY_WEIGHT_KG:g} kg): check the scale and that the weight is in kg"
        )
    return ""


def duplicate_problem(injection_number: int, existing: Sequence[ExistingOrder]) -> str:
    for order in existing:
        if order.active and order.injection_number == injection_number:
            return (
                f"injection {injection_number} already has an order (#{order.id}, "
                f"{order.status.replace('_', ' ')}, {dose_text(order.dose_cells)} cells): "
                "cancel it first to prescribe this visit again"
            )
    return ""


def sequence_problem(injection_number: int, existing: Sequence[ExistingOrder]) -> str:
    if injection_number == 1:
        return ""
    previous = injection_number - 1
    if not any(o.active and o.injection_number == previous for o in existing):
        return f"injection {injection_number} comes after injection {previous}, which has no active order"
    return ""


def previous_order(injection_number: int, existing: Sequence[ExistingOrder]) -> ExistingOrder | None:
    """The standing order of the latest injection before this one: the dose a change is measured from."""
    earlier = [o for o in existing if o.active and o.injection_number < injection_number]
    return max(earlier, key=lambda o: (o.injection_number, o.id), default=None)


def change_reason_problem(
    injection_number: int, dose_cells: float, change_reason: str | None, existing: Sequence[ExistingOrder]
) -> str:
    previous = previous_order(injection_number, existing)
    if previous is None or math.isclose(previous.dose_cells, dose_cells, rel_tol=_LEVEL_MATCH):
        return ""
    if not (change_reason or "").strip():
        return (
            f"the dose changes from {dose_text(previous.dose_cells)} cells (injection "
            f"{previous.injection_number}) to {dose_text(dose_cells)}: give the reason for the change"
        )
    return ""


def order_problem(
    study: StudyDefinition,
    *,
    injection_number: int,
    dose_cells: float,
    body_weight_kg: float,
    change_reason: str | None,
    existing: Sequence[ExistingOrder],
) -> str:
    """The first rule a new order breaks, in the order a prescriber would want to hear them; '' if none."""
    for problem in (
        injection_problem(injection_number, study),
        level_problem(dose_cells, study),
        first_dose_problem(injection_number, dose_cells, study),
        weight_problem(body_weight_kg),
        duplicate_problem(injection_number, existing),
        sequence_problem(injection_number, existing),
        change_reason_problem(injection_number, dose_cells, change_reason, existing),
    ):
        if problem:
            return problem
    return ""


def remaining_planned_doses(
    injection_number: int, dose_cells: float, existing: Sequence[ExistingOrder], injections: int
) -> list[float]:
    """The other doses the bank must still supply besides this one, in injection order.

    An injection with a standing order that has not been prepared yet counts at its ordered level; one
    already in preparation or prepared has had its vials thawed already. An injection after this one with
    no order is assumed to be given at this order's level.
    """
    standing = {o.injection_number: o for o in existing if o.active}
    doses: list[float] = []
    for number in range(1, injections + 1):
        if number == injection_number:
            continue
        order = standing.get(number)
        if order is not None:
            if order.status == "ordered":
                doses.append(order.dose_cells)
        elif number > injection_number:
            doses.append(dose_cells)
    return doses


# --------------------------------------------------------------------------------------------- the cryobank


@dataclass(frozen=True)
class BankCheck:
    """Whether the stored cryovials can supply this dose and the remaining planned ones, whole vials only
    (a thawed vial cannot go back), and which vials to thaw for this dose."""

    #: this dose and every remaining planned dose are covered
    enough: bool
    covers_this_dose: bool
    #: the scan ids to thaw for this dose; empty when the bank cannot supply it
    vials_to_thaw: tuple[str, ...]
    #: viable cells expected from those vials after post-thaw recovery
    thawed_viable_cells: float
    dose_cells: float
    remaining_doses_cells: tuple[float, ...]
    #: how many of the remaining doses (in order) the vials left after this one cover
    remaining_doses_covered: int
    stored_vials: int
    #: vials still unallocated once this dose and the covered remaining ones have been taken
    spare_vials: int
    #: every stored vial's cells x recovery, and this dose plus the remaining ones
    available_viable_cells: float
    needed_viable_cells: float
    recovery: float
    #: the result in one or two sentences for the prescriber and the bench
    sentence: str


def _take(vials: Sequence[tuple[str, float]], start: int, dose: float, recovery: float) -> int | None:
    """The end index of the shortest run of vials from ``start`` whose viable cells cover ``dose``."""
    viable = 0.0
    for index in range(start, len(vials)):
        viable += vials[index][1] * recovery
        if viable >= dose * (1 - _COVER_SLACK):
            return index + 1
    return None


def _vials(count: int) -> str:
    return f"{count} vial" if count == 1 else f"{count} vials"


def _doses(count: int) -> str:
    return f"{count} dose" if count == 1 else f"{count} doses"


def bank_check(
    vials: Sequence[tuple[str, float]],
    dose_cells: float,
    remaining_doses_cells: Sequence[float],
    recovery: float,
) -> BankCheck:
    """Check the bank for this dose, then for the remaining planned doses in order.

    ``vials`` are (scan id, viable cells frozen per vial) in the order they are to be used; each dose takes
    the fewest vials from the front of what is left whose cells x ``recovery`` reach it.
    """
    if not 0 < recovery <= 1:
        raise ValueError(f"post-thaw recovery must be a fraction in (0, 1], got {recovery}")
    remaining = tuple(remaining_doses_cells)
    available = sum(cells for _, cells in vials) * recovery
    needed = dose_cells + sum(remaining)
    percent = f"{recovery * 100:g} %"
    end = _take(vials, 0, dose_cells, recovery)

    if end is None:
        if not vials:
            sentence = (
                f"No cryovials are stored: the bank cannot supply this dose of {dose_text(dose_cells)}."
            )
        else:
            stored = "the only stored vial gives"
            if len(vials) > 1:
                stored = f"all {len(vials)} stored vials give"
            sentence = (
                f"NOT ENOUGH for this dose: {stored} {dose_text(available)} viable cells after {percent} "
                f"post-thaw recovery, less than {dose_text(dose_cells)}."
            )
        return BankCheck(
            enough=False,
            covers_this_dose=False,
            vials_to_thaw=(),
            thawed_viable_cells=0.0,
            dose_cells=dose_cells,
            remaining_doses_cells=remaining,
            remaining_doses_covered=0,
            stored_vials=len(vials),
            spare_vials=len(vials),
            available_viable_cells=available,
            needed_viable_cells=needed,
            recovery=recovery,
            sentence=sentence,
        )

    thaw = tuple(scan_id for scan_id, _ in vials[:end])
    frozen = sum(cells for _, cells in vials[:end])
    thawed = frozen * recovery
    sentence = (
        f"Thaw {_vials(end)} of {len(vials)} for this dose: {dose_text(frozen)} cells frozen, "
        f"{dose_text(thawed)} viable after {percent} post-thaw recovery ≥ {dose_text(dose_cells)}."
    )
    covered = 0
    position = end
    for dose in remaining:
        taken = _take(vials, position, dose, recovery)
        if taken is None:
            break
        covered, position = covered + 1, taken
    left = len(vials) - end
    if not remaining:
        sentence += f" No other dose is planned; {_vials(left)} stay in the bank."
    elif covered == len(remaining):
        listed = ", ".join(dose_text(d) for d in remaining)
        sentence += (
            f" The {_vials(left)} left cover the {_doses(len(remaining))} still planned ({listed}), "
            f"with {_vials(len(vials) - position)} to spare."
        )
    else:
        listed = ", ".join(dose_text(d) for d in remaining)
        sentence += (
            f" NOT ENOUGH for the rest of the schedule: the {_vials(left)} left cover {covered} of the "
            f"{_doses(len(remaining))} still planned ({listed})."
        )
    return BankCheck(
        enough=covered == len(remaining),
        covers_this_dose=True,
        vials_to_thaw=thaw,
        thawed_viable_cells=thawed,
        dose_cells=dose_cells,
        remaining_doses_cells=remaining,
        remaining_doses_covered=covered,
        stored_vials=len(vials),
        spare_vials=len(vials) - position,
        available_viable_cells=available,
        needed_viable_cells=needed,
        recovery=recovery,
        sentence=sentence,
    )
