"""The growth read model: the passages a batch recorded, as the expansion arithmetic needs them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy.orm import Session

from mfg.process.batches import batch_mbr, step_records, values_by_record
from mfg.process.expansion import Passage
from mfg.process.models import Batch, FieldValue, current_of


def passages(
    session: Session, batch: Batch, values: Mapping[int, list[FieldValue]] | None = None
) -> list[Passage]:
    """Each harvest's seeded cells and time come from the seeding step (P0) or the previous passage's
    re-plate. Steps are found by their role in the MBR ("seed", "passage"), not by a study's step keys;
    ``values`` (from ``values_by_record``) saves a page one query per passage."""
    mbr = batch_mbr(session, batch)
    seed, passage = mbr.step_for_role("seed"), mbr.step_for_role("passage")
    if seed is None or passage is None:
        return []
    records = step_records(session, batch)
    values_of = values if values is not None else values_by_record(session, batch)
    plate = next((r for r in records if r.step_key == seed.key), None)
    if plate is None:
        return []
    plate_values = current_of(values_of.get(plate.id, []))
    seeded = plate_values.get("seeded_cells")
    seeded_at_row = plate_values.get("seeded_at")
    if seeded is None or seeded.number is None:
        return []
    seeded_cells = seeded.number
    seeded_at = datetime.fromisoformat(seeded_at_row.value) if seeded_at_row else plate.performed_at
    result: list[Passage] = []
    for record in (r for r in records if r.step_key == passage.key):
        values = current_of(values_of.get(record.id, []))
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
