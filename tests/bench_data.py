"""The bench set-up and in-spec step values live in mfg.demo (the demo uses them too)."""

from mfg.demo import (
    PERFORMER,
    STEP_SEQUENCE,
    Bench,
    local,
    open_container,
    set_up_bench,
    step_values,
)

__all__ = [
    "PERFORMER",
    "STEP_SEQUENCE",
    "Bench",
    "local",
    "open_container",
    "set_up_bench",
    "step_values",
]
