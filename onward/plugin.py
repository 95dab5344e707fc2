"""``OnwardPlugin``: Onward's agent inside anyone's Temporal application.

One object adds everything an Onward run needs to a user's own client and
workers, the way ``temporalio.contrib.openai_agents`` and pydantic-ai's
``PydanticAIPlugin`` do::

    client = await Client.connect("localhost:7233", plugins=[OnwardPlugin(tools=[my_tool])])
    worker = Worker(client, task_queue="mine", workflows=[MyWorkflow], activities=[my_activity])

Every worker built on that client also runs ``AgentWorkflow``, the model
activity and the tool activities, and the client uses Onward's pydantic data
converter. ``worker.py`` (``onward worker``) is this plugin plus configuration
from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.client import Interceptor as ClientInterceptor
from temporalio.plugin import SimplePlugin
from temporalio.service import RPCError
from temporalio.worker import Interceptor as WorkerInterceptor
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from onward import search_attributes
from onward.activities.model import ModelActivities
from onward.activities.providers import close_providers, providers_from_env
from onward.activities.providers.base import ModelProvider
from onward.activities.providers.settings import ModelCallSettings
from onward.activities.rate_limits import (
    RateLimit,
    RateLimits,
    check_providers,
    rate_limits_from_env,
)
from onward.activities.telemetry import ActivityTelemetry
from onward.activities.tool_calls import ToolActivities
from onward.activities.tools import (
    AllowList,
    McpServerConfig,
    Tool,
    ToolRegistry,
    builtin_registry,
    register_tools,
)
from onward.activities.webhooks import (
    WEBHOOK_ALLOW_ENV,
    WEBHOOK_SECRET_ENV,
    WebhookActivities,
)
from onward.connection import DATA_CONVERTER, read
from onward.pricing import PricingTable
from onward.store import DEFAULT_STORE_DIR, LocalStore, TranscriptStore, local_root
from onward.store.base import RateBackend
from onward.tool_cache import ToolCache
from onward.workflows import AgentWorkflow, InputCheckWorkflow, SessionWorkflow

if TYPE_CHECKING:
    from onward.activities.tools.mcp_servers import McpServers

__all__ = [
    "DEFAULT_WORKSPACE",
    "PLUGIN_NAME",
    "SANDBOX_PASSTHROUGH",
    "OnwardPlugin",
    "ensure_search_attributes",
    "pass_onward_through",
]

PLUGIN_NAME = "onward.OnwardPlugin"
DEFAULT_WORKSPACE = Path(".onward/workspace")
"""Where the file tools read and write when no workspace is given (``ONWARD_WORKSPACE``)."""

log = logging.getLogger("onward.worker")


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register Onward's search attributes where missing; return those the server has.

    Idempotent, so every worker does it on startup against any server. A
    server that refuses (no permission, no free slot) is logged, and runs
    then simply do not set the attributes it lacks.
    """
    wanted = {key.name: key for key in search_attributes.ALL}
    have: set[str] = set()
    try:
        listed = await read(
            client.operator_service.list_search_attributes,
            ListSearchAttributesRequest(namespace=namespace),
        )
        have = set(listed.custom_attributes)
        missing = {
            name: IndexedValueType.ValueType(key.indexed_value_type.value)
            for name, key in wanted.items()
            if name not in have
        }
        if missing:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
            )
            log.info("registered search attributes: %s", ", ".join(sorted(missing)))
            have |= set(missing)
    except RPCError as err:
        log.warning("could not register search attributes (%s); runs will not set them", err)
    return sorted(name for name in wanted if name in have)


SANDBOX_PASSTHROUGH = ("onward",)
"""Modules the workflow sandbox imports once per worker instead of once per run.

The sandbox re-imports every module of a workflow that it does not pass
through for each new run: for Onward's workflow that was half of a busy
worker's CPU (``make bench``, 100 agents: 50% of samples re-importing
``onward.workflows``, and compiling it from source where no bytecode is
cached, as under ``PYTHONDONTWRITEBYTECODE``). Onward's modules keep no state
between runs; the sandbox's runtime checks (no I/O, clock or randomness)
still apply to them when they run in it (``ONWARD_WORKFLOW_SANDBOX=1``, see
``onward.tuning.WORKFLOW_SANDBOX``), and to a user's workflows that import them."""


def pass_onward_through(runner: WorkflowRunner | None) -> WorkflowRunner:
    """The worker's sandboxed runner with :data:`SANDBOX_PASSTHROUGH` added (others as given)."""
    if runner is None:
        runner = SandboxedWorkflowRunner()
    if not isinstance(runner, SandboxedWorkflowRunner):
        return runner
    restrictions = runner.restrictions.with_passthrough_modules(*SANDBOX_PASSTHROUGH)
    return dataclasses.replace(runner, restrictions=restrictions)


