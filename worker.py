"""The Onward worker: wiring only, around :class:`~onward.plugin.OnwardPlugin`.

Run it with ``python worker.py`` or ``onward worker``; :data:`DESCRIPTION` (its
``--help``) says what it reads from the environment.
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    # ``python worker.py`` is ``onward worker``, before anything reads a setting: a bad
    # ONWARD_ENCRYPTION_KEYS or ONWARD_PAYLOAD_THRESHOLD (read on import) is one line,
    # not a traceback, and the worker finds the dev server ``onward dev`` started.
    from onward.starter.cli import main as onward_cli

    onward_cli(["worker", *sys.argv[1:]])

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Interceptor as WorkerInterceptor
from temporalio.worker import Worker

from onward.activities.providers import providers_from_env
from onward.activities.providers.base import ModelProvider
from onward.activities.providers.scripted import ScriptedModel
from onward.activities.providers.settings import DEFAULT_MAX_ATTEMPTS, ModelCallSettings
from onward.activities.rate_limits import (
    RATE_LIMITS_ENV,
    RateLimit,
    check_providers,
    rate_limits_from_env,
)
from onward.activities.telemetry import ActivityTelemetry
from onward.activities.tools import (
    AllowList,
    McpServerConfig,
    ToolLoadError,
    ToolRegistry,
    builtin_registry,
    entry_point_tools,
    load_mcp_config,
    load_tools,
    register_tools,
)
from onward.activities.tools.mcp_config import MCP_CONFIG_ENV
from onward.activities.webhooks import WEBHOOK_ALLOW_ENV
from onward.connection import DATA_CONVERTER, connect_config, connect_with_retry, task_queue
from onward.errors import SettingsError
from onward.plugin import DEFAULT_WORKSPACE, OnwardPlugin, ensure_search_attributes
from onward.pricing import PricingTable
from onward.store import (
    LocalStore,
    StoreError,
    TranscriptStore,
    is_postgres,
    local_root,
    open_store,
    store_url,
)
from onward.store.payloads import payload_directory
from onward.telemetry import WORKER_SERVICE, configure_telemetry, temporal_runtime
from onward.tuning import (
    ENV_VARS,
    SHUTDOWN_MARGIN_S,
    WorkerTuning,
    limit_malloc_arenas,
    sandbox_wanted,
)

__all__ = [
    "DESCRIPTION",
    "OnwardPlugin",
    "WorkerSettings",
    "WorkerTuning",
    "build_worker",
    "ensure_search_attributes",
    "main",
    "onward_plugin",
    "parse_args",
    "run_worker",
    "tool_registry",
]

DESCRIPTION = """\
Run an Onward worker: it runs agents and their model and tool calls.

It connects through TEMPORAL_ADDRESS and TEMPORAL_NAMESPACE (or the Temporal
profile file), polls ONWARD_TASK_QUEUE (default: onward), waits while the
server is unreachable, and shuts down gracefully on SIGTERM or Ctrl-C.

Tools: the built-ins (http_fetch limited by ONWARD_HTTP_ALLOW), the tools of
installed packages' onward.tools entry points, and the modules named by
--tools (repeatable) or ONWARD_TOOLS=mod1,mod2, and the tools of the MCP
servers in the JSON file --mcp-config or ONWARD_MCP_CONFIG names (the
"mcpServers" file of Claude Desktop and Cursor; a server that cannot be
reached stops the start).

Webhooks: signed with ONWARD_WEBHOOK_SECRET (none is sent without it), and
only to public addresses unless ONWARD_WEBHOOK_ALLOW lists the receiver.

Runs keep their conversation and full step log in ONWARD_STORE (default: the
directory .onward/store; postgresql://... for workers on several machines, an
unreachable database stops the start), and payloads over
ONWARD_PAYLOAD_THRESHOLD bytes (default 262144) in ONWARD_PAYLOADS (default:
.onward/payloads). Clients reading step logs must use the same settings.

