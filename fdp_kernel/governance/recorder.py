"""The audit plumbing of a workspace: its decisions, written to the logs they concern.

Every decision is recorded in the log of the workspace's node, and in the log of each provider
node whose data it concerns (a table shared by another node, a release over shared rows, a
federated request). An allow is recorded under its action (``connect``, ``table``, ``query``,
``release``, ``federated``); a refusal as action ``deny`` with the refused request in its
details; both carry the rule and reason of the decision itself. If the log cannot be written,
the caller gets a ``StoreError`` and nothing is shown.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fdp_kernel.config import Federation
from fdp_kernel.errors import FdpError
from fdp_kernel.governance.audit import MAX_BATCH, AuditEvent, AuditLog
from fdp_kernel.governance.decision import Decision, allow, refusal
from fdp_kernel.governance.keys import audit_key

FEDERATION_LOG = "federation.jsonl"  # decisions about no known organisation (a bad connect)


def log_path(fed: Federation, org: str | None):
    if org in fed.organisations:
        return fed.audit_path(org)
    return fed.root / "audit" / FEDERATION_LOG


class Recorder:
    """Writes the decisions of ``user`` acting for ``purpose`` at ``org``; ``agreement`` and
    ``details`` go on every entry (a node workspace: its agreement and requester)."""

    def __init__(
        self,
        fed: Federation,
        user: str,
        org: str,
        purpose: str | None,
        *,
        agreement: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        self.fed, self.user, self.org, self.purpose = fed, user, org, purpose
        self.agreement = agreement
        self.details = dict(details or {})

    def event(self, action: str, decision: Decision, **details: Any) -> AuditEvent:
        if not decision.allowed:
            details = {"request": action, **details}
        return AuditEvent(
            action if decision.allowed else "deny",
            decision.outcome,
            self.user,
            self.org,
            self.purpose,
            agreement_id=decision.agreement or self.agreement,
            reason=decision.reason,
            details={**self.details, **details},
            rule=decision.rule,
        )

    def write(self, events: Sequence[AuditEvent], providers: Sequence[str] = ()) -> None:
        """Append ``events`` to this node's log and each provider's, in order."""
        key = audit_key(self.fed)
        for org in dict.fromkeys((self.org, *providers)):
            log = AuditLog(log_path(self.fed, org), key)
            for start in range(0, len(events), MAX_BATCH):
                log.append_many(list(events[start : start + MAX_BATCH]))

    def record(
        self, action: str, decision: Decision, providers: Sequence[str] = (), **details: Any
    ) -> None:
        self.write([self.event(action, decision, **details)], providers)

    def outcome(self, outcome, title: str | None, action: str = "release", **extra: Any) -> None:
        """Record a release pipeline ``Outcome``: the governed query (when it ran) and the
        release or its refusal, here and at every provider whose rows it read."""
        providers = [p for p in outcome.providers if p != self.org]
        agreement = outcome.agreement
        events = []
        if outcome.query is not None:
            ran = allow("query:governed", "governed expression run", agreement)
            q = outcome.query
            events.append(self.event("query", ran, sql_sha256=q.sql_sha256, row_count=q.rows))
        decision = outcome.decision
        if decision.agreement is None and agreement:
            decision = Decision(decision.allowed, decision.rule, decision.reason, agreement)
        details: dict[str, Any] = {"title": title, **extra}
        if outcome.released is not None:
            r = outcome.released
            details |= {
                "rows": len(r),
                "columns": list(r.data.columns),
                "suppressed": r.n_suppressed,
                "sql_sha256": outcome.query.sql_sha256 if outcome.query else None,
            }
        events.append(self.event(action, decision, **details))
        self.write(events, providers)

    def refused(
        self, action: str, exc: FdpError, providers: Sequence[str] = (), **details: Any
    ) -> FdpError:
        """Record the refusal ``exc`` stands for and return it, to be raised."""
        self.record(action, refusal(exc), providers, **details)
        return exc
