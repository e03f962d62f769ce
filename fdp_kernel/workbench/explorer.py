"""Governed interactive exploration in JupyterLab: ipywidgets over released figures.

    import fdp_kernel
    from fdp_kernel.workbench import PopulationExplorer

    ws = fdp_kernel.connect(purpose="population_health_planning", org="QSY")
    PopulationExplorer(ws)  # scope, register, age band, deprivation, ethnic group

Every change of a control is a new governed query: the explorer builds the expression on the
workspace's governed tables (``fdp_kernel.workbench.population``), releases it with
``ws.release`` (disclosure control, the differencing ledger, the audit log) and shows only
what was released: counts rounded to 5, "suppressed (<8)" where a cell is hidden, a chart
drawn from the released figures. A refusal is shown in the explorer, with nothing else.

Scopes: a GP practice sees its own list and registers; an ICB reads the lists and registers
of the practices under its row-level population health agreement (pseudonymised, linked; as
``templates/population_health.ipynb`` does) and releases figures for the whole population.
A trust holds no GP registers, so it cannot be a scope.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from collections.abc import Sequence
from dataclasses import dataclass

import altair as alt
import ibis
import ipywidgets as w
import pandas as pd

from fdp_kernel import codes
from fdp_kernel.errors import FdpError, GovernanceError
from fdp_kernel.governance.policy import providers
from fdp_kernel.workbench.population import (
    AGE_BANDS,
    ALL,
    BREAKDOWNS,
    ETHNIC_GROUPS,
    Selection,
    explorer_chart,
    figure_frame,
    headline,
    ordered,
    prevalence_query,
)

EXPLORABLE = ("gp_practice", "icb")  # org types whose population an explorer can show


def practices_for(fed, purpose: str, org: str) -> list[str]:
    """The practices whose rows an agreement for ``purpose`` shares with ``org`` (policy's
    answer: those of row-level agreements first)."""
    return providers(fed, purpose, org, org_type="gp_practice", rows=True)


def scopes_for(fed, user: str, purpose: str) -> list[str]:
    """Organisations where ``user`` holds ``purpose`` and whose population can be explored:
    ICBs first, then practices."""
    held = [r.org for r in fed.users[user].roles if purpose in r.purposes]
    held = [o for o in held if fed.org(o).org_type in EXPLORABLE]
    return sorted(held, key=lambda o: (fed.org(o).org_type != "icb", o))


@dataclass
class Scope:
    """One organisation's population: its workspace and the governed tables the explorer
    queries (for an ICB, the union of its practices' rows under the agreement)."""

    ws: object
    patients: ibis.Table
    registers: ibis.Table
    practices: list[str]

    @classmethod
    def open(cls, ws) -> Scope:
        node = ws.federation.org(ws.org)
        if node.org_type == "icb":
            practices = practices_for(ws.federation, ws.purpose.id, ws.org)
            if not practices:
                exc = GovernanceError(
                    f"no agreement for {ws.purpose.id} names {ws.org} as a recipient of GP "
                    "practices' data, so there is no population to explore; a row-level "
                    "agreement such as DSA-PHM-ICB would allow it",
                    rule="agreement:none",
                )
                raise ws.refuse("explore", exc)

            def union(name):
                parts = [ws.table(name, source=p) for p in practices]
                return ibis.union(*parts, distinct=False)

            return cls(ws, union("patients"), union("ltc_registers"), practices)
        return cls(ws, ws.table("patients"), ws.table("ltc_registers"), [ws.org])

    def label(self) -> str:
        node = self.ws.federation.org(self.ws.org)
        extra = f", {len(self.practices)} practices linked" if node.org_type == "icb" else ""
        return f"{node.name} ({node.code}{extra})"


def _options(groups) -> list[tuple[str, object]]:
    return [(ALL, ALL), *((str(g), g) for g in groups)]


def _dropdown(description: str, options, value) -> w.Dropdown:
    return w.Dropdown(
        description=description,
        options=options,
        value=value,
        style={"description_width": "initial"},
        layout=w.Layout(width="auto"),
    )


class PopulationExplorer:
    """Recorded prevalence of a long-term condition for a chosen cohort, with a chart by
    deprivation, age band or ethnic group; every figure released and audited.

    ``ws``: a workspace for a population health purpose at a practice or an ICB. ``scopes``:
    other organisations to offer (default: every one where the user holds the purpose; each
    opens its own audited workspace when chosen). ``debounce``: seconds to wait after a change
    before querying, so several quick changes make one query (0: at once).
    """

    def __init__(
        self,
        ws,
        scopes: Sequence[str] | None = None,
        *,
        condition: str = "HYP",
        deprivation_column: str = "imd_quintile",
        as_of: dt.date | None = None,
        debounce: float = 0.4,
        interactive: bool | None = None,
    ) -> None:
        self.ws = ws
        self.as_of = as_of or ws.federation.as_of or dt.date.today()
        self.debounce = debounce
        self.min_count = ws.purpose.disclosure.min_count
        self.released: dict[str, object] = {}  # "total" and "by": the last releases
        self.frame: pd.DataFrame | None = None  # what the chart draws
        self.error: str | None = None
        self.updates = 0
        self._scopes: dict[str, Scope] = {}
        self._pending: asyncio.TimerHandle | None = None
        self._quiet = False
        codes_ = list(dict.fromkeys([ws.org, *(scopes or self._default_scopes())]))
        self._workspaces = {ws.org: ws}
        start = Selection(condition=condition, deprivation_column=deprivation_column)
        groups = start.choices()["deprivation"]
        self.controls = {
            "scope": _dropdown("Population", [(self._scope_label(c), c) for c in codes_], ws.org),
            "condition": _dropdown(
                "Register", [(f"{n} ({c})", c) for c, n in codes.LTC_REGISTERS.items()], condition
            ),
            "age_band": _dropdown("Age band", _options(AGE_BANDS), ALL),
            "deprivation": _dropdown(
                f"IMD {deprivation_column.removeprefix('imd_')} (1 = most deprived)",
                _options(groups),
                ALL,
            ),
            "ethnic_group": _dropdown("Ethnic group", _options(ETHNIC_GROUPS), ALL),
            "compare_by": w.ToggleButtons(
                description="Chart by",
                options=[(label.split(" (")[0], key) for key, label in BREAKDOWNS.items()],
                value=start.compare_by,
                style={"description_width": "initial", "button_width": "auto"},
            ),
        }
        self._deprivation_column = deprivation_column
        self.count = w.HTML(layout=w.Layout(margin="8px 0"))
        self.count.add_class("fdp-explorer-count")
        self.status = w.HTML()
        self.status.add_class("fdp-explorer-status")
        self._jupyter_chart = _has_jupyter_chart() if interactive is None else interactive
        if self._jupyter_chart:
            alt.JupyterChart.enable_offline()  # draws with no network (STACK.md)
            self.chart = alt.JupyterChart(None, embed_options={"renderer": "svg", "actions": False})
        else:
            self.chart = w.Output()
        self.chart.add_class("fdp-explorer-chart")
        c = self.controls
        row1 = w.HBox([c["scope"], c["condition"]], layout=w.Layout(flex_flow="row wrap"))
        row2 = w.HBox(
            [c["age_band"], c["deprivation"], c["ethnic_group"]],
            layout=w.Layout(flex_flow="row wrap"),
        )
        self.widget = w.VBox([row1, row2, c["compare_by"], self.count, self.chart, self.status])
        self.widget.add_class("fdp-explorer")
        for control in self.controls.values():
            control.observe(self._on_change, names="value")
        self.update()

    # -- scopes ---------------------------------------------------------------------------------
    def _default_scopes(self) -> list[str]:
        return scopes_for(self.ws.federation, self.ws.user, self.ws.purpose.id)

    def _scope_label(self, code: str) -> str:
        node = self.ws.federation.org(code)
        return f"{node.name} ({code})"

    def _scope(self, code: str) -> Scope:
        if code not in self._scopes:
            if code not in self._workspaces:
                import fdp_kernel

                self._workspaces[code] = fdp_kernel.connect(self.ws.purpose.id, code)
            self._scopes[code] = Scope.open(self._workspaces[code])
        return self._scopes[code]

    # -- state ----------------------------------------------------------------------------------
    @property
    def selection(self) -> Selection:
        values = {k: c.value for k, c in self.controls.items() if k != "scope"}
        return Selection(deprivation_column=self._deprivation_column, **values)

    def select(self, **values) -> None:
        """Set controls by name (``scope``, ``condition``, ``age_band``, ``deprivation``,
        ``ethnic_group``, ``compare_by``) and update once, now."""
        unknown = set(values) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown control(s) {sorted(unknown)}; use {list(self.controls)}")
        self._quiet = True
        try:
            for name, value in values.items():
                self.controls[name].value = value
        finally:
            self._quiet = False
        self.update()

    def _on_change(self, _change) -> None:
        if self._quiet:
            return
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self.debounce <= 0:
            self.update()
            return
        self.status.value = "<i>Updating…</i>"
        self._pending = loop.call_later(self.debounce, self.update)

    # -- the governed query ----------------------------------------------------------------------
    def update(self) -> None:
        """Release the figures for the current choices and show them (or the refusal)."""
        self._pending = None
        selection = self.selection
        self.updates += 1
        try:
            scope = self._scope(self.controls["scope"].value)
            released = self._release(scope, selection)
        except Exception as exc:  # fail closed: whatever went wrong, show why and no figures
            self._refused(exc)
            return
        self.error = None
        self.released = released
        by = selection.compare_by
        self.frame = figure_frame(released["by"], selection, by, self.min_count)
        text = headline(released["total"], self.min_count)
        self.count.value = _count_html(scope, selection, text)
        chart = explorer_chart(self.frame, selection, by, released["by"])
        if self._jupyter_chart:
            self.chart.chart = chart
        else:  # no anywidget: a static SVG, which also draws with no network
            self.chart.clear_output(wait=True)
            with self.chart, alt.renderers.enable("svg"):
                from IPython.display import display

                display(chart)
        ws = scope.ws
        self.status.value = (
            f"<small>Update {self.updates}: two releases for {html.escape(ws.purpose.id)} at "
            f"{html.escape(ws.org)} as {html.escape(ws.user)}, each through disclosure control "
            "and recorded in the audit log.</small>"
        )

    def _release(self, scope: Scope, selection: Selection) -> dict[str, object]:
        name = codes.LTC_REGISTERS[selection.condition]
        filters = selection.describe()
        args = (scope.patients, scope.registers, self.as_of, selection)
        pct = {"percentages": {"prevalence_pct": ("register", "list_size")}}
        total = scope.ws.release(prevalence_query(*args), title=f"{name}: {filters}", **pct)
        by = selection.compare_by
        title = f"{name} by {by.replace('_', ' ')}: {selection.describe(skip=by)}"
        grouped = scope.ws.release(prevalence_query(*args, by=by), title=title, **pct)
        return {"total": total, "by": ordered(grouped, by, selection)}

    def _refused(self, exc: Exception) -> None:
        """Show why, and nothing else: no figures, no chart."""
        self.error = str(exc)
        self.released, self.frame = {}, None
        self.count.value = ""
        if self._jupyter_chart:
            self.chart.chart = None
        else:
            self.chart.clear_output()
        if isinstance(exc, GovernanceError):
            kind = "Refused by governance"
        elif isinstance(exc, FdpError):
            kind = "Not shown"
        else:
            kind, self.error = "Not shown (an error)", f"{type(exc).__name__}: {exc}"
        self.status.value = (
            '<div class="fdp-explorer-error" style="color:#DA291C">'
            f"<b>{kind}:</b> {html.escape(self.error)}</div>"
        )

    def summary(self) -> str:
        """The current headline as plain text (what the count shows)."""
        if self.error:
            return f"Refused: {self.error}"
        text = headline(self.released["total"], self.min_count)
        return (
            f"{codes.LTC_REGISTERS[self.selection.condition]}, {self.selection.describe()}: "
            f"{text['register']} on the register of {text['list_size']} ({text['prevalence']})"
        )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _count_html(scope: Scope, selection: Selection, text: dict[str, str]) -> str:
    name = html.escape(codes.LTC_REGISTERS[selection.condition])
    who = html.escape(f"{scope.label()}, {selection.describe()}")
    big = 'style="font-size:1.4em;font-weight:bold;color:#005EB8"'
    return (
        f"<div><b>{name}</b> — {who}</div>"
        f'<div><span class="fdp-register" {big}>{html.escape(text["register"])}</span> '
        f'people on the register of <span class="fdp-list-size">'
        f"{html.escape(text['list_size'])}</span> on the list: recorded prevalence "
        f'<span class="fdp-prevalence" {big}>{html.escape(text["prevalence"])}</span></div>'
    )


def _has_jupyter_chart() -> bool:
    try:
        import anywidget  # noqa: F401
        import vl_convert  # noqa: F401
    except ImportError:
        return False
    return True


__all__ = ["PopulationExplorer", "Scope", "practices_for", "scopes_for"]
