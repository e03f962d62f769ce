"""Named, independent random streams derived from one seed.

Each part of the generator draws from its own stream (``streams.get("patients")``), so the
same seed gives identical data and adding a new part never shifts the numbers of another.
No code in the generator touches NumPy's global random state.
"""

from __future__ import annotations

import zlib

import numpy as np


class Streams:
    def __init__(self, seed: int) -> None:
        self.seed = int(seed)

    def get(self, name: str) -> np.random.Generator:
        """A fresh generator for ``name``; the same (seed, name) always gives the same stream."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, zlib.crc32(name.encode())]))
