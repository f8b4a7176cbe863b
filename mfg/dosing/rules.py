"""Pure fill arithmetic: from a prescribed dose and replicate viable counts to the volumes drawn into the bag.

The rule:

* C = mean of the replicate viable counts (cells/mL). At least 2 counts, every one positive and finite, and
  their coefficient of variation (sample standard deviation, n - 1, over the mean) at most ``max_count_cv``.
* The syringe holds S = max(``min_volume_ml``, D / C to the nearest ``volume_step_ml``); above
  ``max_volume_ml`` the suspension is too dilute, refused.
* The formulation is made with an overage at the same concentration: F = S + ``overage_ml`` is formulated,
  the overage leaves as the retained sample and QC aliquots, and the syringe holds S with the dose D.
  suspension V = D / C x F / S to the nearest step (at most F); lactated Ringer's diluent = F - V.
* V below ``min_aliquot_ml`` cannot be measured with a syringe, and a V whose dose in the syringe (C x V x S /
  F) is off D by more than ``tolerance`` (the planning tolerance) would spend on rounding what the delivered-
  dose tolerance keeps for counting error: both refused, naming the concentration to pre-dilute to (at most
  D x F / (S x V_min) cells/mL, with V_min the larger of the minimum aliquot and the volume whose rounding
  stays inside the tolerance, step / (2 x tolerance)).

Rounding. All arithmetic is done in :mod:`decimal` on the numbers as they were written (``Decimal(repr(x))``
for a float: 1.05e7 is 10500000, not the nearest binary fraction), so D / C / step is exact for the figures a
technician types and no 4.8999999 mL ever appears. A value exactly half-way between two steps rounds **up**
(ROUND_HALF_UP, as taught at the bench): D / C = 2.45 mL gives 2.5 mL in 0.1 mL steps. Python's ``round``
would give 2.4 (round-half-even) and binary floats can land either side of the half.

Parameters are refused, not guessed at, when they make no sense: a minimum above the maximum, a step that is
not positive, larger than the maximum or finer than a millionth of it, a minimum that is not a whole number
of steps (the diluent could not then be measured), a negative CV limit, a tolerance outside [0, 1).

No database, no web: :func:`plan_fill` takes numbers and returns a :class:`FillPlan` or raises
:class:`DoseRefused` whose message names the reason and what to do at the bench.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

from labels.numbers import format_cells
from mfg.errors import ValidationRefused

__all__ = ["DoseRefused", "FillPlan", "drawn_volume_range", "plan_fill"]

# Inputs are held to _INPUT_DIGITS significant digits (a float has at most 17); the working precision leaves
# room for a million volume steps on top, so sums and quantizing to the step are exact (a mean such as
# 1e7 / 3 and the square root of the CV are rounded only in the 100th digit).
_INPUT_DIGITS = 40
_PRECISION = 100
#: the most volume steps the maximum volume may hold: finer steps are not a syringe graduation
MAX_STEPS = 1_000_000
# volumes from here on (absurd ones, in refusals) are shown as 1.23e9 rather than written out
_LARGE = Decimal(10) ** 6


class DoseRefused(ValidationRefused, ValueError):
    """No fill plan: the counts, the dose or the parameters do not allow one. The message says why.

    ``reason`` is a short machine-readable code: ``parameter``, ``dose``, ``too_few_counts``, ``bad_count``,
    ``count_cv``, ``too_dilute`` or ``too_concentrated``.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class FillPlan:
    """What to draw into the bag, with the arithmetic that led there (volumes in mL, doses in cells)."""

    dose_cells: float
    counts_per_ml: tuple[float, ...]
    mean_concentration_per_ml: float
    count_cv: float
    volume_step_ml: float
    suspension_ml: float
    diluent_ml: float
    #: the volume formulated, overage included; the syringe holds final_volume_ml - overage_ml
    final_volume_ml: float
    #: the dose in the syringe
    expected_dose_cells: float
    #: expected / dose - 1: -0.01 is 1 % under the prescribed dose
    deviation_fraction: float
    #: the arithmetic in words, one line per step, for the technician's screen and the batch record
    steps: tuple[str, ...]
    #: formulated beyond the syringe's volume, for the retained sample and QC aliquots
    overage_ml: float = 0.0

    @property
    def syringe_ml(self) -> float:
        """The volume in the syringe, which holds the dose."""
        return float(Decimal(repr(self.final_volume_ml)) - Decimal(repr(self.overage_ml)))

    def explanation(self) -> list[str]:
        return list(self.steps)


