"""The benchmark suite: Onward against the bare workflow (the floor) and two peers.

Run it with ``make bench`` or ``python -m bench.run --help``. Modules named
``peer_*`` run only inside the bench's own venv (``bench/.venv-peers``), where
the peers are installed; everything else runs in the project's venv.
"""
