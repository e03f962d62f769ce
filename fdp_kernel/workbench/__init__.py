"""The JupyterLab workbench: the governed population health explorer (``explorer``, its pure
parts in ``population``) and the notebook view of ``ws.catalog()`` (``catalogue``).

    from fdp_kernel.workbench import PopulationExplorer
"""

from __future__ import annotations

__all__ = ["PopulationExplorer"]


def __getattr__(name: str):
    # ipywidgets and Altair load only when the explorer is used.
    if name == "PopulationExplorer":
        from fdp_kernel.workbench.explorer import PopulationExplorer

        return PopulationExplorer
    raise AttributeError(f"module 'fdp_kernel.workbench' has no attribute {name!r}")
