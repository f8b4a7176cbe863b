"""Every mapped model, imported in one place so metadata (Alembic, the verifier) sees them all."""

from mfg.audit.models import AuditEvent
from mfg.custody.models import Container, ContainerParent, DinSequence
from mfg.db import Base
from mfg.identity.models import Signature, User
from mfg.study.models import Site, Subject

__all__ = [
    "AuditEvent",
    "Base",
    "Container",
    "ContainerParent",
    "DinSequence",
    "Signature",
    "Site",
    "Subject",
    "User",
]
