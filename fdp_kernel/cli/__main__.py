"""``python -m fdp_kernel.cli``: the same as ``fdp``."""

import sys

from fdp_kernel.cli import main

sys.exit(main())
