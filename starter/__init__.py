"""The ``onward`` command line: thin clients of the agent workflow, and dev tooling.

The commands are a thin adapter over :class:`onward.client.OnwardClient`.
Each module is one concept: ``cli`` (parser, dispatch, exit codes),
``commands`` (flags -> client -> output, one coroutine per command), ``follow``
(a run's status and live events), ``render`` (human output), ``inputs`` (flags
to contract models), ``errors`` (exit codes), ``listing``
(the visibility list), ``calls`` and ``history`` (the step log rebuilt from
the event history), ``trace`` (step log plus attempts), ``timeline`` (trace
output), ``report`` (per model and per tool figures), ``devserver`` (the
embedded dev server) and ``demo``.

The package does not import ``onward.starter.cli`` itself, so that
``python -m onward.starter.cli`` runs cleanly.
"""

__all__: list[str] = []
