"""`python -m sdjobs_nb ...` is the `sdjobs` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
