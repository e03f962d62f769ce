"""Metrics: backend-agnostic Ibis expressions for each priority, returning aggregate counts."""
