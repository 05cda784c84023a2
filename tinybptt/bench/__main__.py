"""``python -m tinybptt.bench`` is ``tinybptt bench`` (the worker processes start this way too)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
