"""Decisions as values: every allow or deny carries the rule that made it and the reason.

Policy and the release pipeline return a ``Decision`` for what they allow and raise a
``GovernanceError`` (whose ``rule`` and message make the deny decision) for what they refuse;
the audit records exactly that value, so the log never states a reason that the rule did not
give (as datasette's permission rules return ``allow(reason=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

from fdp_kernel.errors import FdpError, GovernanceError
from fdp_kernel.governance.rules import RULES


@dataclass(frozen=True)
class Decision:
    allowed: bool
    rule: str  # an id of fdp_kernel.governance.rules.RULES
    reason: str
    agreement: str | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown governance rule {self.rule!r}: add it to rules.RULES")

    @property
    def outcome(self) -> str:
        """``allow`` or ``deny``, as the audit log writes it."""
        return "allow" if self.allowed else "deny"

    def refuse(self) -> GovernanceError:
        """The error that carries this (deny) decision to the person."""
        return GovernanceError(self.reason, rule=self.rule, agreement=self.agreement)


def allow(rule: str, reason: str, agreement: str | None = None) -> Decision:
    return Decision(True, rule, reason, agreement)


def deny(rule: str, reason: str, agreement: str | None = None) -> Decision:
    return Decision(False, rule, reason, agreement)


def refusal(exc: FdpError) -> Decision:
    """The deny decision an error stands for: a governance refusal keeps its own rule; any
    other error that stopped a request (a bad argument, a missing store) is recorded as such."""
    if isinstance(exc, GovernanceError):
        rule = exc.rule if exc.rule in RULES else "unlisted"
        return Decision(False, rule, str(exc), exc.agreement)
    rule = f"error:{type(exc).__name__}"
    return Decision(False, rule if rule in RULES else "error:FdpError", str(exc))