# --------------------------------------------------------------------------------------------- helpers


def _decimal(value: object, what: str, reason: str) -> Decimal:
    """The number as written (a float through its shortest repr); refused if not a real number."""
    if isinstance(value, bool):
        raise DoseRefused(f"{what} must be a number, got {value!r}", reason=reason)
    number: Decimal | None = None
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, numbers.Real):
        try:
            number = Decimal(repr(float(value)))
        except (ValueError, OverflowError, InvalidOperation):
            number = None
    if number is not None:
        if number.is_snan():
            return Decimal("NaN")
        with localcontext() as ctx:
            ctx.prec = _INPUT_DIGITS
            return +number
    raise DoseRefused(f"{what} must be a number, got {value!r}", reason=reason)


def _positive(value: object, what: str, reason: str) -> Decimal:
    number = _decimal(value, what, reason)
    if not number.is_finite() or number <= 0:
        raise DoseRefused(f"{what} must be a positive finite number, got {_show(number)}", reason=reason)
    return number


def _show(number: Decimal) -> str:
    if number.is_nan():
        return "not a number (NaN)"
    if number.is_infinite():
        return "infinity" if number > 0 else "minus infinity"
    if number == 0 or Decimal("1e-6") <= abs(number) < Decimal("1e7"):
        return f"{number.normalize():f}"
    return _sci_short(number, 6)


def _sci(number: Decimal, significant: int = 3) -> str:
    """1.02e7 style: ``significant`` figures, no '+' or leading zero in the exponent."""
    mantissa, exponent = f"{number:.{significant - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _sci_short(number: Decimal, significant: int = 4) -> str:
    """Like :func:`_sci` but with trailing zeros dropped down to one decimal: 5.0e7, 1.05e7, 4.998e7."""
    mantissa, exponent = _sci(number, significant).split("e")
    if "." in mantissa:
        mantissa = mantissa.rstrip("0")
        if mantissa.endswith("."):
            mantissa += "0"
    return f"{mantissa}e{exponent}"


def _places(step: Decimal) -> int:
    """Decimal places of the step, for display (capped: a step finer than 1e-9 mL is shown to 9 places)."""
    exponent = step.normalize().as_tuple().exponent
    assert isinstance(exponent, int)  # step is finite
    return min(max(0, -exponent), 9)


def _ml(volume: Decimal, places: int) -> str:
    if abs(volume) >= _LARGE:
        return _sci(volume)
    return f"{volume:.{max(places, 1)}f}"


def _approx_ml(volume: Decimal, places: int) -> str:
    """'= 2.45' when the shown figure is exact, '≈ 4.902' otherwise (two more places than the step)."""
    if abs(volume) >= _LARGE:
        return f"≈ {_sci(volume)}"
    shown = volume.quantize(Decimal(1).scaleb(-(places + 2)), rounding=ROUND_HALF_UP)
    text = f"{shown:f}"
    if "." in text:
        text = text.rstrip("0")
        if len(text.split(".")[1]) < max(places + 1, 1):
            text = f"{shown:.{max(places + 1, 1)}f}"
    return f"= {text}" if shown == volume else f"≈ {text}"


def _percent(fraction: Decimal, places: int = 1) -> str:
    return f"{fraction * 100:+.{places}f} %"


@dataclass(frozen=True)
class _Parameters:
    lowest: Decimal
    highest: Decimal
    step: Decimal
    cv_limit: Decimal
    tol: Decimal
    min_aliquot: Decimal
    overage: Decimal


