"""The composition root of the step engine's plug-ins: which capability serves an MBR that names one.

Every entry point (the web application, the CLI, the test suite) installs them at start-up; the engine itself
imports none, so process knows no dose and no import runs back from process to dosing.
"""

from __future__ import annotations

from mfg.process import extensions


def install() -> None:
    from mfg.dosing.preparation import DosePreparation

    extensions.register(DosePreparation())
