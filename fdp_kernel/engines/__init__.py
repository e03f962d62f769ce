"""Engines: one adapter per engine that holds node data (DuckDB, PostgreSQL, Spark) behind one
small protocol (``base.Engine``), chosen by the node's store URL through one registry
(``registry``). ``sql`` writes the governed views and pseudonyms for every dialect,
``handover`` moves rows shared under an agreement between any two engines, and ``pool`` holds
the engines one workspace has opened.

Importing this package loads nothing heavy: adapters are imported when a node first needs one.
"""