def _check_parameters(
    min_volume_ml: object,
    max_volume_ml: object,
    volume_step_ml: object,
    max_count_cv: object,
    tolerance: object,
    min_aliquot_ml: object,
    overage_ml: object,
) -> _Parameters:
    lowest = _positive(min_volume_ml, "minimum volume (min_volume_ml)", "parameter")
    highest = _positive(max_volume_ml, "maximum volume (max_volume_ml)", "parameter")
    step = _positive(volume_step_ml, "volume step (volume_step_ml)", "parameter")
    cv_limit = _decimal(max_count_cv, "count CV limit (max_count_cv)", "parameter")
    tol = _decimal(tolerance, "planning tolerance (tolerance)", "parameter")
    min_aliquot = _positive(min_aliquot_ml, "smallest measurable volume (min_aliquot_ml)", "parameter")
    overage = _decimal(overage_ml, "overage (overage_ml)", "parameter")
    if lowest > highest:
        raise DoseRefused(
            f"minimum volume {_show(lowest)} mL is above the maximum volume {_show(highest)} mL",
            reason="parameter",
        )
    if step > highest:
        raise DoseRefused(
            f"volume step {_show(step)} mL is larger than the maximum volume {_show(highest)} mL",
            reason="parameter",
        )
    if highest / step > MAX_STEPS:
        raise DoseRefused(
            f"volume step {_show(step)} mL is too fine: more than {MAX_STEPS:,} steps in the maximum volume "
            f"{_show(highest)} mL",
            reason="parameter",
        )
    if lowest % step != 0:
        raise DoseRefused(
            f"minimum volume {_show(lowest)} mL is not a whole number of {_show(step)} mL steps",
            reason="parameter",
        )
    if not cv_limit.is_finite() or cv_limit < 0:
        raise DoseRefused(
            f"count CV limit (max_count_cv) must be a finite fraction of at least 0, got {_show(cv_limit)}",
            reason="parameter",
        )
    if not tol.is_finite() or tol < 0 or tol >= 1:
        raise DoseRefused(
            "planning tolerance (tolerance) must be a fraction from 0 up to (not including) 1, "
            f"got {_show(tol)}",
            reason="parameter",
        )
    if min_aliquot > highest:
        raise DoseRefused(
            f"smallest measurable volume {_show(min_aliquot)} mL is above the maximum volume "
            f"{_show(highest)} mL",
            reason="parameter",
        )
    # The overage is drawn into the formulation too: it must be measurable in the same steps.
    if not overage.is_finite() or overage < 0 or overage > highest or overage % step != 0:
        raise DoseRefused(
            f"overage (overage_ml) must be 0 or a whole number of {_show(step)} mL steps up to the maximum "
            f"volume, got {_show(overage)}",
            reason="parameter",
        )
    return _Parameters(lowest, highest, step, cv_limit, tol, min_aliquot, overage)


def _check_counts(viable_counts_per_ml: object) -> list[Decimal]:
    if isinstance(viable_counts_per_ml, str | bytes) or not isinstance(viable_counts_per_ml, Iterable):
        raise DoseRefused(
            f"viable counts must be a list of numbers, got {viable_counts_per_ml!r}", reason="too_few_counts"
        )
    raw = list(viable_counts_per_ml)
    if len(raw) < 2:
        raise DoseRefused(
            f"need at least 2 replicate viable counts, got {len(raw)}: recount", reason="too_few_counts"
        )
    counts: list[Decimal] = []
    for position, value in enumerate(raw, start=1):
        what = f"viable count {position} of {len(raw)}"
        number = _decimal(value, what, "bad_count")
        if not number.is_finite() or number <= 0:
            unit = " cells/mL" if number.is_finite() else ""
            raise DoseRefused(
                f"{what} is {_show(number)}{unit}: every count must be a positive finite number - recount",
                reason="bad_count",
            )
        counts.append(number)
    return counts


# --------------------------------------------------------------------------------------------- the rule


def plan_fill(
    dose_cells: float,
    viable_counts_per_ml: Iterable[float],
    *,
    min_volume_ml: float = 5.0,
    max_volume_ml: float = 10.0,
    volume_step_ml: float = 0.1,
    max_count_cv: float = 0.10,
    tolerance: float = 0.05,
    min_aliquot_ml: float = 0.5,
    overage_ml: float = 0.0,
) -> FillPlan:
    """The fill for a prescribed dose D from replicate viable counts; :class:`DoseRefused` when there is none.

    Volumes are in mL, counts in viable cells/mL, the dose in viable cells. Half-way volumes round up.
    ``tolerance`` is the planning tolerance: the dose the plan puts in the syringe is within it of D.
    """
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        parameters = _check_parameters(
            min_volume_ml, max_volume_ml, volume_step_ml, max_count_cv, tolerance, min_aliquot_ml, overage_ml
        )
        dose = _positive(dose_cells, "dose (dose_cells)", "dose")
        counts = _check_counts(viable_counts_per_ml)
        return _plan(dose, counts, parameters)


def _to_step(volume: Decimal, step: Decimal) -> Decimal:
    return (volume / step).to_integral_value(rounding=ROUND_HALF_UP) * step


def _cells(number: Decimal) -> str:
    return format_cells(float(number), "count")


