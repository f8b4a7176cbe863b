"""Registers of reagent lots and equipment, and the checks made when either is scanned at the bench."""
