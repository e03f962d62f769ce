"""Released figures for each report template: the tested code a template's cells call.

Each function takes a workspace and the report's parameters and returns ``Released`` tables
(disclosure-controlled, audited), so a template only lays them out and draws them.
"""
