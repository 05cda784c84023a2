"""``python -m tinybptt ...`` is the ``tinybptt`` command (see ``tinybptt.apps.cli``)."""
import sys

from .apps.cli import main

if __name__ == "__main__":
    sys.exit(main())