Slots, cache, sticky and shutdown timeouts: the tuning flags below, or their
ONWARD_* variables (a flag wins). On SIGTERM or Ctrl-C running calls get the
shutdown timeout to finish; a worker not stopped 5 s after it exits anyway
(status 1), as does a second SIGTERM or Ctrl-C at once."""
"""What ``onward worker --help`` says: plain text, no reST markup."""

log = logging.getLogger("onward.worker")
_T = TypeVar("_T")

STICKY_QUEUE_TIMEOUT = timedelta(seconds=WorkerTuning.sticky_timeout_s)
"""After a worker dies, its runs move to another worker this fast (SDK default: 10 s);
``--sticky-timeout`` / ``ONWARD_STICKY_TIMEOUT`` change it."""
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
"""Plain text, one line a record (Core's logs are forwarded into it: no colour codes)."""


@dataclass(frozen=True)
class WorkerSettings:
    """Everything the worker reads from its environment, read once at startup."""

    task_queue: str
    workspace: Path
    pricing_files: tuple[Path, ...] = ()
    namespace: str = "default"
    tool_modules: tuple[str, ...] = ()
    """Modules of user tools: ``ONWARD_TOOLS`` (comma-separated), then ``--tools``."""
    http_allow: AllowList = field(default_factory=AllowList)
    """Exceptions to ``http_fetch``'s address guard: ``ONWARD_HTTP_ALLOW``."""
    webhook_allow: AllowList | None = None
    """Webhook receivers at non-public addresses: ``ONWARD_WEBHOOK_ALLOW``
    (None: the plugin reads it from the process's environment)."""
    store_url: str = field(default_factory=lambda: store_url({}))
    """The transcript store: ``ONWARD_STORE`` (``postgresql://...``), or ``.onward/store``."""
    tuning: WorkerTuning = field(default_factory=WorkerTuning)
    """Slots, cache and timeouts: ``ONWARD_MAX_*``, ``ONWARD_STICKY_TIMEOUT``,
    ``ONWARD_SHUTDOWN_TIMEOUT`` or flags."""
    mcp_servers: tuple[McpServerConfig, ...] = ()
    """MCP servers whose tools the worker offers: those of the file ``ONWARD_MCP_CONFIG``
    (or ``--mcp-config``) names."""
    rate_limits: Mapping[str, RateLimit] = field(default_factory=dict)
    """Requests and tokens per minute of model calls, shared by every worker of the
    store: those of the file ``ONWARD_RATE_LIMITS`` (or ``--rate-limits``) names."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> WorkerSettings:
        """Read the environment once.

        Raises:
            ValueError: a bad ``ONWARD_HTTP_ALLOW`` or ``ONWARD_WEBHOOK_ALLOW`` entry,
                Temporal profile file, tuning variable (``ONWARD_MAX_*``,
                ``ONWARD_*_TIMEOUT``), MCP configuration or rate limits file.
        """
        env = os.environ if environ is None else environ
        pricing = env.get("ONWARD_PRICING")
        mcp_config = env.get(MCP_CONFIG_ENV)
        modules = (env.get("ONWARD_TOOLS") or "").split(",")
        return cls(
            task_queue=task_queue(env),
            workspace=Path(env.get("ONWARD_WORKSPACE") or DEFAULT_WORKSPACE).resolve(),
            pricing_files=(Path(pricing),) if pricing else (),
            # envconfig's namespace: TEMPORAL_NAMESPACE, else the profile's, else "default".
            namespace=str(connect_config(env).get("namespace") or "default"),
            tool_modules=tuple(name.strip() for name in modules if name.strip()),
            http_allow=AllowList.from_env(env),
            webhook_allow=AllowList.from_env(env, WEBHOOK_ALLOW_ENV),
            store_url=store_url(env),
            tuning=WorkerTuning.from_env(env),
            mcp_servers=tuple(load_mcp_config(Path(mcp_config), env)) if mcp_config else (),
            rate_limits=rate_limits_from_env(env),
        )


def tool_registry(settings: WorkerSettings) -> ToolRegistry:
    """The built-ins, then entry-point tools, then the ``--tools`` modules.

    Raises:
        ToolLoadError: a module or entry point cannot be loaded, or a name clashes.
    """
    registry = builtin_registry(http_allow=settings.http_allow)
    register_tools(registry, [*entry_point_tools(), *load_tools(settings.tool_modules)])
    return registry


def onward_plugin(
    settings: WorkerSettings,
    *,
    registry: ToolRegistry | None = None,
    providers: Mapping[str, ModelProvider] | None = None,
    search_attribute_names: Sequence[str] | None = None,
    model_max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    telemetry: ActivityTelemetry | None = None,
    interceptors: Sequence[ClientInterceptor | WorkerInterceptor] = (),
    store: TranscriptStore | None = None,
) -> OnwardPlugin:
    """The plugin configured by ``settings``; only the scripted model unless ``providers``.

    Without ``store``, a local directory store at ``settings.store_url`` (a
    PostgreSQL store must be opened first, with :func:`onward.store.open_store`).
    """
    if store is None:
        if is_postgres(settings.store_url):
            raise ValueError("onward_plugin: open a PostgreSQL store with open_store() first")
        store = TranscriptStore(
            LocalStore(local_root(settings.store_url)), DATA_CONVERTER.payload_codec
        )
    return OnwardPlugin(
        registry=registry or builtin_registry(http_allow=settings.http_allow),
        webhook_allow=settings.webhook_allow,
        providers=providers if providers is not None else {"scripted": ScriptedModel()},
        model_max_attempts=model_max_attempts,
        workspace=settings.workspace,
        pricing=PricingTable.load(*settings.pricing_files),
        search_attribute_names=search_attribute_names,
        interceptors=interceptors,
        telemetry=telemetry,
        store=store,
        mcp_servers=settings.mcp_servers,
        rate_limits=settings.rate_limits,
    )


def build_worker(
    client: Client,
    settings: WorkerSettings,
    *,
    registry: ToolRegistry | None = None,
    providers: Mapping[str, ModelProvider] | None = None,
    search_attribute_names: Sequence[str] = (),
    model_max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    telemetry: ActivityTelemetry | None = None,
    store: TranscriptStore | None = None,
    **options: Any,
) -> Worker:
    """A worker on ``client`` running Onward through :class:`OnwardPlugin`.

    Tests and embedders pass their own ``registry`` and ``providers``;
    ``run_worker`` gives the plugin to the client instead.
    """
    plugin = onward_plugin(
        settings,
        registry=registry,
        providers=providers,
        search_attribute_names=search_attribute_names,
        model_max_attempts=model_max_attempts,
        telemetry=telemetry,
        store=store,
    )
    return Worker(
        client, task_queue=settings.task_queue, plugins=[plugin], **_tuned(settings, options)
    )


def _tuned(settings: WorkerSettings, options: dict[str, Any]) -> dict[str, Any]:
    """``options``, with the settings' tuning where they say nothing."""
    return settings.tuning.worker_options() | options


def require_writable(directory: Path, setting: str) -> None:
    """Create ``directory`` and write a file in it, or raise SettingsError naming ``setting``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".onward-write-check-"):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise SettingsError(f"{setting}: cannot write to {directory}: {reason}") from None


async def run_worker(
    settings: WorkerSettings,
    stop: asyncio.Event | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    trace_file: Path | None = None,
    registry: ToolRegistry | None = None,
) -> None:
    """Connect (waiting for the server), register search attributes, poll until ``stop``."""
    env = dict(os.environ if environ is None else environ)
    stop = stop or asyncio.Event()
    registry = registry or tool_registry(settings)
    # Provider settings are checked before connecting, so a bad ONWARD_ENDPOINTS or
    # ONWARD_MODEL_* stops the start at once instead of failing runs later.
    try:
        providers = providers_from_env(env)
        max_attempts = ModelCallSettings.from_env(env).max_attempts
        check_providers(settings.rate_limits, providers)
    except ValueError as err:  # each check names its variable
        raise SettingsError(str(err)) from err
    sandbox_wanted(env)  # read at import, where a bad value could only be ignored
    # Before connecting too: an unreachable PostgreSQL stops the start with its reason,
    # and a directory the worker cannot write to, instead of every run failing later.
    if not is_postgres(settings.store_url):
        require_writable(local_root(settings.store_url), "ONWARD_STORE")
    payloads = payload_directory(env)
    if payloads is not None:
        require_writable(payloads, "ONWARD_PAYLOADS")
    store = await open_store(settings.store_url, DATA_CONVERTER.payload_codec)
    try:
        telemetry = configure_telemetry(env, service_name=WORKER_SERVICE, trace_file=trace_file)
    except OSError as err:  # only the trace file is opened here
        where = trace_file or env.get("ONWARD_TRACE_FILE")
        raise SettingsError(f"--trace-file (ONWARD_TRACE_FILE) {where}: {err.strerror}") from err
    plugin = onward_plugin(
        settings,
        registry=registry,
        providers=providers,
        model_max_attempts=max_attempts,
        telemetry=ActivityTelemetry(trace_content=telemetry.trace_content),
        interceptors=telemetry.interceptors,
        store=store,
    )  # search_attribute_names=None: registered below, before the worker says it is ready
    connect_options: dict[str, Any] = {"plugins": [plugin], "runtime": temporal_runtime(env)}
    try:
        # A store that cannot keep the shared rate limits stops the start (a PostgreSQL
        # role that may not create their table), instead of every model call failing.
        await plugin.rate_limits.check()
        # Before connecting too: an MCP server that cannot be reached stops the start, as
        # a tool module that cannot be imported does. The worker shares these sessions.
        async with _mcp_sessions_unless_stopped(plugin, stop) as started:
            if not started:
                return  # asked to stop while an MCP server was still starting
            if settings.mcp_servers:
                log.info("tools (with MCP servers'): %s", ", ".join(plugin.registry.names()))
            client = await _connect_unless_stopped(env, settings.namespace, connect_options, stop)
            if client is None:
                return  # asked to stop while the server was still unreachable
            await _require_namespace(client)
            # Before "ready": a client that lists them then finds them (see the method).
            await plugin.register_search_attributes(client)
            worker = Worker(client, task_queue=settings.task_queue, **_tuned(settings, {}))
            log.info("worker polling task queue %r (pid %d)", settings.task_queue, os.getpid())
            async with worker:
                print(
                    f"onward worker ready: task queue {settings.task_queue!r}, pid {os.getpid()}",
                    flush=True,
                )
                await stop.wait()
                log.info("shutting down gracefully")
    finally:
        telemetry.shutdown()  # the plugin closed the providers when the worker stopped
        await store.close()


class _Watchdog(threading.Event):
    """Once set, ends this process if it has not ended ``limit_s`` later.

    Its daemon thread fires whatever the process waits on: the SDK's worker, or
    the event loop's executor and the interpreter, which both wait for a tool
    blocking a thread (see :data:`~onward.tuning.SHUTDOWN_MARGIN_S`). Started
    before any signal: a handler that started a thread could wait for good on a
    lock the interrupted code holds.
    """

    def __init__(self, limit_s: float) -> None:
        super().__init__()
        self._limit_s = limit_s
        threading.Thread(target=self._watch, name="onward-stop-watchdog", daemon=True).start()

    def _watch(self) -> None:
        self.wait()
        time.sleep(self._limit_s)
        _exit_now(f"did not stop within {self._limit_s:.0f} s")


def _exit_now(why: str) -> None:
    """End this process at once, saying why on stderr (no lock another thread may hold)."""
    try:
        message = f"onward worker: {why}; exiting anyway (its runs go on on the next worker)\n"
        os.write(2, message.encode())
    finally:
        os._exit(1)


async def _require_namespace(client: Client) -> None:
    """Refuse to start in a namespace the server has not.

    The SDK's worker finds out only when it stops: until then it says nothing
    and polls nothing, while this process would look ready.

    Raises:
        SettingsError: the namespace is unknown to the server.
    """
    request = DescribeNamespaceRequest(namespace=client.namespace)
    try:
        await client.workflow_service.describe_namespace(request)
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            # A key allowed to run workers need not be allowed to describe: go on.
            log.warning("could not check namespace %r: %s", client.namespace, err.message)
            return
        raise SettingsError(
            f"namespace {client.namespace!r} is not on the server (TEMPORAL_NAMESPACE or "
            "the Temporal profile names it); create it or name another"
        ) from err


@contextlib.asynccontextmanager
async def _mcp_sessions_unless_stopped(
    plugin: OnwardPlugin, stop: asyncio.Event
) -> AsyncIterator[bool]:
    """``plugin.mcp_sessions()``; False, and none held, if ``stop`` is set while the
    servers start (a package manager fetching one can take a minute)."""
    sessions = plugin.mcp_sessions()
    entered = await _unless_stopped(sessions.__aenter__(), stop)
    if entered is None:  # cancelling the entry closed what it had opened
        log.info("stopped while the MCP servers were starting")
        yield False
        return
    entered.result()  # a server that cannot be reached: raised here
    async with contextlib.AsyncExitStack() as held:
        held.push_async_exit(sessions)
        yield True


async def _connect_unless_stopped(
    env: Mapping[str, str], namespace: str, options: dict[str, Any], stop: asyncio.Event
) -> Client | None:
    """Connect, waiting for the server; None if ``stop`` is set first (SIGTERM while waiting)."""
    connected = await _unless_stopped(connect_with_retry(env, namespace=namespace, **options), stop)
    if connected is None:
        log.info("stopped before the server could be reached")
        return None
    return connected.result()


async def _unless_stopped(work: Awaitable[_T], stop: asyncio.Event) -> asyncio.Future[_T] | None:
    """``work``, done (its result or its error), or None if ``stop`` was set first: then
    ``work`` is cancelled, and waited for until it has ended."""
    doing = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({doing, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if doing.done():
        return doing
    doing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await doing
    return None


def parse_args(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[WorkerSettings, argparse.Namespace]:
    """The settings of ``onward worker ARGV``: the environment, then the flags.

    Exits (status 2, naming the setting) on a bad flag or variable.
    """
    env = os.environ if environ is None else environ
    parser = _parser(env)
    args = parser.parse_args(argv)
    if args.mcp_config is not None:  # the flag wins: the variable's file is not read
        env = {**env, MCP_CONFIG_ENV: args.mcp_config}
    if args.rate_limits is not None:
        env = {**env, RATE_LIMITS_ENV: args.rate_limits}
    try:
        settings = WorkerSettings.from_env(env)
        flags = {name: getattr(args, name.removesuffix("_s")) for name in ENV_VARS}
        settings = replace(
            settings,
            task_queue=args.task_queue or settings.task_queue,
            tool_modules=(*settings.tool_modules, *args.tools),
            tuning=WorkerTuning.from_env(env, flags),
        )
    except ValueError as err:  # a bad ONWARD_*_ALLOW entry or tuning value: refuse to start
        parser.error(str(err))
    args.parser = parser
    return settings, args


def _log_level(name: str) -> str:
    """A logging level's name, upper-cased; argparse names the flag when it is none."""
    level = name.strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise argparse.ArgumentTypeError(
            f"{name!r} is no level (DEBUG, INFO, WARNING, ERROR; ONWARD_LOG_LEVEL too)"
        )
    return level


def _parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onward worker",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--task-queue", help="default: $ONWARD_TASK_QUEUE or 'onward'")
    parser.add_argument(
        "--log-level",
        type=_log_level,
        default=env.get("ONWARD_LOG_LEVEL", "INFO"),
        help="DEBUG, INFO (default), WARNING or ERROR; also $ONWARD_LOG_LEVEL",
    )
    parser.add_argument(
        "--trace-file", type=Path, help="write OpenTelemetry spans as JSON lines to this file"
    )
    parser.add_argument(
        "--tools",
        action="append",
        default=[],
        metavar="MODULE",
        help="import user tools from MODULE or MODULE:NAME (repeatable; also "
        "$ONWARD_TOOLS=mod1,mod2)",
    )
    parser.add_argument(
        "--mcp-config",
        metavar="FILE",
        help='offer the tools of the MCP servers in FILE, JSON: {"mcpServers": {...}} '
        "(also $ONWARD_MCP_CONFIG)",
    )
    parser.add_argument(
        "--rate-limits",
        metavar="FILE",
        help="requests and tokens per minute of model calls, shared by every worker of the "
        'store, JSON or TOML: {"openai": {"requests_per_minute": 500}} '
        "(also $ONWARD_RATE_LIMITS)",
    )
    tuning = parser.add_argument_group("tuning (see README, Performance)")
    for flag, kind, what in (
        ("--max-concurrent-workflow-tasks", int, "workflow tasks at once (default 100)"),
        ("--max-concurrent-activities", int, "model calls and tool activities at once (1000)"),
        ("--max-concurrent-local-activities", int, "local tool calls at once (200)"),
        ("--max-cached-workflows", int, "runs kept in memory between steps (1000)"),
        ("--sticky-timeout", float, "seconds before a dead worker's runs move on (1)"),
        ("--shutdown-timeout", float, "seconds running calls get to finish on SIGTERM (10)"),
    ):
        name = flag.removeprefix("--").replace("-", "_")
        variable = ENV_VARS.get(name) or ENV_VARS[f"{name}_s"]
        tuning.add_argument(flag, type=kind, metavar="N", help=f"{what}; also ${variable}")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python worker.py`` and ``onward worker``."""
    arenas = limit_malloc_arenas(os.environ)  # first: before any thread allocates
    settings, args = parse_args(argv)
    parser: argparse.ArgumentParser = args.parser
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # Tool modules in the current directory are found, but last: a folder there
    # named like an installed package (workflows/, httpx/) must not shadow it.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        registry = tool_registry(settings)  # before connecting: a typo fails at once
    except ToolLoadError as err:
        parser.error(str(err))
    log.info("tools: %s", ", ".join(registry.names()))
    if arenas is not None:
        log.info("malloc arenas: at most %d (set MALLOC_ARENA_MAX to choose)", arenas)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        limit_s = settings.tuning.shutdown_timeout_s + SHUTDOWN_MARGIN_S
        stopping = _Watchdog(limit_s)  # its thread starts now, not in a signal handler

        def asked_to_stop(signum: int, frame: object) -> None:
            # A plain handler, not the loop's: it runs even while a tool blocks the loop.
            if stopping.is_set():
                _exit_now("asked twice to stop")
            stopping.set()
            if not loop.is_closed():
                loop.call_soon_threadsafe(stop.set)

        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
        for sig, handler in previous.items():
            if handler is not signal.SIG_IGN:  # nohup, or `&` in a script: stays ignored
                signal.signal(sig, asked_to_stop)
        try:
            await run_worker(settings, stop, trace_file=args.trace_file, registry=registry)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    try:
        asyncio.run(serve())
    except SettingsError as err:  # a setting only the start could check: named, no traceback
        parser.exit(2, f"onward worker: {err}\n")
    except StoreError as err:  # ONWARD_STORE names a database that cannot be used
        parser.exit(1, f"onward worker: {err}\n")
    except ToolLoadError as err:  # an MCP server cannot be reached, or its tools not offered
        parser.exit(2, f"onward worker: {err}\n")
    return 0
