"""``python -m starter``: the same as the ``onward`` command."""

from starter.cli import main

main()
