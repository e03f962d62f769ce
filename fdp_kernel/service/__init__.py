"""The node service: governance that holds outside the analyst's process.

``fdp serve`` runs, as a service account, the only process that can read the node stores and
keys and write the audit logs. Analysts' kernels are thin clients (``client``) that speak
Apache Arrow Flight to it (``server``); identity comes from the connection (``identity``),
expressions travel as allow-listed operation graphs (``codec``), and the service runs the same
release pipeline as the embedded mode, from scratch, in a sandboxed engine connection.
See docs/governance.md (threat model) and docs/deploy.md.
"""