class OnwardPlugin(SimplePlugin):
    """Adds Onward's workflow, activities, data converter and interceptors to a Temporal app.

    Give it to ``Client.connect(..., plugins=[...])`` (every worker on that
    client gets it) or to one ``Worker(..., plugins=[...])``. Model providers
    hold connection pools; the plugin closes them when a worker using it stops.

    Args:
        tools: the user's own tools (functions decorated with
            ``onward.activities.tools.tool``),
            offered beside the built-ins.
        registry: a complete tool registry instead of the built-ins plus ``tools``.
        providers: model providers by name; default: from this process's
            environment (``OPENAI_API_KEY``, ``ONWARD_ENDPOINTS``...), as the worker does.
        model_max_attempts: attempts of one model call before the run fails;
            default: ``ONWARD_MODEL_MAX_ATTEMPTS`` or 8. Runs learn it from the
            worker, so this is the only place it is decided.
        workspace: the directory the file tools are confined to.
        pricing: prices of model usage; default: the bundled table.
        http_allow: exceptions to ``http_fetch``'s address guard.
        webhook_allow: webhook receivers that may be at non-public addresses;
            default: ``ONWARD_WEBHOOK_ALLOW`` in this process's environment.
        search_attribute_names: the Onward search attributes the server has;
            None registers them on worker start (idempotent) and uses those.
        interceptors: client and worker interceptors to add, e.g. the tracing
            interceptors of :func:`onward.telemetry.configure_telemetry`
            (:class:`~onward.telemetry.RunTracingInterceptor`, which also traces
            runs started without a trace; add it or Temporal's
            ``TracingInterceptor``, not both).
        telemetry: GenAI spans of the model and tool activities.
        store: where runs keep their conversation and full step log, and their
            memory (``remember``/``recall``); a PostgreSQL store keeps the runs'
            workspaces too, instead of ``workspace``. Default: a directory,
            ``.onward/store`` (see :func:`onward.store.open_store`). Every
            worker of a task queue and every client reading step logs or
            artifacts must use the same store.
        mcp_servers: MCP servers whose tools are offered too, as
            ``<server>_<tool>``: connected when the first worker using this
            plugin starts (one session a server, shared by its workers, closed
            when the last stops; see :meth:`mcp_sessions`). A server that
            cannot be reached then stops that worker's start
            (:class:`~onward.activities.tools.mcp_servers.McpServerError`).
        rate_limits: requests and tokens per minute of model calls, by provider
            (``openai``) or model (``openai:gpt-4.1``), kept in ``store`` and so
            shared by every worker using it; default: the file
            ``ONWARD_RATE_LIMITS`` names, if any (see :mod:`onward.activities.rate_limits`).

    Raises:
        ValueError: both ``tools`` and ``registry`` were given, a provider
            setting, ``ONWARD_WEBHOOK_ALLOW`` or ``ONWARD_RATE_LIMITS`` in the
            environment is bad, or a rate limit names a provider not in ``providers``.
        ToolLoadError: a tool's name clashes with another's.
    """

    def __init__(
        self,
        *,
        tools: Sequence[Tool] = (),
        registry: ToolRegistry | None = None,
        providers: Mapping[str, ModelProvider] | None = None,
        model_max_attempts: int | None = None,
        workspace: Path | str = DEFAULT_WORKSPACE,
        pricing: PricingTable | None = None,
        http_allow: AllowList | None = None,
        webhook_allow: AllowList | None = None,
        search_attribute_names: Sequence[str] | None = None,
        interceptors: Sequence[ClientInterceptor | WorkerInterceptor] = (),
        telemetry: ActivityTelemetry | None = None,
        store: TranscriptStore | None = None,
        mcp_servers: Sequence[McpServerConfig] = (),
        rate_limits: Mapping[str, RateLimit | Mapping[str, float]] | None = None,
    ) -> None:
        if registry is not None and tools:
            raise ValueError("OnwardPlugin: give tools= or registry=, not both")
        if registry is None:
            registry = builtin_registry(http_allow=http_allow or AllowList())
            register_tools(registry, tools)
        if providers is None:
            providers = providers_from_env(os.environ)
        call_settings = ModelCallSettings.from_env(os.environ)
        if model_max_attempts is None:
            model_max_attempts = call_settings.max_attempts
        if rate_limits is None:
            rate_limits = rate_limits_from_env(os.environ)
        # A RateLimit or its fields ({"requests_per_minute": 500}): checked here.
        limits = {key: RateLimit.model_validate(limit) for key, limit in rate_limits.items()}
        check_providers(limits, providers)
        telemetry = telemetry or ActivityTelemetry()
        self._mcp: McpServers | None = None
        if mcp_servers:
            # Imported only here: the SDK takes about 0.4 s to import.
            from onward.activities.tools.mcp_servers import McpServers

            self._mcp = McpServers(mcp_servers)
        self._providers = dict(providers)
        # -- webhooks: the secret is read here, like the providers' keys ----
        if webhook_allow is None:
            webhook_allow = AllowList.from_env(os.environ, WEBHOOK_ALLOW_ENV)
        self._webhooks = WebhookActivities(os.environ.get(WEBHOOK_SECRET_ENV), allow=webhook_allow)
        # -- end webhooks -----------------------------------------------------------------
        self._register_search_attributes = search_attribute_names is None
        self._registering: dict[tuple[str, str], asyncio.Future[list[str]]] = {}
        self._store = store or TranscriptStore(
            LocalStore(local_root(DEFAULT_STORE_DIR)), DATA_CONVERTER.payload_codec
        )
        pricing = pricing or PricingTable.load()
        backend = self._store.backend
        self._model = ModelActivities(
            self._providers,
            pricing,
            telemetry=telemetry,
            store=self._store,
            rate_limits=RateLimits(
                limits,
                backend if isinstance(backend, RateBackend) else None,
                call_timeout_s=call_settings.timeout_s,
            ),
        )
        self._tool_activities = ToolActivities(
            registry,
            Path(workspace).resolve(),
            search_attribute_names or (),
            telemetry=telemetry,
            providers=self._model.provider_names,
            unusable_providers=self._model.unusable_providers,
            model_max_attempts=model_max_attempts,
            context_windows=pricing.context_window,
            tool_cache=ToolCache(self._store),
            store=self._store,  # memory, and workspaces kept in PostgreSQL
        )
        super().__init__(
            PLUGIN_NAME,
            data_converter=DATA_CONVERTER,
            interceptors=list(interceptors),
            workflows=[AgentWorkflow, SessionWorkflow, InputCheckWorkflow],
            workflow_runner=pass_onward_through,
            activities=[
                self._model.call_model,
                self._model.write_transcript,
                self._model.compact_transcript,
                self._model.copy_conversation,  # sessions
                self._tool_activities.describe_worker,
                self._tool_activities.execute_tool,
                self._tool_activities.list_artifacts,  # artifacts
                # Dynamic: local tool calls are typed by their summary for the Web UI's
                # timeline. A worker takes one dynamic activity, so this is it.
                self._tool_activities.execute_local_tool,
                self._webhooks.deliver_webhook,
            ],
        )

    @property
    def store(self) -> TranscriptStore:
        """The transcript store this plugin's workers write runs to."""
        return self._store

    @property
    def rate_limits(self) -> RateLimits:
        """The shared rate limits this plugin's model calls wait their turn under."""
        return self._model.rate_limits

    @property
    def registry(self) -> ToolRegistry:
        """The tools this plugin's workers offer."""
        return self._tool_activities.registry

    @contextlib.asynccontextmanager
    async def mcp_sessions(self) -> AsyncIterator[None]:
        """Hold the MCP servers' sessions open, their tools registered; nothing without servers.

        A worker using this plugin holds them while it runs; ``onward worker``
        also holds them from before it connects to Temporal, so a server that
        cannot be reached stops its start at once. Entered again (by another
        worker), it shares the sessions; the last to leave closes them.

        Raises:
            McpServerError: a server cannot be reached, or one of its tools cannot be
                offered under a name model APIs take.
            ToolLoadError: an MCP tool's name is another tool's.
        """
        if self._mcp is None:
            yield
            return
        async with self._mcp as tools:
            self._mcp.register(self.registry, tools)  # the same Tool objects on every entry
            yield

    async def register_search_attributes(self, client: Client) -> None:
        """Register Onward's search attributes on ``client``'s server now (unless given).

        A worker does it when it starts running, so this is only for a process that
        says it is ready once its worker runs (``async with worker``, which returns
        before that): said after this, a client that lists the attributes at once
        finds them, and starts its runs with their first values. Workers sharing this
        plugin wait for one registration a server and namespace; one that did not
        get them all (a refusal is logged) is tried again by the next.
        """
        if not self._register_search_attributes:
            return
        key = (client.service_client.config.target_host, client.namespace)
        registering = self._registering.get(key)
        if registering is None:
            registering = asyncio.ensure_future(ensure_search_attributes(client, client.namespace))
            self._registering[key] = registering
        try:
            # Shielded: a worker cancelled while it waits leaves the others theirs.
            names = await asyncio.shield(registering)
        except BaseException:
            if registering.done() and self._registering.get(key) is registering:
                del self._registering[key]  # it failed itself: the next one tries again
            raise
        if len(names) < len(search_attributes.ALL) and self._registering.get(key) is registering:
            del self._registering[key]
        self._tool_activities.set_search_attributes(names)

    async def run_worker(self, worker: Worker, next: Callable[[Worker], Awaitable[None]]) -> None:
        """Register search attributes (unless given or done), open the MCP sessions, run the
        worker, close providers and sessions."""
        await self.register_search_attributes(worker.client)
        # The worker encodes with its client's converter: runs it begins name local tool
        # calls without their arguments (plain text in the history) when it encrypts.
        self._tool_activities.set_sealed(worker.client.data_converter.payload_codec is not None)
        try:
            async with self.mcp_sessions():
                await super().run_worker(worker, next)
        finally:
            # After the worker has drained its activities; a later call reopens the pool.
            await close_providers(self._providers)
