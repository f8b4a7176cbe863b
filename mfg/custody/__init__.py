"""Containers, their lineage, DIN allocation and (later) hand-offs."""
