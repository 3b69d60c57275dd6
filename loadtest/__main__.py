"""Entry point for ``python -m loadtest``: the same as ``confide-loadtest``."""

from loadtest.cli import main

raise SystemExit(main())
