"""fdp_kernel: governed access to a federated health and care data platform through Ibis."""

from __future__ import annotations

from fdp_kernel.version import __version__

__all__ = ["__version__", "connect"]


def __getattr__(name: str):
    # Imported on first use so that `fdp --help` and the generator stay light.
    if name == "connect":
        from fdp_kernel.connection import connect

        return connect
    raise AttributeError(f"module 'fdp_kernel' has no attribute {name!r}")
