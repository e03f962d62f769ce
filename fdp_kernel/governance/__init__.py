"""Governance: disclosure control and other release policy."""
