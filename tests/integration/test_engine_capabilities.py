"""The step engine knows no study: a second study's master batch record, with its own step keys, runs on it by
configuration, its read models find steps by role, and a capability plugs in through the one interface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.custody.models import Container, ContainerParent
from mfg.errors import ValidationRefused
from mfg.process import batches, extensions, growth, steps, versions
from mfg.process.extensions import Capability, StepContext
from mfg.process.mbr import FieldDef, MbrDefinitionError
from mfg.process.mbr_file import parse_mbr
from mfg.process.models import Batch, StepRecord
from mfg.process.rules import ParsedValue
from mfg.study.definition import Processes, StudyDefinition
from mfg.study.models import Subject
from tests.bench_data import local
from tests.conftest import PASSWORD, World

OTHER_MBR = """
[mbr]
code = "OTHER-MBR"
version = 1
title = "Another autologous product: isolate, grow, count"
study = "other"
late_entry_minutes = 30
{capability}

[[stages]]
key = "isolate"
name = "Isolation"
  [[stages.steps]]
  key = "seed_flasks"
  role = "seed"
  title = "Seed the first flasks"
  instructions = "Seed the isolated cells."
  roles = ["technician"]
  at_workstation = false
  creates = [{{ kind = "culture_flask", contents = "first culture" }}]
    [[stages.steps.fields]]
    key = "seeded_cells"
    label = "Cells seeded"
    type = "number"
    [[stages.steps.fields]]
    key = "seeded_at"
    label = "Seeded at"
    type = "datetime"

[[stages]]
key = "grow"
name = "Growth"
  [[stages.steps]]
  key = "split"
  role = "passage"
  title = "Split the culture"
  instructions = "Harvest, count, re-seed."
  roles = ["technician"]
  at_workstation = false
  repeat_max = 4
    [[stages.steps.fields]]
    key = "harvested_at"
    label = "Harvested at"
    type = "datetime"
    [[stages.steps.fields]]
    key = "harvested_cells"
    label = "Cells harvested"
    type = "number"
    [[stages.steps.fields]]
    key = "viability"
    label = "Viability"
    type = "number"
    unit = "%"
    [[stages.steps.fields]]
    key = "replated_cells"
    label = "Cells re-seeded"
    type = "number"
    [[stages.steps.fields]]
    key = "fold"
    label = "Fold expansion (computed)"
    type = "computed"
    computes = "fold"
    min = 2
