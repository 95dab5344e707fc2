"""``python -m starter``: the same as the ``onward`` command."""

from onward.starter.cli import main

main()
