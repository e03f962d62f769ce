"""What the five figures classes share.

A figures class is the released tables of one report for one organisation. ``Figures`` holds
the workspace and reference date (``check_as_of``), the organisation and its view, the one way a
figure is made (:meth:`Figures._figure`: released here, or at each node and combined by
``fdp_kernel.federation``), the workspaces :meth:`Figures._connect` opens for a template, the
provenance of a report that also uses a second purpose, the report's periods and a cache.
``Sections`` adds report sections that depend on the view.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import ibis

from fdp_kernel.errors import FdpError, GovernanceError, UsageError
from fdp_kernel.figures.common import check_as_of
from fdp_kernel.governance import policy


class Figures:
    """The figures of one report for the organisation of ``ws`` at ``as_of``.

    A subclass says which organisations and purpose it is for (``VIEWS``, ``PURPOSE``), what
    second purpose :meth:`_connect` also opens (``SECOND``, for the org types ``SECOND_FOR``)
    and whether ``as_of`` must be a month end. ``second`` is that second workspace, or the
    refusal that says why there is none. An ICB's federated figures ask ``self.nodes`` (None:
    every provider its agreements name) and are kept in ``self.by_node`` by title.
    """

    VIEWS: ClassVar[Mapping[str, str] | None] = None  # org type -> view; None: any
    REPORT: ClassVar[str] = ""  # the report's name in messages ("supply chain")
    PURPOSE: ClassVar[str | None] = None  # the purpose the workspace must be for, if any
    SECOND: ClassVar[str | None] = None
    SECOND_FOR: ClassVar[tuple[str, ...] | None] = None  # None: every org type
    MONTH_END_ONLY: ClassVar[bool] = False
    # How an ICB adds up magnitudes over nodes: as counts (a lower bound where a node's is
    # suppressed), or exactly, as money is (unknown where any node's is suppressed).
    EXACT_MAGNITUDES: ClassVar[bool] = False

    def __init__(self, ws, as_of: dt.date, second=None) -> None:
        self.ws = ws
        self.org = ws.federation.org(ws.org)
        if self.VIEWS is not None and self.org.org_type not in self.VIEWS:
            raise UsageError(
                f"{self.REPORT} reports are for {', '.join(self.VIEWS)} organisations; "
                f"{ws.org} is {self.org.org_type}"
            )
        if self.PURPOSE is not None and ws.purpose.id != self.PURPOSE:
            raise UsageError(f"the figures need a {self.PURPOSE} workspace, not {ws.purpose.id}")
        self.as_of = check_as_of(ws, as_of, month_end_only=self.MONTH_END_ONLY)
        self.view = (self.VIEWS or {}).get(self.org.org_type, self.org.org_type)
        self.icb = self.org.org_type == "icb"
        self.second = second
        self.nodes: list[str] | None = None
        self.by_node: dict[str, Any] = {}
        self._cache: dict[str, Any] = {}

    @classmethod
    def _connect(cls, org: str):
        """Workspaces for a template: ``PURPOSE`` at ``org`` and, where the organisation's type
        needs it, ``SECOND`` (or the refusal saying why not, shown in its place)."""
        from fdp_kernel.connection import connect

        ws = connect(purpose=cls.PURPOSE, org=org)
        second = None
        org_type = ws.federation.org(ws.org).org_type
        if cls.SECOND and (cls.SECOND_FOR is None or org_type in cls.SECOND_FOR):
            try:
                second = connect(purpose=cls.SECOND, org=org)
            except GovernanceError as exc:
                second = exc
        return ws, second

    def _second_ws(self):
        """The second workspace, or None when there is none (or it was refused)."""
        return None if isinstance(self.second, GovernanceError) else self.second

    def provenance(self) -> dict:
        """The workspace's provenance, with the agreements of its federated figures and the
        second workspace's purpose, agreements and datasets."""
        prov = self.ws.provenance()
        used = {  # agreements of the federated requests (an ICB's own views use none)
            o.agreement
            for result in self.by_node.values()
            for o in result.outcomes.values()
            if o.agreement
        }
        prov["agreements"] = sorted({*prov["agreements"], *used})
        return merge_provenance(prov, self._second_ws())

    # -- the one way a figure is made -------------------------------------------------------
    def _figure(
        self,
        make: Callable,
        *,
        title: str,
        by: tuple[str, ...] | None = (),
        orgs: list[str] | None = None,
        percentages: Mapping[str, tuple[str, str]] | None = None,
        statistics: Mapping[str, str] | None = None,
        magnitudes: Mapping[str, Any] | None = None,
        ws=None,
    ):
        """Release ``make(ws)`` here or, for an ICB, ``make(node)`` at each of ``orgs``
        (default ``self.nodes``), summed over the nodes by ``by`` (``combined``).

        At the ICB a figure is returned per node (a ``FederatedResult`` with an ``org`` column)
        when ``by`` is None or it has statistics: means and medians do not add up. Percentages
        are computed from the sums, or by each node for a figure shown per node with
        statistics. ``ws``: another of the user's workspaces at this organisation.
        """
        ws = ws or self.ws
        spec = {"statistics": statistics, "magnitudes": magnitudes}
        if not self.icb:
            return ws.release(make(ws), title=title, percentages=percentages, **spec)
        if statistics:
            spec["percentages"] = percentages
        nodes = orgs or self.nodes
        if by is not None and not statistics and self._exact(ws, nodes):
            # The agreements let exact partials pass: summed exactly, released once here.
            return ws.federated(make, nodes, title=title, combine_by=by, percentages=percentages)
        result = ws.federated(make, nodes, title=title, **spec)
        self.by_node[title] = result
        if by is None or statistics:
            return result
        summed = {"exact" if self.EXACT_MAGNITUDES else "also": tuple(magnitudes or {})}
        return result.combined(by, title=title, percentages=percentages, **summed)

    @staticmethod
    def _exact(ws, nodes) -> bool:
        try:
            return policy.passes_exact_partials(ws.federation, ws.purpose, ws.org, nodes, ws.today)
        except FdpError:
            return False  # no node to ask: the federated request says so

    @staticmethod
    def _tables(source, *names: str) -> list:
        """``source.table(name)`` for each name (a workspace or a node)."""
        return [source.table(n) for n in names]

    def _periods(self, metric: Callable) -> ibis.Table:
        """``metric(start, end)`` for each of the report's periods (``self.periods``: name ->
        (start, end), set by a report that compares periods), with a ``period`` column."""
        parts = [
            metric(lo, hi).mutate(period=ibis.literal(name))
            for name, (lo, hi) in self.periods.items()
        ]
        return ibis.union(*parts)

    def _cached(self, key: str, make: Callable):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


def merge_provenance(prov: dict, other) -> dict:
    """Add a second workspace's purpose, agreements and datasets (e.g. direct care) to a
    report's provenance; ``other`` may be None."""
    if other is None:
        return prov
    extra = other.provenance()
    prov["purpose"] = f"{prov['purpose']}, {extra['purpose']}"
    for key in ("agreements", "datasets"):
        prov[key] = sorted({*prov[key], *extra[key]})
    return prov


class Sections:
    """Report sections that depend on the view (trust, ICB, local authority...): a figures
    class sets ``SECTIONS = {key: (title, introduction, views)}`` and ``self.view``."""

    SECTIONS: ClassVar[dict[str, tuple[str, str, tuple[str, ...]]]] = {}
    view: str

    def shows(self, section: str) -> bool:
        return self.view in self.SECTIONS[section][2]

    def section(self, section: str) -> bool:
        """Display the section's heading and introduction if this view shows it."""
        from IPython.display import Markdown, display

        if not self.shows(section):
            return False
        title, intro, _ = self.SECTIONS[section]
        display(Markdown(f"## {title}\n\n{intro}"))
        return True
