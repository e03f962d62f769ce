"""One exception hierarchy for fdp.

Every error a person can cause says what is wrong and what to do about it. The CLI maps
these classes to exit codes in one place (``fdp_kernel.cli``) and prints them without a
traceback.
"""

from __future__ import annotations


class FdpError(Exception):
    """Base class for errors a user can act on."""

    exit_code = 1


class UsageError(FdpError):
    """A bad argument or parameter: fix the command line or the call."""

    exit_code = 2


class ConfigError(FdpError):
    """The federation file (or another configuration file) is invalid."""

    exit_code = 3


class StoreError(FdpError):
    """A node store is missing, unreadable or already exists."""

    exit_code = 4


class GovernanceError(FdpError):
    """A request that policy refuses.

    ``rule`` names the rule that refused it (``"purpose:dataset"``, ``"release:identifier"``
    ...; every rule is listed in ``fdp_kernel.governance.rules``). The refusal is audited,
    with its rule and reason, at the boundary where the request entered: the workspace (or
    the node service) records it before the error reaches the person.
    """

    exit_code = 5

    def __init__(self, message: str, *, rule: str, agreement: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule
        self.agreement = agreement

    def __reduce__(self):  # keyword-only arguments survive pickling (process pools)
        return (_governance_error, (str(self), self.rule, self.agreement))


def _governance_error(message: str, rule: str, agreement: str | None) -> GovernanceError:
    return GovernanceError(message, rule=rule, agreement=agreement)