def _dose(number: Decimal) -> str:
    return format_cells(float(number), "dose")


def _mean_and_cv(counts: list[Decimal], cv_limit: Decimal) -> tuple[Decimal, Decimal]:
    n = len(counts)
    mean = sum(counts, Decimal(0)) / n
    sd = (sum(((c - mean) ** 2 for c in counts), Decimal(0)) / (n - 1)).sqrt()
    cv = sd / mean
    if cv > cv_limit:
        raise DoseRefused(
            f"counts disagree, CV {cv * 100:.1f} % above limit {cv_limit * 100:.1f} %: recount",
            reason="count_cv",
        )
    return mean, cv


def _pre_dilution(dose: Decimal, syringe: Decimal, formulated: Decimal, p: _Parameters) -> str:
    """What to do when the suspension is too concentrated: the concentration at which the suspension volume
    is measurable and its rounding stays inside the planning tolerance (rounded down: "at most")."""
    smallest = p.min_aliquot if p.tol == 0 else max(p.min_aliquot, p.step / (2 * p.tol))
    ceiling = dose * formulated / (syringe * smallest)
    exponent = ceiling.adjusted() - 2
    at_most = (ceiling.scaleb(-exponent).to_integral_value(rounding=ROUND_FLOOR)).scaleb(exponent)
    return f"pre-dilute to at most {_cells(at_most)} viable cells/mL and count again"


def _plan(dose: Decimal, counts: list[Decimal], p: _Parameters) -> FillPlan:
    places = _places(p.step)
    mean, cv = _mean_and_cv(counts, p.cv_limit)

    # The syringe holds the undiluted volume D / C, or the minimum; the formulation adds the overage.
    exact = dose / mean
    undiluted = _to_step(exact, p.step)
    if undiluted > p.highest:
        raise DoseRefused(
            f"too dilute: D/C {_approx_ml(exact, places)} mL ({_ml(undiluted, places)} mL in "
            f"{_ml(p.step, places)} mL steps) exceeds the maximum {_ml(p.highest, places)} mL"
            " - concentrate and recount",
            reason="too_dilute",
        )
    syringe = max(p.lowest, undiluted)
    formulated = syringe + p.overage
    needed = exact * formulated / syringe
    suspension = min(_to_step(needed, p.step), formulated)
    if suspension < p.min_aliquot:
        raise DoseRefused(
            f"too concentrated to measure: the suspension needed ({_approx_ml(needed, places)} mL) is below "
            f"the smallest measurable volume {_ml(p.min_aliquot, places)} mL - "
            + _pre_dilution(dose, syringe, formulated, p),
            reason="too_concentrated",
        )
    expected = mean * suspension * syringe / formulated
    deviation = expected / dose - 1
    if abs(deviation) > p.tol:
        raise DoseRefused(
            f"too concentrated to plan: the suspension needed ({_approx_ml(needed, places)} mL) rounds to "
            f"{_ml(suspension, places)} mL, putting {_cells(expected)} cells in the syringe "
            f"({_percent(deviation)}), outside the ±{p.tol * 100:.1f} % planning tolerance - "
            + _pre_dilution(dose, syringe, formulated, p),
            reason="too_concentrated",
        )
    diluent = max(Decimal(0), (formulated - suspension).quantize(p.step, rounding=ROUND_HALF_UP))
    return FillPlan(
        dose_cells=float(dose),
        counts_per_ml=tuple(float(c) for c in counts),
        mean_concentration_per_ml=float(mean),
        count_cv=float(cv),
        volume_step_ml=float(p.step),
        suspension_ml=float(suspension),
        diluent_ml=float(diluent),
        final_volume_ml=float(formulated),
        expected_dose_cells=float(expected),
        deviation_fraction=float(deviation),
        steps=_explain(dose, len(counts), mean, cv, exact, needed, suspension, syringe, expected, p),
        overage_ml=float(p.overage),
    )


