"""DIN numbers: unique and consecutive per facility and year, also when many terminals ask at once."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from labels import isbt128
from mfg.audit import service as audit_service
from mfg.custody import service as custody_service
from mfg.custody.models import DinSequence
from mfg.db import make_engine, make_session_factory
from mfg.errors import ValidationRefused


def test_dins_start_at_one_and_count_up_per_facility_and_year(session: Session) -> None:
    first = custody_service.allocate_din(session, "tester", "A9999", 2026)
    second = custody_service.allocate_din(session, "tester", "A9999", 2026)
    other_year = custody_service.allocate_din(session, "tester", "A9999", 2027)
    other_facility = custody_service.allocate_din(session, "tester", "W1234", 2026)
    session.commit()
    assert first.code == "=A99992600000100"
    assert second.sequence == 2
    assert (other_year.year, other_year.sequence) == (27, 1)
    assert (other_facility.facility_id, other_facility.sequence) == ("W1234", 1)
    assert isbt128.parse(second.code) == second
    assert audit_service.verify(session).ok


def test_an_exhausted_year_is_refused_not_wrapped(session: Session) -> None:
    custody_service.allocate_din(session, "tester", "A9999", 2026)
    counter = session.get(DinSequence, ("A9999", 26))
    assert counter is not None
    audit_service.update(session, "tester", counter, reason="test: near the end", last_number=999_999)
    with pytest.raises(ValidationRefused, match="exhausted"):
        custody_service.allocate_din(session, "tester", "A9999", 2026)


def test_eight_concurrent_workers_get_unique_consecutive_dins(database_url: str) -> None:
    engine = make_engine(database_url)  # as the application configures it
    session_factory = make_session_factory(engine)
    per_worker = 25
    results: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def worker(name: str) -> None:
        try:
            start.wait()
            for _ in range(per_worker):
                with session_factory() as session:
                    din = custody_service.allocate_din(session, name, "A9999", 2026)
                    session.commit()
                with lock:
                    results.append(din.sequence)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(f"terminal{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(results) == list(range(1, 8 * per_worker + 1))
    with session_factory() as session:
        counter = session.scalar(select(DinSequence))
        assert counter is not None and counter.last_number == 8 * per_worker
        assert audit_service.verify(session).ok
    engine.dispose()
