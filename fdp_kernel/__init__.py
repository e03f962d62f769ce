"""fdp_kernel: governed access to a federated health and care data platform through Ibis."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
