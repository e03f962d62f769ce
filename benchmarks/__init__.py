"""Reproducible benchmarks: `make bench` runs them all; each writes benchmarks/results/*.md."""
