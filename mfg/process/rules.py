"""Pure rules of step execution: parsing what was typed or scanned, specifications, and step order."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from mfg.errors import Refusal, ValidationRefused
from mfg.process.mbr import FieldDef, MasterBatchRecord, StepDef


class BatchStopped(Refusal):
    """The batch is on hold (critical deviation not yet assessed) or finished."""


class StepOrderRefused(Refusal):
    """The step cannot be recorded now: an earlier step is not done, or this one is complete."""


class MissingFields(ValidationRefused):
    """Required fields are empty; the message lists them."""


YES = ("yes", "y", "true", "1", "on")
NO = ("no", "n", "false", "0", "off")


class FieldInputError(ValueError):
    """What was entered cannot be a value of the field; the message names the field."""


@dataclass(frozen=True)
class ParsedValue:
    text: str
    number: float | None = None
    #: a computed value its capability has already judged against its own specification
    judged_in_spec: bool | None = None


def parse_number(field: FieldDef, raw: str) -> ParsedValue:
    cleaned = raw.strip().replace(" ", "").replace("\u00a0", "")
    try:
        number = float(cleaned)
    except ValueError:
        raise FieldInputError(f"{field.label}: {raw!r} is not a number") from None
    if not math.isfinite(number):
        raise FieldInputError(f"{field.label}: {raw!r} is not a finite number")
    return ParsedValue(text=f"{number:g}" if abs(number) < 1e15 else repr(number), number=number)


def parse_check(field: FieldDef, raw: str) -> ParsedValue:
    answer = raw.strip().lower()
    if answer in YES:
        return ParsedValue("yes")
    if answer in NO:
        return ParsedValue("no")
    raise FieldInputError(f"{field.label}: answer yes or no, not {raw!r}")


def parse_choice(field: FieldDef, raw: str) -> ParsedValue:
    if raw.strip() not in field.options:
        raise FieldInputError(f"{field.label}: {raw!r} is not one of {', '.join(field.options)}")
    return ParsedValue(raw.strip())


def in_spec(field: FieldDef, value: ParsedValue) -> bool:
    """Within the acceptance criteria of the MBR. Out of spec is recorded all the same, with a deviation."""
    if value.judged_in_spec is not None:
        return value.judged_in_spec
    if value.number is not None:
        if field.low is not None and value.number < field.low:
            return False
        if field.high is not None and value.number > field.high:
            return False
    if field.type == "choice" and field.accept:
        return value.text in field.accept
    if field.type == "check" and field.expected is not None:
        return value.text == ("yes" if field.expected else "no")
    return True


def late_entry(performed_at: datetime, entered_at: datetime, limit_minutes: int) -> bool:
    return (entered_at - performed_at).total_seconds() > limit_minutes * 60


@dataclass(frozen=True)
class StepProgress:
    """What the batch has recorded for one step."""

    count: int = 0
    awaiting_verification: bool = False


class _Recorded(Protocol):
    step_key: str
    status: str


def progress(records: Iterable[_Recorded]) -> dict[str, StepProgress]:
    """What each step has recorded, from the batch's step records."""
    result: dict[str, StepProgress] = {}
    for record in records:
        before = result.get(record.step_key, StepProgress())
        result[record.step_key] = StepProgress(
            count=before.count + 1,
            awaiting_verification=before.awaiting_verification or record.status == "awaiting_verification",
        )
    return result


def step_problem(mbr: MasterBatchRecord, step: StepDef, progress: Mapping[str, StepProgress]) -> str:
    """Empty when the step may be recorded now, else why not (named for the technician)."""
    mine = progress.get(step.key, StepProgress())
    if mine.awaiting_verification:
        return f"'{step.title}' is waiting for second-person verification"
    if mine.count >= step.repeat_max:
        return f"'{step.title}' is already recorded" + (f" {mine.count} times" if step.repeat_max > 1 else "")
    for successor in mbr.successors(step.key):
        if progress.get(successor, StepProgress()).count:
            return f"'{step.title}' cannot be recorded: '{mbr.step(successor).title}' has already started"
    for key in step.after:
        before = mbr.step(key)
        done = progress.get(key, StepProgress())
        if done.count < before.repeat_min or done.awaiting_verification:
            return f"'{step.title}' comes after '{before.title}', which is not done yet"
    return ""


def available_steps(mbr: MasterBatchRecord, progress: Mapping[str, StepProgress]) -> list[StepDef]:
    return [step for step in mbr.steps if not step_problem(mbr, step, progress)]
