"""How hard one worker process works: its slots, its cache and its sticky-queue timeout.

Read once at startup from ``onward worker`` flags or their ``ONWARD_*``
environment variables (a flag wins). The defaults come from ``make bench`` on
a 2-core machine (see README, Performance); every value is passed to
:class:`temporalio.worker.Worker`.
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import sys
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import timedelta
from typing import Any

from temporalio.common import SearchAttributeIndexedValueType

from onward import search_attributes
from onward.errors import SettingsError

__all__ = [
    "DEV_SERVER_DYNAMIC_CONFIG",
    "EMBEDDED_SERVER_DYNAMIC_CONFIG",
    "ENV_VARS",
    "MALLOC_ARENAS",
    "MAX_TUNING_VALUE",
    "SANDBOX_ENV",
    "SHUTDOWN_MARGIN_S",
    "WORKFLOW_SANDBOX",
    "WORKFLOW_TASK_TIMEOUT",
    "WorkerTuning",
    "dev_server_args",
    "env_flag",
    "limit_malloc_arenas",
    "sandbox_wanted",
]

WORKFLOW_TASK_TIMEOUT = timedelta(seconds=2)
"""Every run's workflow task timeout (Temporal's default: 10 s), set when it starts.

A worker killed while it holds a workflow task (between steps) has that task
given to another worker after this long. A run's task takes milliseconds of
CPU, but its clock runs from when the worker took it, queued behind the
worker's other tasks; one that takes longer on a saturated worker is
retried (work, not harm: the run replays and goes on), so keep
``--max-concurrent-workflow-tasks`` low enough that a worker clears its
queue well within it."""

SANDBOX_ENV = "ONWARD_WORKFLOW_SANDBOX"


_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})


def env_flag(environ: Mapping[str, str], name: str) -> bool:
    """An on/off setting: ``1``, ``true``, ``yes``, ``on`` or their opposites (unset: off).

    Raises:
        SettingsError: any other value (``2``, ``enabled``): not read as off in silence.
    """
    value = environ.get(name, "").strip().lower()
    if value not in _ON | _OFF:
        raise SettingsError(f"{name}={environ[name]!r}: expected 1/true/yes/on or 0/false/no/off")
    return value in _ON


def sandbox_wanted(environ: Mapping[str, str]) -> bool:
    """Whether :data:`SANDBOX_ENV` asks for the sandbox (see :func:`env_flag`)."""
    return env_flag(environ, SANDBOX_ENV)


try:
    WORKFLOW_SANDBOX = sandbox_wanted(os.environ)
except SettingsError:  # every process imports this: the worker's start says it, by name
    WORKFLOW_SANDBOX = False
"""Whether Onward's own workflows run in Temporal's workflow sandbox (read at import).

Off by default. The sandbox checks at run time that workflow code makes no
non-deterministic call (clock, randomness, I/O) and keeps module state apart
between runs. Onward's workflows run only Onward's code (a user's tools are
activities), keep no module state (the sandbox already passes ``onward``
through, see ``onward.plugin.SANDBOX_PASSTHROUGH``), and the test suite runs
them in the sandbox (``ONWARD_WORKFLOW_SANDBOX=1``) with replay tests of
recorded histories; in production the sandbox's entry into every activation
and every payload conversion costs a busy worker about a tenth of its CPU per
agent step (``make bench``, 100 agents). Set ``ONWARD_WORKFLOW_SANDBOX=1`` on
a worker to run them sandboxed anyway. A user's own workflows on the same
worker are sandboxed or not as they declare."""

DEV_SERVER_DYNAMIC_CONFIG = {"history.timerProcessorMaxTimeShift": "100ms"}
"""Dynamic config of the Temporal server Onward starts (the embedded dev server, and
``deploy/temporal/dynamicconfig/onward.yaml`` of ``temporal-dev.yml``).

Temporal fires no timer sooner than ``history.timerProcessorMaxTimeShift``
(default 1 s) after it is created, and a dead worker's model call waits on two
such timers: the heartbeat timeout, which each heartbeat pushes back, and the
retry's backoff. At 1 s a call killed mid-flight was retried 4.0 s after the new
worker started; at 100 ms, about 2 s sooner (``make bench``). The cost is the
server reading its timer queue more often: nothing on one machine; measure it
on a large cluster before setting it there."""

EMBEDDED_SERVER_DYNAMIC_CONFIG = {
    "system.forceSearchAttributesCacheRefreshOnRead": False,
    "history.transferProcessorMaxPollRPS": 200,
}
"""Dynamic config of the embedded dev server alone, where one machine's server differs
from a cluster's.

