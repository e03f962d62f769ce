"""Exact partial aggregates combined across nodes, so that disclosure control is applied once,
to the combined figures, at the requester's release.

Under an agreement that says ``exchange: exact_partials``, each provider's node computes its
figures exactly (``release.partial``: counts, and sums with their contributors and two largest
contributions) and passes them to the requester's service, never to a person. Here they are
added up per group: counts and sums as sums, contributors as a sum, the largest contribution
as the largest of the nodes', the second largest as the second of all the nodes' two. The
result is then released under the requester's own rules, so an ICB total is the rounded total
(where every node releasing its own figures would give a sum of rounded figures, and a lower
bound wherever one node suppressed a cell).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from fdp_kernel.errors import UsageError
from fdp_kernel.governance.disclosure import Magnitude, ReleaseSpec
from fdp_kernel.governance.model import Purpose
from fdp_kernel.governance.release import Outcome, Partial, release_combined


def combine(
    parts: Mapping[str, Partial],
    by: Sequence[str],
    percentages: Mapping[str, tuple[str, str]] | None = None,
) -> tuple[pd.DataFrame, ReleaseSpec]:
    """The nodes' exact partials as one exact table per ``by`` group, and its release spec."""
    if not parts:
        raise UsageError("no node answered: there is nothing to combine")
    first = next(iter(parts.values()))
    by = list(by)
    counts, sums = list(first.counts), dict(first.sums)
    for org, part in parts.items():
        if list(part.counts) != counts or dict(part.sums) != sums:
            raise UsageError(f"{org} answered with other columns than the other nodes")
        missing = [c for c in by if c not in part.dimensions]
        if missing:
            raise UsageError(f"combine_by {missing} are not dimensions of the query")
    frame = pd.concat([p.frame for p in parts.values()], ignore_index=True)
    grouped = frame.groupby(by, dropna=False, sort=True) if by else [((), frame)]
    rows = []
    for key, part in grouped:
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key, strict=True))
        for c in counts:
            row[c] = int(part[c].fillna(0).sum())
        for c, helpers in sums.items():
            row[c] = part[c].fillna(0).sum()
            row[helpers["n"]] = int(part[helpers["n"]].fillna(0).sum())
            tops = np.sort(part[[helpers["t1"], helpers["t2"]]].fillna(0).to_numpy().ravel())
            row[helpers["t1"]] = float(tops[-1]) if tops.size else 0.0
            row[helpers["t2"]] = float(tops[-2]) if tops.size > 1 else 0.0
        rows.append(row)
    out = pd.DataFrame(rows)
    for c in counts:
        out[c] = out[c].astype("int64")
    spec = ReleaseSpec(
        dimensions=by,
        counts=counts,
        magnitudes={c: Magnitude(h["n"], h["t1"], h["t2"]) for c, h in sums.items()},
        percentages=percentages or {},
    )
    return out, spec


def release(
    answers: Mapping[str, object],
    by: Sequence[str],
    percentages: Mapping[str, tuple[str, str]] | None,
    *,
    purpose: Purpose,
    org: str,
    title: str | None,
) -> tuple[Outcome, list[str]]:
    """The combined release of the nodes' ``answers`` (a ``Partial``, or the outcome of a node
    that declined or failed), and the nodes whose figures it holds."""
    parts = {o: a for o, a in answers.items() if isinstance(a, Partial)}
    frame, spec = combine(parts, by, percentages)
    sources = sorted({s for p in parts.values() for s in p.sources})
    outcome = release_combined(frame, spec, purpose=purpose, org=org, title=title, sources=sources)
    return outcome, sorted(parts)
