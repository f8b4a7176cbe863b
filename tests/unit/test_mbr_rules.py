"""The MBR engine's pure rules: definitions checked on load, step order, parallel branches, late entry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mfg.process.mbr import MbrDefinitionError, packaged_mbr_text
from mfg.process.mbr_file import parse_mbr
from mfg.process.rules import StepProgress, available_steps, late_entry, step_problem

PARALLEL = """
[mbr]
code = "T"
version = 1
title = "parallel branches"
study = "aamsc"

[[stages]]
key = "s"
name = "Stage"
  [[stages.steps]]
  key = "start"
  title = "Start"
  instructions = "Begin."
  [[stages.steps]]
  key = "left"
  title = "Left branch"
  instructions = "One branch."
  after = ["s.start"]
  [[stages.steps]]
  key = "right"
  title = "Right branch"
  instructions = "The other branch."
  after = ["s.start"]
  [[stages.steps]]
  key = "join"
  title = "Join"
  instructions = "Both branches done."
  after = ["s.left", "s.right"]
"""


def test_the_shipped_mbrs_load() -> None:
    main = parse_mbr(packaged_mbr_text())
    dose = parse_mbr(packaged_mbr_text("aamsc_dose"))
    assert main.steps[0].key == "collection.harvest" and main.step("expansion.passage").repeat_max == 8
    assert [s.key for s in dose.steps][-1] == "dose.label"


def test_parallel_branches_only_where_the_mbr_says_so() -> None:
    mbr = parse_mbr(PARALLEL)
    assert [s.key for s in available_steps(mbr, {})] == ["s.start"]
    after_start = {"s.start": StepProgress(count=1)}
    assert [s.key for s in available_steps(mbr, after_start)] == ["s.left", "s.right"]
    assert "comes after 'Right branch'" in step_problem(
        mbr, mbr.step("s.join"), {**after_start, "s.left": StepProgress(count=1)}
    )
    both = {**after_start, "s.left": StepProgress(count=1), "s.right": StepProgress(count=1)}
    assert [s.key for s in available_steps(mbr, both)] == ["s.join"]


def test_a_step_waiting_for_verification_holds_its_successors() -> None:
    mbr = parse_mbr(PARALLEL)
    waiting = {"s.start": StepProgress(count=1, awaiting_verification=True)}
    assert available_steps(mbr, waiting) == []
    assert "waiting for second-person verification" in step_problem(mbr, mbr.step("s.start"), waiting)


def test_a_repeatable_step_closes_once_its_successor_starts() -> None:
    mbr = parse_mbr(packaged_mbr_text())
    progress = {
        key: StepProgress(count=1)
        for key in (
            "collection.harvest",
            "collection.handoff",
            "receipt.accept",
            "processing.digest",
            "processing.separate",
            "processing.svf_count",
            "processing.plate_p0",
            "expansion.passage",
        )
    }
    assert not step_problem(mbr, mbr.step("expansion.passage"), progress)  # passage 2 is allowed
    progress["cryobank.freeze"] = StepProgress(count=1)
    assert "has already started" in step_problem(mbr, mbr.step("expansion.passage"), progress)


def test_late_entries_are_measured_against_the_limit() -> None:
    done = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    assert not late_entry(done, done + timedelta(minutes=30), 30)
    assert late_entry(done, done + timedelta(minutes=31), 30)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('after = ["s.start"]', 'after = ["s.nowhere"]'),
            "comes after 's.nowhere', which is not an earlier step",
        ),
        (('title = "Start"', 'title = ""'), "title must be a non-empty string"),
        (("version = 1", "version = 0"), "version must be a whole number from 1"),
        (('instructions = "Begin."', 'instructions = "Begin."\n  roles = ["admin"]'), "roles must be from"),
    ],
)
def test_a_wrong_mbr_is_refused_with_the_step_named(change: tuple[str, str], message: str) -> None:
    with pytest.raises(MbrDefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_mbr(PARALLEL.replace(*change, 1))


def test_field_settings_are_validated() -> None:
    text = packaged_mbr_text().replace("min = 36.0\n    max = 38.0", "min = 38.0\n    max = 36.0", 1)
    with pytest.raises(MbrDefinitionError, match="digestion_temperature: min 38 is above max 36"):
        parse_mbr(text)