``history.transferProcessorMaxPollRPS``: a history shard reads its queue of new
tasks (a workflow task to hand to a worker after an activity completed, say) at
most this often, 20 times a second by default, and the dev server has one shard
for every workflow (a cluster has hundreds). After its first second every step
waited about 35 ms for that read: one agent's step took 51.8 ms, the floor's
51.5 ms, pydantic-ai's 101.5 ms (``make bench``, sequential). At 200: 13.4, 13.3
and 40.0 ms (``python -m bench.run --only sequential``, five interleaved rounds);
at 10 agents of 3 steps, 93 against 83 steps/s; at 100 agents within the noise,
the server spending 0.1-0.8 ms more CPU a step (its queue read more often, in
smaller batches; 1,000 a second cost up to 3 ms more).

``system.forceSearchAttributesCacheRefreshOnRead``: ``temporal server start-dev``
reads the search attribute definitions from its database every time it handles
one (a run started with them, each upsert, each history it sends with them), so
that an attribute registered a moment before works at once; a cluster caches
them (Temporal's default, kept here). Onward's runs start with search
attributes and upsert them as they end: with the cache, the dev server spent
0.3-0.8 ms more a step serving Onward than the floor instead of 1.0 ms
(``python -m bench.run --only throughput --no-peers``, 100 agents of 3 steps,
three interleaved pairs), and Onward's steps per second rose from 0.89-0.92x
to 0.90-0.95x the floor's. Onward's own attributes are
registered when the server creates its database (``--search-attribute``, see
:func:`dev_server_args`; the flag does nothing on an existing one), so they work
from its first run; one registered later on that server is refused for about 2 s
(measured), as on a cluster: a client that lists Onward's attributes starts its
runs without them meanwhile, and a run's upsert of one is retried. That is also
what happens, once, on a database an older ``onward dev`` created that no
worker has seen (its first worker registers them)."""

ENV_VARS = {
    "max_concurrent_workflow_tasks": "ONWARD_MAX_CONCURRENT_WORKFLOW_TASKS",
    "max_concurrent_activities": "ONWARD_MAX_CONCURRENT_ACTIVITIES",
    "max_concurrent_local_activities": "ONWARD_MAX_CONCURRENT_LOCAL_ACTIVITIES",
    "max_cached_workflows": "ONWARD_MAX_CACHED_WORKFLOWS",
    "sticky_timeout_s": "ONWARD_STICKY_TIMEOUT",
    "shutdown_timeout_s": "ONWARD_SHUTDOWN_TIMEOUT",
}
"""Each setting's environment variable; the flag is its name with dashes
(``--max-cached-workflows``; ``--sticky-timeout`` and ``--shutdown-timeout`` in seconds)."""


MAX_TUNING_VALUE = 2**31 - 1
"""The largest count (and number of seconds) a tuning setting takes."""


@dataclass(frozen=True)
class WorkerTuning:
    """Worker slots and timeouts; the defaults suit one worker on 2 cores."""

    max_concurrent_workflow_tasks: int = 100
    """Workflow tasks worked on at once. Each is milliseconds of CPU, so more
    slots only queue them inside the process (where their 2 s task timeout runs)."""
    max_concurrent_activities: int = 1000
    """Model calls (and tool activities) in flight at once: they wait on the network,
    not the CPU, so one worker can hold as many as it runs agents."""
    max_concurrent_local_activities: int = 200
    """Local tool calls and ``describe_worker`` at once."""
    max_cached_workflows: int = 1000
    """Runs kept in memory between steps. A run pushed out of the cache is replayed
    from its history at its next step (CPU); each cached run costs about 0.2 MB."""
    sticky_timeout_s: float = 1.0
    """After a worker dies, its runs' next tasks leave its sticky queue this fast
    (SDK default 10 s). Lower moves runs sooner but sends a busy worker's runs to
    others (a replay each) more often."""
    shutdown_timeout_s: float = 10.0
    """On SIGTERM, running activities get this long to finish before they are
    cancelled; a worker not stopped :data:`SHUTDOWN_MARGIN_S` after that exits
    anyway (its runs go on on the next worker, as after a crash)."""

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            # The SDK takes counts as 32-bit and a finite timeout: past those it crashes.
            if not 0 < value <= MAX_TUNING_VALUE:
                flag = "--" + item.name.removesuffix("_s").replace("_", "-")
                raise ValueError(
                    f"{flag} ({ENV_VARS[item.name]}): must be above 0 and at most "
                    f"{MAX_TUNING_VALUE:,}, not {value!r}"
                )

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None
    ) -> WorkerTuning:
        """The defaults, then ``ONWARD_*`` variables, then ``overrides`` (flags; None: unset).

        Raises:
            ValueError: a value that is not a number above 0, naming its variable.
        """
        values: dict[str, Any] = {}
        for name, variable in ENV_VARS.items():
            raw = environ.get(variable, "").strip()
            if not raw:
                continue
            parse = float if name.endswith("_s") else int
            try:
                values[name] = parse(raw)
            except ValueError:
                raise ValueError(f"{variable}: not a number: {raw!r}") from None
        values |= {k: v for k, v in (overrides or {}).items() if v is not None}
        return cls(**values)

    def worker_options(self) -> dict[str, Any]:
        """Keyword arguments for :class:`temporalio.worker.Worker`."""
        return {
            "max_concurrent_workflow_tasks": self.max_concurrent_workflow_tasks,
            "max_concurrent_activities": self.max_concurrent_activities,
            "max_concurrent_local_activities": self.max_concurrent_local_activities,
            "max_cached_workflows": self.max_cached_workflows,
            "sticky_queue_schedule_to_start_timeout": timedelta(seconds=self.sticky_timeout_s),
            "graceful_shutdown_timeout": timedelta(seconds=self.shutdown_timeout_s),
        }


SHUTDOWN_MARGIN_S = 5.0
"""How long after the shutdown timeout a stopping worker may take before it exits anyway.

By then the SDK has cancelled every running activity, and a cancelled call ends
within moments. One that does not is a tool blocking a thread, which nothing can
interrupt, or temporalio 1.35's race (sdk-rust #1538): a worker stopping just as
a call completes with its heartbeat's request in flight waits for good. The
margin also covers what follows the worker's stop (closing the providers, the
store, and flushing spans to the OpenTelemetry exporter): an exporter slower
than that loses the last spans. Process managers should wait longer than the
shutdown timeout plus this before they send SIGKILL."""

MALLOC_ARENAS = 2
"""glibc malloc arenas ``onward worker`` keeps itself to when ``MALLOC_ARENA_MAX`` is unset.

