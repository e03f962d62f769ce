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
    """A request that policy refuses. Always audited by the caller that raises it."""

    exit_code = 5
