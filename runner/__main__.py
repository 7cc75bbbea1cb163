"""``python -m runner``: the same as the ``corral`` command."""

from runner.cli import main

main()
