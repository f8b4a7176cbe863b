"""Domain errors: each one is a refusal with a message a person at the bench can act on.

Views turn them into a visible refusal (HTTP 4xx), never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class Refusal(Exception):
    """An action the system refuses; the message names the problem."""

    #: the entity the refused action was aimed at, for the audit record of the attempt
    entity_type: str = ""
    entity_id: str = ""

    def __init__(self, message: str, *, entity_type: str = "", entity_id: str = "") -> None:
        super().__init__(message)
        self.message = message
        # Work that must survive the rollback of the refused work (counting a wrong password, say); the
        # request boundary runs it after undoing the view's work, in the transaction that checked it, still
        # under the chain lock, so a count is never lost nor late (web/transaction.py).
        self.after_rollback: list[Callable[[Any], None]] = []
        # False where an after_rollback step already records the attempt in the audit trail
        self.record = True
        if entity_type:
            self.entity_type = entity_type
        if entity_id:
            self.entity_id = entity_id

    def __str__(self) -> str:
        return self.message


class NotFound(Refusal):
    """The scanned or requested record does not exist."""


class PermissionRefused(Refusal):
    """The user's role or duties do not allow the action."""


class SignatureRefused(Refusal):
    """An electronic signature could not be applied (wrong password, locked account, separation of duties)."""


class ValidationRefused(Refusal):
    """Input is malformed or outside what the rules accept."""
