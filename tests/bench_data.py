"""The bench set-up and in-spec step values live in mfg.demo (the demo uses them too)."""

from mfg.demo import (
           LAB_ZONE,
           PERFORMER,
           STEP_SEQUENCE,
           Bench,
           local,
           open_container,
           set_up_bench,
           step_values,
)

__all__ = ["LAB_ZONE", "PERFORMER", "STEP_SEQUENCE", "Bench", "local", "open_container", "set_up_bench",
           "step_values"]
