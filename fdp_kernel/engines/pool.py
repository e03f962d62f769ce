"""The engines one workspace has opened, and which engine holds what.

A workspace reads its own node and, under row-level agreements, other nodes. ``EnginePool``
opens each node's engine on first use (nodes that share an ``instance_key`` share one
instance), builds governed tables there or hands shared rows over to the workspace's home
engine (its own node's), and answers which engine an expression runs on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import ibis.expr.operations as ops
import ibis.expr.types as ir

from fdp_kernel.engines import registry
from fdp_kernel.engines.base import Engine, EngineContext, KeySource
from fdp_kernel.engines.handover import hand_over
from fdp_kernel.errors import GovernanceError, UsageError
from fdp_kernel.governance.lineage import Lineage
from fdp_kernel.governance.policy import ViewPlan


class EnginePool:
    def __init__(self, ctx: EngineContext, home: str) -> None:
        self.ctx = ctx
        self.home = home  # the workspace's own organisation
        self._engines: dict[str, Engine] = {}  # instance key -> engine
        self._orgs: dict[str, str] = {}  # org code -> instance key, for every node read

    def engine_for(self, code: str) -> Engine:
        org = self.ctx.federation.org(code)
        adapter = registry.adapter_for(org.store)
        key = adapter.instance_key(org)
        if key not in self._engines:
            self._engines[key] = adapter.open(self.ctx, org)
        self._orgs.setdefault(code, key)
        return self._engines[key]

    def governed_table(
        self, plan: ViewPlan, columns: Sequence[str] | None, key: KeySource
    ) -> ir.Table:
        """The governed table of ``plan`` in the engine where the workspace can use it."""
        view = plan.dataset if plan.provider == self.home else f"{plan.dataset}__{plan.provider}"
        if columns is not None:
            view += "__" + hashlib.sha256(",".join(columns).encode()).hexdigest()[:8]
        org = self.ctx.federation.org(plan.provider)
        source = self.engine_for(plan.provider)
        home = self.engine_for(self.home)
        if plan.provider == self.home or source is home:
            return source.governed_table(org, plan, view, key)
        return hand_over(source, home, org, plan, view, key)

    def locate(self, expr: ir.Table) -> tuple[Engine, dict[str, ViewPlan]]:
        """The engine that runs ``expr`` and the plans of the governed tables it reads;
        refuses a table that is not one of this workspace's governed tables."""
        found: dict[str, ViewPlan] = {}
        engines: list[Engine] = []
        for leaf in Lineage(expr).tables():
            if isinstance(leaf, ops.InMemoryTable):
                continue
            owner = next((e for e in self._engines.values() if e.plan_of(leaf)), None)
            if owner is None:
                raise GovernanceError(
                    f"the expression reads {leaf.name!r}, which is not a governed table of "
                    "this workspace; build it from ws.table(...)",
                    rule="release:not-governed",
                )
            found[leaf.name] = owner.plan_of(leaf)
            if owner not in engines:
                engines.append(owner)
        if len(engines) > 1:
            raise UsageError(
                f"the expression joins tables held by different engines "
                f"({', '.join(e.name for e in engines)}); ask for shared rows with "
                "ws.table(name, source=ORG), which hands them over to your node's engine"
            )
        return (engines[0] if engines else self.engine_for(self.home)), found

    def plans(self) -> list[ViewPlan]:
        return [p for e in self._engines.values() for p in e.plans.values()]

    def fingerprints(self) -> dict[str, object]:
        """Org code -> what identifies its data now, for every node read."""
        out = {}
        for code, key in sorted(self._orgs.items()):
            if code == self.home and not any(p.provider == code for p in self.plans()):
                continue  # opened but never read
            out[code] = self._engines[key].fingerprint(self.ctx.federation.org(code))
        return out

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self._engines.clear()
