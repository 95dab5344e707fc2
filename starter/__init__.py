"""The ``onward`` command line: thin clients of the agent workflow, and dev tooling.

Each module is one concept: ``cli`` (parser, dispatch, exit), ``commands``
(one coroutine per client command), ``follow`` (watching a run live),
``render`` (human output), ``inputs`` (flags to contract models),
``remote`` (connecting, and Temporal errors as user messages), ``listing``
(the visibility list), ``calls`` and ``history`` (the step log rebuilt from
the event history), ``trace`` (step log plus attempts), ``timeline`` (trace
output), ``report`` (per model and per tool figures), ``devserver`` (the
embedded dev server) and ``demo``.

The package does not import ``onward.starter.cli`` itself, so that
``python -m onward.starter.cli`` runs cleanly.
"""

__all__: list[str] = []
