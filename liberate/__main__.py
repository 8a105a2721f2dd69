"""``python -m liberate``: the same as the ``liberate`` console script."""

import sys

from liberate.cli import main

sys.exit(main())