glibc gives threads that allocate at once their own arenas, up to eight a
core, and memory freed in one arena serves only that arena. A busy worker's
allocating threads (the SDK core's, the event loop's) spread its memory over
many arenas that each keep their own freed pages: at 1,000 agents of 10 steps,
peak RSS 302-309 MB with glibc's default against 289-301 MB with two arenas,
at the same steps per second (``make bench``)."""

_M_ARENA_MAX = -8  # <malloc.h>


def limit_malloc_arenas(environ: Mapping[str, str]) -> int | None:
    """Keep this process to :data:`MALLOC_ARENAS` malloc arenas; the number set, or None.

    Does nothing where ``MALLOC_ARENA_MAX`` is set (glibc has read it: the
    operator chose) or the C library is not glibc. Call it before threads
    start: arenas already made stay.
    """
    if environ.get("MALLOC_ARENA_MAX", "").strip():
        return None
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    return MALLOC_ARENAS if mallopt(_M_ARENA_MAX, MALLOC_ARENAS) == 1 else None


_CLI_TYPES = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
}
"""``temporal server start-dev --search-attribute NAME=TYPE`` type names."""


def dev_server_args() -> list[str]:
    """``temporal server start-dev`` arguments: :data:`DEV_SERVER_DYNAMIC_CONFIG`,
    :data:`EMBEDDED_SERVER_DYNAMIC_CONFIG` and Onward's search attributes."""
    dynamic = DEV_SERVER_DYNAMIC_CONFIG | EMBEDDED_SERVER_DYNAMIC_CONFIG
    return [
        *(
            arg
            for key, value in dynamic.items()
            for arg in ("--dynamic-config-value", f"{key}={json.dumps(value)}")
        ),
        *(
            arg
            for key in search_attributes.ALL
            for arg in ("--search-attribute", f"{key.name}={_CLI_TYPES[key.indexed_value_type]}")
        ),
    ]
