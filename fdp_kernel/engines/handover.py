"""Rows shared under a row-level agreement, handed over from the provider's engine to the
requester's: one function for any two engines.

The provider's engine computes the governed rows (the agreed columns, own rows, opt-outs, the
agreement's linkage pseudonyms); they leave it as Arrow in the catalogue's types and become a
governed table of the requester's home engine, where they can be joined with its own rows and
with other nodes' shared rows. The provider's engine stops serving the view, so the only
governed copy is the requester's (and releases over it are audited at the provider too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fdp_kernel.engines.base import Engine, KeySource, conform

if TYPE_CHECKING:
    import ibis.expr.types as ir

    from fdp_kernel.config import Organisation
    from fdp_kernel.governance.policy import ViewPlan


def hand_over(
    source: Engine, target: Engine, org: Organisation, plan: ViewPlan, view: str, key: KeySource
) -> ir.Table:
    """The governed rows of ``plan`` at ``org`` (held by ``source``) as table ``view`` of
    ``target``."""
    if view in target.plans:
        return target.table(view)
    shared = source.governed_table(org, plan, view, key)
    rows = conform(source.export_rows(shared), plan)
    source.forget(view)
    return target.import_rows(view, rows, plan)
