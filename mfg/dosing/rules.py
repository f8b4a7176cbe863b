"""Pure fill arithmetic: from a prescribed dose and replicate viable counts to the volumes drawn into the bag.

The rule:

* C = mean of the replicate viable counts (cells/mL). At least 2 counts, every one positive and finite, and
  their coefficient of variation (sample standard deviation, n - 1, over the mean) at most ``max_count_cv``.
* suspension volume V = D / C rounded to the nearest ``volume_step_ml``.
* V above ``max_volume_ml``: too dilute, refused. V = 0, or C x V off D by more than ``tolerance`` (relative):
  too concentrated to measure with the syringe step, refused.
* final volume = max(``min_volume_ml``, V); lactated Ringer's diluent = final - V.

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

import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation, localcontext

from mfg.errors import ValidationRefused

__all__ = ["DoseRefused", "FillPlan", "plan_fill"]

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
    final_volume_ml: float
    expected_dose_cells: float
    #: expected / dose - 1: -0.01 is 1 % under the prescribed dose
    deviation_fraction: float
    #: the arithmetic in words, one line per step, for the technician's screen and the batch record
    steps: tuple[str, ...]

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


def _check_parameters(
    min_volume_ml: object,
    max_volume_ml: object,
    volume_step_ml: object,
    max_count_cv: object,
    tolerance: object,
) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
    lowest = _positive(min_volume_ml, "minimum volume (min_volume_ml)", "parameter")
    highest = _positive(max_volume_ml, "maximum volume (max_volume_ml)", "parameter")
    step = _positive(volume_step_ml, "volume step (volume_step_ml)", "parameter")
    cv_limit = _decimal(max_count_cv, "count CV limit (max_count_cv)", "parameter")
    tol = _decimal(tolerance, "dose tolerance (tolerance)", "parameter")
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
            f"dose tolerance (tolerance) must be a fraction from 0 up to (not including) 1, got {_show(tol)}",
            reason="parameter",
        )
    return lowest, highest, step, cv_limit, tol


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
    tolerance: float = 0.10,
) -> FillPlan:
    """The fill for a prescribed dose D from replicate viable counts; :class:`DoseRefused` when there is none.

    Volumes are in mL, counts in viable cells/mL, the dose in viable cells. Half-way volumes round up.
    """
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        lowest, highest, step, cv_limit, tol = _check_parameters(
            min_volume_ml, max_volume_ml, volume_step_ml, max_count_cv, tolerance
        )
        dose = _positive(dose_cells, "dose (dose_cells)", "dose")
        counts = _check_counts(viable_counts_per_ml)
        return _plan(dose, counts, lowest, highest, step, cv_limit, tol)


def _plan(
    dose: Decimal,
    counts: list[Decimal],
    lowest: Decimal,
    highest: Decimal,
    step: Decimal,
    cv_limit: Decimal,
    tol: Decimal,
) -> FillPlan:
    places = _places(step)
    n = len(counts)

    # C and the agreement of the replicates
    mean = sum(counts, Decimal(0)) / n
    sd = (sum(((c - mean) ** 2 for c in counts), Decimal(0)) / (n - 1)).sqrt()
    cv = sd / mean
    if cv > cv_limit:
        raise DoseRefused(
            f"counts disagree, CV {cv * 100:.1f} % above limit {cv_limit * 100:.1f} %: recount",
            reason="count_cv",
        )

    # V = D / C to the nearest step, half-way up
    exact = dose / mean
    suspension = (exact / step).to_integral_value(rounding=ROUND_HALF_UP) * step
    step_text = f"{_ml(step, places)} mL steps, half-way rounds up"
    if suspension > highest:
        raise DoseRefused(
            f"too dilute: D/C {_approx_ml(exact, places)} mL ({_ml(suspension, places)} mL in "
            f"{_ml(step, places)} mL steps) exceeds the maximum {_ml(highest, places)} mL"
            " - concentrate and recount",
            reason="too_dilute",
        )
    if suspension == 0:
        raise DoseRefused(
            f"too concentrated to measure: D/C {_approx_ml(exact, places)} mL rounds to "
            f"{_ml(suspension, places)} mL in {_ml(step, places)} mL steps - pre-dilute and recount",
            reason="too_concentrated",
        )
    expected = mean * suspension
    deviation = expected / dose - 1
    if abs(deviation) > tol:
        raise DoseRefused(
            f"too concentrated to measure: D/C {_approx_ml(exact, places)} mL rounds to "
            f"{_ml(suspension, places)} mL, delivering {_sci(expected)} cells ({_percent(deviation)}), "
            f"outside the ±{tol * 100:.1f} % tolerance - pre-dilute and recount",
            reason="too_concentrated",
        )

    final = max(lowest, suspension)
    diluent = max(Decimal(0), (final - suspension).quantize(step, rounding=ROUND_HALF_UP))

    steps = (
        f"C = mean of {n} counts = {_sci(mean)} viable cells/mL (CV {cv * 100:.1f} %)",
        f"suspension = {_sci_short(dose)} / {_sci(mean)} {_approx_ml(exact, places)} mL"
        f" → {_ml(suspension, places)} mL ({step_text})",
        f"delivered = {_sci(mean)} × {_ml(suspension, places)} = {_sci_short(expected)}"
        f" ({_percent(deviation)}, tolerance ±{tol * 100:.1f} %)",
        f"final volume = max({_ml(lowest, places)}, {_ml(suspension, places)}) = {_ml(final, places)} mL;"
        f" LR diluent = {_ml(diluent, places)} mL",
    )
    return FillPlan(
        dose_cells=float(dose),
        counts_per_ml=tuple(float(c) for c in counts),
        mean_concentration_per_ml=float(mean),
        count_cv=float(cv),
        volume_step_ml=float(step),
        suspension_ml=float(suspension),
        diluent_ml=float(diluent),
        final_volume_ml=float(final),
        expected_dose_cells=float(expected),
        deviation_fraction=float(deviation),
        steps=steps,
    )
