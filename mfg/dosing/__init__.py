"""Dose preparation: how much cell suspension and diluent make up the prescribed dose."""

from mfg.dosing.rules import DoseRefused, FillPlan, plan_fill

__all__ = ["DoseRefused", "FillPlan", "plan_fill"]
