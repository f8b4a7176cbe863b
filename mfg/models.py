"""Every mapped model, imported in one place so metadata (Alembic, the verifier) sees them all."""

from mfg.audit.models import AuditEvent
from mfg.custody.models import Container, ContainerParent, DinSequence, LabelPrint
from mfg.db import Base
from mfg.dosing.models import DoseOrder, FinalProduct
from mfg.identity.models import Signature, User
from mfg.materials.models import Equipment, EquipmentCalibration, EquipmentUse, MaterialUse, ReagentLot
from mfg.process.models import (
    Batch,
    Deviation,
    FieldValue,
    LineClearance,
    MbrVersion,
    StepRecord,
    Workstation,
)
from mfg.study.models import Site, Subject

__all__ = [
    "AuditEvent",
    "Base",
    "Batch",
    "Container",
    "ContainerParent",
    "Deviation",
    "DinSequence",
    "DoseOrder",
    "Equipment",
    "EquipmentCalibration",
    "EquipmentUse",
    "FieldValue",
    "FinalProduct",
    "LabelPrint",
    "LineClearance",
    "MaterialUse",
    "MbrVersion",
    "ReagentLot",
    "Signature",
    "Site",
    "StepRecord",
    "Subject",
    "User",
    "Workstation",
]
