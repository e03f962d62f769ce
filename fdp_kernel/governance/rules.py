"""Every governance rule by id, with what it decides. Decisions and refusals name one of these
(``Decision.rule``, ``GovernanceError.rule``), and the audit log records it; docs and tests
enumerate them from here."""

from __future__ import annotations

RULES: dict[str, str] = {
    # who may act
    "connect:role": "the user holds the purpose at the organisation (allow)",
    "identity:unknown-user": "the user has no role in the federation",
    "identity:which-org": "the user acts for several organisations and did not say which",
    "identity:no-role-at-org": "the user holds no role at the organisation",
    "purpose:unknown": "the purpose is not defined in the federation file",
    "purpose:not-held": "the user does not hold the purpose at the organisation",
    "identity:unauthenticated": "the node service does not know the connection's token",
    "identity:token-expired": "the connection's token has expired",
    "identity:not-a-person": "a peer service's token used where a person must act",
    "service:session": "a session of another person, or one the service does not hold",
    "service:peer": "a peer service asked for an organisation it does not host",
    # governed tables
    "table:purpose": "the purpose allows the dataset at the user's own node (allow)",
    "table:public-reference": "reference data about organisations and products (allow)",
    "table:agreement": "a row-level agreement in force shares the dataset (allow)",
    "purpose:dataset": "the purpose does not allow the dataset",
    "purpose:columns": "the purpose does not allow the columns asked for",
    "node:not-held": "the node does not hold the dataset",
    "agreement:none": "no data sharing agreement between the nodes for the purpose",
    "agreement:not-in-force": "the agreement is not in force on the day",
    "agreement:dataset": "the agreement does not cover the dataset",
    "agreement:columns": "the agreement does not cover the columns asked for",
    "agreement:aggregate-only": "the agreement shares aggregates only: rows stay at the node",
    "key:missing": "the node or agreement has no pseudonymisation key",
    "key:unreadable": "the pseudonymisation key cannot be read",
    "key:unprotected": "the pseudonymisation key is readable by other users",
    "key:malformed": "the pseudonymisation key is not a 256-bit hex key",
    "catalog:not-held": "the organisation's node does not hold the dataset",
    # release
    "query:governed": "a governed expression was run (allow)",
    "release:disclosure-control": "released after disclosure control (allow)",
    "release:exact-partial": "an exact partial aggregate passed to the requester's service (allow)",
    "federated:exact-partials": "the agreement does not let exact partials pass between nodes",
    "release:direct-care-listing": "a record-level list released for direct care (allow)",
    "release:not-governed": "the expression reads a table that is not a governed table",
    "release:operation": "the expression uses an operation a node service does not run",
    "release:spec": "a declaration the expression contradicts (a measure as a dimension)",
    "release:record-value": "an aggregate that would release a record's value (text, dates)",
    "release:derived": "a measure computed after the aggregation, which no rule can check",
    "release:untraceable": "an output column cannot be traced to its sources",
    "release:identifier": "an output column is computed from a direct identifier",
    "release:fine-quasi-identifier": "an output column is a fine quasi-identifier itself",
    "release:rows": "record-level rows under a purpose that releases aggregates only",
    "release:no-measure": "nothing in the release is computed by an aggregation",
    "release:overlap": "the release differs from an earlier one by a small group",
    "listing:direct-care-only": "record-level lists are released for direct care only",
    "view:other-organisation": "a figure shown to another kind of organisation only",
    "disclosure:unchecked": "a column or value cannot be checked by disclosure control",
    # engines
    "engine:direct-access": "running or reading data outside ws.release",
    "engine:policy-check": "a server's compiled policy failed its check before commit",
    # federation
    "federated:agreement": "an agreement in force lets the node answer (allow)",
    "federated:combined": "node-released figures combined (allow)",
    "federated:no-provider": "no agreement names the organisation as a recipient",
    "federated:own-node": "the requester's own node is not asked through federation",
    "federated:nested": "a federated request cannot start further federated requests",
    "federated:node-failed": "the node could not answer (store or engine failure)",
    # outputs
    "report:secret": "a report's output shows a secret or an identifier",
    "report:refused": "a report's kernel was refused by governance (recorded where it ran)",
    # errors that stopped a request before any rule decided it
    "error:UsageError": "a bad argument",
    "error:ConfigError": "invalid configuration",
    "error:StoreError": "a store, key or log could not be used",
    "error:FdpError": "another error a person can act on",
    "unlisted": "a refusal whose rule is not listed here (a bug: list it)",
}
