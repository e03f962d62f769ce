"""Reports: executed notebooks exported to self-contained offline HTML pages."""
