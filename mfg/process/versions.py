"""Master batch record versions: registered as drafts, approved by QA with an e-signature, kept by batches."""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from mfg import clock
from mfg.audit import service as audit_service
from mfg.errors import PermissionRefused, ValidationRefused
from mfg.identity import rules as identity_rules
from mfg.identity import service as identity_service
from mfg.identity.models import User
from mfg.process.mbr import MasterBatchRecord, MbrDefinitionError
from mfg.process.mbr_file import parse_mbr
from mfg.process.models import MbrVersion
from mfg.text import checked_text


@lru_cache(maxsize=16)
def _parsed(definition: str) -> MasterBatchRecord:
    return parse_mbr(definition)


def mbr_of(version: MbrVersion) -> MasterBatchRecord:
    """The MBR a batch executes, from the text stored with its version (never from the packaged file)."""
    try:
        return _parsed(version.definition)
    except MbrDefinitionError as exc:
        # A version stored by an earlier release in a form this one does not read: say so, never a 500.
        raise ValidationRefused(
            f"{version.code} v{version.version} as stored cannot be read by this release ({exc}): "
            "tell the system administrator",
            entity_type="mbr_version",
            entity_id=str(version.id),
        ) from exc


def _check_stored_lengths(mbr: MasterBatchRecord) -> None:
    """What the MBR names is stored in columns of fixed length: a key too long for them is refused at
    registration, not by the database at the first step recorded."""
    where = {"entity_type": "mbr_version"}
    checked_text(mbr.code, "MBR code", 40, **where)
    checked_text(mbr.title, "MBR title", 200, **where)
    for step in mbr.steps:
        checked_text(step.key, "Step key", 80, **where)
        for f in step.fields:
            checked_text(f.key, f"Field key of {step.key}", 60, **where)
            checked_text(f.unit, f"Unit of {step.key}.{f.key}", 20, required=False, **where)


def register_mbr(session: Session, actor: str, definition: str) -> MbrVersion:
    """Store an MBR version as a draft; the same text twice is a no-op, changed text needs a new version."""
    mbr = parse_mbr(definition)
    _check_stored_lengths(mbr)
    existing = session.scalar(
        select(MbrVersion).where(MbrVersion.code == mbr.code, MbrVersion.version == mbr.version)
    )
    if existing is not None:
        if existing.definition_sha256 != mbr.source_sha256:
            raise ValidationRefused(
                f"{mbr.code} version {mbr.version} is already registered with different content: "
                "give the changed master batch record a new version number",
                entity_type="mbr_version",
                entity_id=str(existing.id),
            )
        return existing
    version = MbrVersion(
        code=mbr.code,
        version=mbr.version,
        title=mbr.title,
        definition=definition,
        definition_sha256=mbr.source_sha256,
        status="draft",
        registered_at=clock.now(),
    )
    return audit_service.create(session, actor, version)


def register_packaged(session: Session, actor: str) -> list[MbrVersion]:
    """Register the package's current MBR versions that the database does not hold yet, as drafts: a new
    release brings its new versions to QA, who approves them (or not) on the QA page."""
    from mfg.process.definitions import CURRENT
    from mfg.process.mbr import packaged_mbr_text

    added = []
    for name in CURRENT:
        mbr = _parsed(packaged_mbr_text(name))
        known = session.scalar(
            select(MbrVersion.id).where(MbrVersion.code == mbr.code, MbrVersion.version == mbr.version)
        )
        if known is None:
            added.append(register_mbr(session, actor, packaged_mbr_text(name)))
    return added


def approve_mbr(session: Session, approver: User, password: str, version: MbrVersion) -> None:
    if approver.role != identity_rules.QA:
        raise PermissionRefused(
            "only QA approves a master batch record", entity_type="mbr_version", entity_id=str(version.id)
        )
    if version.status != "draft":
        raise ValidationRefused(
            f"{version.code} v{version.version} is {version.status}, not a draft",
            entity_type="mbr_version",
            entity_id=str(version.id),
        )
    identity_service.sign(session, approver, password, "approved", version, comment="MBR approved for use")
    audit_service.update(
        session, approver.username, version, reason="approved by QA", action="approve", status="approved"
    )


def current_approved_mbr(session: Session, code: str) -> MbrVersion:
    version = session.scalar(
        select(MbrVersion)
        .where(MbrVersion.code == code, MbrVersion.status == "approved")
        .order_by(MbrVersion.version.desc())
        .limit(1)
    )
    if version is None:
        raise ValidationRefused(
            f"no approved version of {code}: QA must approve the master batch record first",
            entity_type="mbr_version",
        )
    return version