"""


class FoldExpansion(Capability):
    """A capability of the kind release testing and custody will be: computes a field, follows up a step."""

    name = "fold_test"

    def __init__(self) -> None:
        self.followed_up: list[tuple[str, dict[str, str]]] = []

    def computed_value(
        self, ctx: StepContext, field: FieldDef, typed: Mapping[str, ParsedValue]
    ) -> tuple[FieldDef, ParsedValue]:
        assert field.computes == "fold"
        seeded = ctx.session.scalar(select(StepRecord.id).where(StepRecord.batch_id == ctx.batch.id))
        assert seeded is not None
        harvested = typed["harvested_cells"].number or 0.0
        replated = typed["replated_cells"].number or 1.0
        fold = harvested / replated
        return field, ParsedValue(f"{fold:.1f}", fold)

    def after_step(
        self,
        ctx: StepContext,
        record: StepRecord,
        values: Mapping[str, ParsedValue],
        created: list[Container],
    ) -> None:
        self.followed_up.append((ctx.step.key, {k: v.text for k, v in values.items()}))


def _other_study(study: StudyDefinition) -> StudyDefinition:
    return replace(study, processes=Processes(collection_mbr="OTHER-MBR", dose_mbr="OTHER-DOSE"))


def _approved(session: Session, world: World, text: str) -> None:
    version = versions.register_mbr(session, "test-setup", text)
    versions.approve_mbr(session, world.users["qa"], PASSWORD, version)
    session.commit()


def _record(
    session: Session, world: World, study: StudyDefinition, batch: Batch, key: str, **values: str
) -> None:
    steps.record_step(
        session, world.users["technician"], PASSWORD, batch, key, steps.StepSubmission(values), study
    )
    session.commit()


def test_a_second_study_runs_on_the_engine_by_configuration(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    capability = FoldExpansion()
    extensions.register(capability)
    _approved(session, world, OTHER_MBR.format(capability='capability = "fold_test"'))
    other = _other_study(study)
    batch = batches.start_batch(session, world.users["coordinator"], subject, other)
    session.commit()
    assert batches.batch_mbr(session, batch).code == "OTHER-MBR"
    start = clock.now() - timedelta(days=6)
    _record(session, world, other, batch, "isolate.seed_flasks", seeded_cells="1e6", seeded_at=local(start))
    for number, (harvested, replated) in enumerate([("8e6", "2e6"), ("1.6e7", "4e6")], start=1):
        _record(
            session,
            world,
            other,
            batch,
            "grow.split",
            harvested_at=local(start + timedelta(days=3 * number)),
            harvested_cells=harvested,
            viability="95",
            replated_cells=replated,
        )
    # The growth read model finds the seeding and the passages by their role, not by aaMSC's step keys.
    grown = growth.passages(session, batch)
    assert [(p.seeded_cells, p.harvested_cells) for p in grown] == [(1e6, 8e6), (2e6, 1.6e7)]
    # The capability computed its field (checked against the MBR's range) and followed up each step.
    values = batches.current_values(session, batches.latest_record(session, batch, "grow.split"))  # type: ignore[arg-type]
    assert values["fold"].value == "4.0" and values["fold"].in_spec
    assert [key for key, _ in capability.followed_up] == ["isolate.seed_flasks", "grow.split", "grow.split"]
    assert capability.followed_up[-1][1]["harvested_cells"] == "1.6e+07"
    # The flask the seeding created belongs to this subject and this collection.
    flask = session.scalar(select(Container).where(Container.din == batch.din))
    assert flask is not None and flask.subject_id == subject.id
    assert session.scalar(select(ContainerParent).where(ContainerParent.child_id == flask.id)) is None


def test_an_mbr_whose_capability_is_not_installed_is_refused_by_name(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    _approved(session, world, OTHER_MBR.format(capability='capability = "release_testing"'))
    other = _other_study(study)
    batch = batches.start_batch(session, world.users["coordinator"], subject, other)
    session.commit()
    with pytest.raises(ValidationRefused, match="needs the 'release_testing' capability"):
        _record(
            session,
            world,
            other,
            batch,
            "isolate.seed_flasks",
            seeded_cells="1e6",
            seeded_at=local(clock.now()),
        )
    session.rollback()
    assert batches.step_records(session, batch) == []


def test_without_a_capability_a_computed_field_is_refused_not_guessed(
    session: Session, world: World, study: StudyDefinition, subject: Subject
) -> None:
    _approved(session, world, OTHER_MBR.format(capability=""))
    other = _other_study(study)
    batch = batches.start_batch(session, world.users["coordinator"], subject, other)
    session.commit()
    _record(
        session, world, other, batch, "isolate.seed_flasks", seeded_cells="1e6", seeded_at=local(clock.now())
    )
    with pytest.raises(ValidationRefused, match="no capability of this master batch record computes"):
        _record(
            session,
            world,
            other,
            batch,
            "grow.split",
            harvested_at=local(clock.now()),
            harvested_cells="8e6",
            viability="95",
            replated_cells="2e6",
        )


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (('role = "passage"', 'role = "seed"'), "role 'seed' is already played by another step"),
        (('role = "passage"', 'role = "incubate"'), "role 'incubate' is not one of"),
        (('key = "replated_cells"', 'key = "reseeded"'), "a 'passage' step records replated_cells"),
        (('computes = "fold"', ""), "a computed field, and only a computed field, names what it computes"),
        (("repeat_max = 4", "repeats = 4"), "unknown settings ['repeats']"),
    ],
)
def test_roles_and_computed_fields_are_checked_when_the_mbr_is_loaded(
    change: tuple[str, str], problem: str
) -> None:
    text = OTHER_MBR.format(capability="").replace(*change, 1)
    with pytest.raises(MbrDefinitionError) as refused:
        parse_mbr(text)
    assert problem in str(refused.value)
