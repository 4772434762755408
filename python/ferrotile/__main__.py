"""``python -m ferrotile``: the same as the ``ferrotile`` command."""

import sys

from ferrotile.cli import main

sys.exit(main())
