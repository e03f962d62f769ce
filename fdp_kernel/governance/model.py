"""Policy objects declared in the federation file: purposes, users and roles, agreements.

Parsed and validated by ``fdp_kernel.config``; decided on by ``fdp_kernel.governance.policy``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from fdp_kernel.governance.disclosure import DisclosureRules


class PurposeKind(StrEnum):
    DIRECT_CARE = "direct_care"
    PLANNING = "planning"


class Level(StrEnum):
    """How identifiable the data seen under a purpose or agreement may be."""

    IDENTIFIABLE = "identifiable"  # direct identifiers shown (direct care only)
    PSEUDONYMISED = "pseudonymised"  # direct identifiers replaced by keyed pseudonyms
    AGGREGATE = "aggregate"  # pseudonymised rows inside the workspace; only aggregates leave

    @property
    def rank(self) -> int:
        return {"aggregate": 0, "pseudonymised": 1, "identifiable": 2}[self.value]


@dataclass(frozen=True)
class Purpose:
    id: str
    name: str
    kind: PurposeKind
    level: Level
    datasets: Mapping[str, tuple[str, ...]]  # dataset -> allowed columns
    opt_out_applies: bool
    disclosure: DisclosureRules
    legal_basis: str
    priority: str | None = None
    description: str = ""

    def allows(self, dataset: str, column: str | None = None) -> bool:
        cols = self.datasets.get(dataset)
        return cols is not None and (column is None or column in cols)


@dataclass(frozen=True)
class Role:
    org: str
    purposes: tuple[str, ...]


@dataclass(frozen=True)
class User:
    id: str
    name: str
    roles: tuple[Role, ...]
    accounts: tuple[str, ...] = ()  # other names the node service may know them by (OS, hub)

    def orgs(self) -> list[str]:
        return [r.org for r in self.roles]

    def purposes_at(self, org: str) -> tuple[str, ...]:
        return tuple(p for r in self.roles if r.org == org for p in r.purposes)


@dataclass(frozen=True)
class Agreement:
    id: str
    title: str
    providers: tuple[str, ...]
    recipients: tuple[str, ...]
    purpose: str
    level: Level
    datasets: Mapping[str, tuple[str, ...]]
    legal_basis: str
    valid_from: dt.date
    valid_to: dt.date
    key: str | None = None  # path of the shared linkage key (row-level agreements)
    extra: Mapping[str, str] = field(default_factory=dict)
    # "released": each node releases its figures (disclosure control at every node);
    # "exact_partials": nodes pass exact aggregates service to service and disclosure control
    # is applied once, to the combined figures, at the requester's release.
    exchange: str = "released"

    def in_force(self, on: dt.date) -> bool:
        return self.valid_from <= on <= self.valid_to

    def covers(self, dataset: str, column: str | None = None) -> bool:
        cols = self.datasets.get(dataset)
        return cols is not None and (column is None or column in cols)