def _explain(
    dose: Decimal,
    n: int,
    mean: Decimal,
    cv: Decimal,
    exact: Decimal,
    needed: Decimal,
    suspension: Decimal,
    syringe: Decimal,
    expected: Decimal,
    p: _Parameters,
) -> tuple[str, ...]:
    """The arithmetic in words, as the technician checks it by hand (no e-notation)."""
    places = _places(p.step)
    formulated = syringe + p.overage
    diluent = max(Decimal(0), formulated - suspension)
    step_text = f"{_ml(p.step, places)} mL steps, half-way rounds up"
    deviation = expected / dose - 1
    syringe_line = (
        f"syringe = max({_ml(p.lowest, places)}, D/C {_approx_ml(exact, places)}) = {_ml(syringe, places)} mL"
    )
    if p.overage:
        return (
            f"C = mean of {n} counts = {_cells(mean)} viable cells/mL (CV {cv * 100:.1f} %)",
            f"{syringe_line}; formulated = {_ml(syringe, places)} + {_ml(p.overage, places)} mL overage"
            f" = {_ml(formulated, places)} mL",
            f"suspension = {_dose(dose)} / {_cells(mean)} × {_ml(formulated, places)} /"
            f" {_ml(syringe, places)} {_approx_ml(needed, places)} mL → {_ml(suspension, places)} mL"
            f" ({step_text})",
            f"in the syringe = {_cells(mean)} × {_ml(suspension, places)} × {_ml(syringe, places)} /"
            f" {_ml(formulated, places)} = {_cells(expected)} ({_percent(deviation, 2)},"
            f" planning tolerance ±{p.tol * 100:.1f} %)",
            f"LR diluent = {_ml(formulated, places)} - {_ml(suspension, places)} = {_ml(diluent, places)} mL",
        )
    return (
        f"C = mean of {n} counts = {_cells(mean)} viable cells/mL (CV {cv * 100:.1f} %)",
        f"suspension = {_dose(dose)} / {_cells(mean)} {_approx_ml(exact, places)} mL"
        f" → {_ml(suspension, places)} mL ({step_text})",
        f"in the syringe = {_cells(mean)} × {_ml(suspension, places)} = {_cells(expected)}"
        f" ({_percent(deviation, 2)}, planning tolerance ±{p.tol * 100:.1f} %)",
        f"final volume = max({_ml(p.lowest, places)}, {_ml(suspension, places)}) = {_ml(syringe, places)} mL;"
        f" LR diluent = {_ml(diluent, places)} mL",
    )


# --------------------------------------------------------------------------------------------- the fill


def drawn_volume_range(
    plan: FillPlan, drawn: str, *, tolerance: float, min_volume_ml: float, max_volume_ml: float
) -> tuple[float, float]:
    """The volumes of ``drawn`` ("suspension_ml" or "diluent_ml") the fill step accepts, the other volume as
    planned: those whose dose in the syringe stays within ``tolerance`` of the prescription (the planning
    tolerance), and for the diluent, whose syringe holds ``min_volume_ml`` to ``max_volume_ml``.

    The syringe holds S = V_s + V_d - overage at the formulation's concentration C x V_s / (V_s + V_d), so its
    dose is C x V_s x S / (V_s + V_d). Without an overage that is C x V_s: any diluent keeps the dose, and the
    suspension's range is D (1 ± tol) / C. A step either side of the plan is not the rule: on a 0.5 mL plan
    one 0.1 mL step is 20 % of the dose.
    """
    c, ov = plan.mean_concentration_per_ml, plan.overage_ml
    low_dose, high_dose = plan.dose_cells * (1 - tolerance), plan.dose_cells * (1 + tolerance)
    vs, vd = plan.suspension_ml, plan.diluent_ml
    if drawn == "suspension_ml":
        # C vs^2 + (C (vd - ov) - T) vs - T vd = 0, its positive root (the dose rises with vs)
        def root(target: float) -> float:
            b = c * (vd - ov) - target
            return (-b + math.sqrt(b * b + 4 * c * target * vd)) / (2 * c)

        # (the syringe's volume is the diluent's to make up: it is checked there)
        low, high = root(low_dose), root(high_dose)
    elif drawn == "diluent_ml":
        low, high = min_volume_ml + ov - vs, max_volume_ml + ov - vs
        if ov > 0:
            # the dose rises with the diluent (less of the cells leave with the overage); solve for vd
            def diluent_for(target: float) -> float:
                return (target * vs - c * vs * (vs - ov)) / (c * vs - target) if c * vs > target else math.inf

            low, high = max(low, diluent_for(low_dose)), min(high, diluent_for(high_dose))
    else:
        raise ValueError(f"the fill plan draws suspension_ml and diluent_ml, not {drawn!r}")
    # To the microlitre, inwards: what is shown is what is accepted.
    return math.ceil(max(0.0, low) * 1000 - 1e-9) / 1000, math.floor(max(0.0, high) * 1000 + 1e-9) / 1000
