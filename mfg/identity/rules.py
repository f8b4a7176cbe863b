"""Pure rules about people: roles, what administrators may not do, separation of duties, signed content."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mfg.audit.rules import canonical_json, sha256_hex
from mfg.errors import PermissionRefused, SignatureRefused

TECHNICIAN = "technician"
SUPERVISOR = "supervisor"
QC_ANALYST = "qc_analyst"
QA = "qa"
PHARMACIST = "pharmacist"
NURSE = "nurse"
COORDINATOR = "coordinator"
INVESTIGATOR = "investigator"
ADMIN = "admin"

ROLES: tuple[str, ...] = (
    TECHNICIAN,
    SUPERVISOR,
    QC_ANALYST,
    QA,
    PHARMACIST,
    NURSE,
    COORDINATOR,
    INVESTIGATOR,
    ADMIN,
)
ROLE_TITLES: Mapping[str, str] = {
    TECHNICIAN: "GMP lab technician",
    SUPERVISOR: "Lab supervisor",
    QC_ANALYST: "QC analyst",
    QA: "QA reviewer",
    PHARMACIST: "Pharmacist",
    NURSE: "Infusion nurse",
    COORDINATOR: "Clinical site coordinator",
    INVESTIGATOR: "Investigator",
    ADMIN: "Administrator",
}
GMP_ROLES: frozenset[str] = frozenset(ROLES) - {ADMIN}

MEANINGS: tuple[str, ...] = (
    "performed",
    "verified",
    "reviewed",
    "approved",
    "released",
    "rejected",
    "dispensed",
    "administered",
)


def require_gmp_actor(role: str) -> None:
    """Administrators manage accounts, sites and workstations; they never perform or sign GMP actions."""
    if role not in GMP_ROLES:
        raise PermissionRefused(f"the {ROLE_TITLES.get(role, role)} role cannot perform GMP actions")


def require_different_person(performer_username: str, verifier_username: str, what: str) -> None:
    """Separation of duties: whoever checks a thing is not whoever did it."""
    if performer_username == verifier_username:
        raise SignatureRefused(
            f"{verifier_username} performed {what} and cannot also verify it: a second person must sign"
        )


def content_sha256(entity_type: str, entity_id: str, fields: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical form of what a signature covers."""
    return sha256_hex(
        canonical_json({"entity_type": entity_type, "entity_id": entity_id, "fields": dict(fields)})
    )
