"""``python -m cnncourse``: the same as the ``cnncourse`` command."""
import sys

from cnncourse.cli import main

if __name__ == "__main__":
    sys.exit(main())
