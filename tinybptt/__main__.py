"""``python -m tinybptt ...`` is the ``tinybptt`` command (see ``tinybptt.cli``)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
