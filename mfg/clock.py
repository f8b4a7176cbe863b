"""The system's one clock: every "now" and every "today" comes from here, never from ``date.today()`` or a
zone-less ``datetime.now()``.

Instants are aware UTC datetimes (stored and hashed as UTC). A *day* is always the facility's day: a lot that
expires on 2026-11-27 is usable until midnight in the lab's zone, not until midnight in the server's zone or
in UTC. Tests pin the clock to an instant (``pinned``) so that date rules are checked at 00:30 UTC, on a
daylight-saving change or at 23:30 facility time, whatever the hour the suite runs.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

_lock = threading.Lock()
_offset = timedelta(0)
_frozen: datetime | None = None
_facility_zone: str | None = None


def now() -> datetime:
    """The current instant in UTC (aware), to the microsecond both databases keep."""
    frozen = _frozen
    if frozen is not None:
        return frozen
    return datetime.now(UTC) + _offset


@lru_cache(maxsize=8)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def use_facility_zone(name: str) -> None:
    """Set by the application and the CLI from the study definition's facility."""
    global _facility_zone
    zone(name)  # an unknown zone fails here, at start-up
    _facility_zone = name


def facility_zone() -> ZoneInfo:
    """The facility's zone: the configured one, else that of the study named by ``MFG_STUDY``."""
    global _facility_zone
    if _facility_zone is None:
        from mfg.study.definition import DEFAULT_STUDY, load_study

        _facility_zone = load_study(os.environ.get("MFG_STUDY", DEFAULT_STUDY)).facility.time_zone
    return zone(_facility_zone)


def local_now() -> datetime:
    """The current instant on the facility's wall clock."""
    return now().astimezone(facility_zone())


def today() -> date:
    """Today's date at the facility (its zone, not the server's, not UTC's)."""
    return local_now().date()


def to_local(moment: datetime) -> datetime:
    """An instant on the facility's wall clock (for display, for "the day of use")."""
    return moment.astimezone(facility_zone())


def from_local(wall_clock: datetime) -> datetime:
    """A facility wall-clock time (naive, as a form sends it) as a UTC instant."""
    if wall_clock.tzinfo is None:
        wall_clock = wall_clock.replace(tzinfo=facility_zone())
    return wall_clock.astimezone(UTC)


@contextmanager
def pinned(instant: datetime, *, frozen: bool = False) -> Iterator[None]:
    """Run as if the clock read ``instant`` on entry. It keeps ticking from there unless ``frozen``.

    For tests and rehearsals only: the server never moves its own clock.
    """
    if instant.tzinfo is None:
        raise ValueError("pin the clock to an aware instant")
    global _offset, _frozen
    with _lock:
        saved = (_offset, _frozen)
        if frozen:
            _frozen = instant.astimezone(UTC)
        else:
            _frozen = None
            _offset = instant.astimezone(UTC) - datetime.now(UTC)
    try:
        yield
    finally:
        with _lock:
            _offset, _frozen = saved
