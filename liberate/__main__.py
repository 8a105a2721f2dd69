"""``python -m liberate``: the same as the ``liberate`` console script."""

import sys

from liberate.cli import main

if __name__ == "__main__":  # not when a spawned worker process imports this module
    sys.exit(main())
