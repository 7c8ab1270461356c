"""`python -m aniworld_daemon`: the command line (cli/main.py)."""

from __future__ import annotations

import sys

from aniworld_daemon.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
