"""The whole protocol between clients, the agent workflow and its activities.

Every workflow, activity, signal, query and update takes one of these models
and returns one. Workflows, activities and clients all import this module, so
it is the single place a reader learns the protocol from.

Compatibility rule: histories recorded by older versions must keep decoding,
so fields are only ever *added*, and only with defaults.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from temporalio.contrib.workflow_streams import WorkflowStreamState

__all__ = [
    "AGENT_WORKFLOW",
    "COMPACT_PAYLOADS",
    "DEFAULT_IDLE_TIMEOUT_S",
    "DEFAULT_TASK_QUEUE",
    "FINAL_STATES",
    "INPUT_CHECK_WORKFLOW",
    "KNOWN_PROVIDERS",
    "MAX_DURATION_S",
    "RUN_VERSION",
    "SESSION_WORKFLOW",
    "TOKENS_TOPIC",
    "AgentCarry",
    "AgentInput",
    "AgentResult",
    "AgentState",
    "AgentStatus",
    "ApprovalDecision",
    "ApprovalRecord",
    "ApprovalsDecided",
    "Artifact",
    "ArtifactsRequest",
    "Budget",
    "BudgetExtension",
    "BudgetLimit",
    "CallRetry",
    "CancelRequest",
    "ClearToolResults",
    "CompactionRequest",
    "CompactionResult",
    "ContextLimit",
    "ConversationCopy",
    "ConversationRef",
    "InputCheck",
    "InputProblem",
    "Message",
    "ModelPrice",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "OnApprovalTimeout",
    "OnExceeded",
    "PendingApproval",
    "RunUsage",
    "ScriptToolCall",
    "ScriptTurn",
    "SessionCarry",
    "SessionInput",
    "SessionMessage",
    "SessionReply",
    "SessionResult",
    "SessionTurn",
    "SteerRequest",
    "StepRecord",
    "TokenChunk",
    "ToolCall",
    "ToolCallRecord",
    "ToolCallStatus",
    "ToolOutcome",
    "ToolRequest",
    "ToolSpec",
    "TranscriptRef",
    "TranscriptWrite",
    "Usage",
    "WebhookDelivery",
    "WebhookOutcome",
    "WorkerDescription",
    "WorkerDescriptionRequest",
    "provider_of",
    "tool_specs_key",
]

AGENT_WORKFLOW = "AgentWorkflow"
"""Workflow type name, as used by `temporal workflow start --type`."""
INPUT_CHECK_WORKFLOW = "InputCheckWorkflow"
"""The workflow that asks a worker what it would refuse in an ``AgentInput`` (schedules)."""

RUN_VERSION = 6
"""The behaviour an agent run begun on this worker follows, for its whole life.

``describe_worker``, the run's first local activity, reports it, so it is in the
run's history from its first workflow task: a worker that replays or continues
the run reads it back from there, with no patch marker (each of which costs an
event, a ``TemporalChangeVersion`` upsert and a visibility write on the server
in every run). 0: the run began before versions; its patches decide. A change
of behaviour raises it and keeps the older versions' code for runs in flight.

1. Every patch before versions (``end-of-run-local``, ``publish-throttled``...).
2. Sub-agents a turn starts side by side share what the parent has left
   (``child_budget``'s ``later``); before, the first took all of it.
3. Model and tool calls carry the run's deadline (``not_after``): a worker starts no
   attempt after it (the one running when every worker died was retried by the next
   worker, past the deadline); a call refused so is called again if ``extend_budget``
   moved the deadline meanwhile. And ``OnwardCostUsd`` is unset, not 0, while no
   call of the run had a price (a model with none).
4. A running run upserts its counters (steps, tokens, cost) at most every 30 s
   (``PUBLISH_INTERVAL``), not every 5 s.
5. The ``delegate`` tool tells the model how sub-agents share the budget
   (``onward.delegation.DELEGATE``); before, it said each took all that was left
   (``DELEGATE_BEFORE_V5``, still offered to runs begun before).
6. On a worker that encodes payloads (``WorkerDescription.sealed``), a local tool
   call's activity type is ``calculator(…)``, not ``calculator(6*7)``: activity
   types are plain text in the history, the Web UI and span names."""

SESSION_WORKFLOW = "SessionWorkflow"
"""Workflow type name of a multi-turn session (one workflow per conversation)."""

DEFAULT_TASK_QUEUE = "onward"
"""Task queue used when ``ONWARD_TASK_QUEUE`` is not set."""

KNOWN_PROVIDERS = frozenset({"scripted", "openai", "anthropic", "ollama"})
"""Built-in model providers. A worker may add named endpoints (``ONWARD_ENDPOINTS``);
a run naming a provider its worker lacks fails at once with ``InvalidInput``."""

MAX_DURATION_S = 10 * 365 * 24 * 3600.0
"""The longest duration a run accepts (about 10 years): longer ones overflow Temporal's timers."""

_PROVIDER_NAME = re.compile(r"[a-z][a-z0-9_-]*")

AgentState = Literal[
    "running",
    "paused",
    "budget_paused",
    "awaiting_approval",
    "completed",
    "failed",
    "cancelled",
    "budget_exceeded",
    "terminated",
    "timed_out",
    "idle",
]
"""Every state a run can be in; all but the first four and ``idle`` are final.

``idle`` is a session's state between messages (``SessionWorkflow``); runs never have it.

The workflow itself ends a run as ``completed``, ``failed``, ``cancelled`` or
``budget_exceeded``. ``terminated`` and ``timed_out`` are runs Temporal closed
without the run's own code (``temporal workflow terminate``, a workflow
timeout); clients report them (see :mod:`onward.states`)."""

FINAL_STATES: frozenset[str] = frozenset(
    {"completed", "failed", "cancelled", "budget_exceeded", "terminated", "timed_out"}
)

OnExceeded = Literal["stop", "pause", "finish"]

OnApprovalTimeout = Literal["reject", "approve"]
"""What a call waiting for approval gets once ``approval_timeout_s`` has passed."""

BudgetLimit = Literal["max_tokens", "max_tool_calls", "max_duration_s", "max_cost_usd", "max_steps"]
"""The name of a budget limit, as the ``Budget`` field and the ``limit`` of a stopped run."""

ToolCallStatus = Literal["ok", "error", "refused", "interrupted", "not_run"]
"""How a tool call ended: ``ok`` (a result), ``error`` (the tool or its activity failed),
``refused`` (never started: unknown tool, or approval needed), ``interrupted`` (cancelled
or out of time while running), ``not_run`` (the run stopped before starting it)."""

_PROVIDER_HINTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("gpt-", "gpt4", "o1", "o3", "o4", "chatgpt", "text-embedding"), "openai"),
    (("claude",), "anthropic"),
    (("llama", "mistral", "mixtral", "qwen", "gemma", "phi", "deepseek", "codellama"), "ollama"),
)
"""Model name prefixes whose provider is obvious, for the hint on a bare model name."""


def _bare_model_hint(value: str) -> str:
    """What to write instead of a model name given without its provider."""
    lowered = value.lower()
    for prefixes, provider in _PROVIDER_HINTS:
        if lowered.startswith(prefixes):
            return f"{value!r} names no provider; use '{provider}:{value}'"
    known = ", ".join(sorted(KNOWN_PROVIDERS - {"scripted"}))
    return (
        f"{value!r} names no provider; use 'provider:model' with one of {known} "
        "(or an endpoint name from the worker's ONWARD_ENDPOINTS), or 'scripted'"
    )


def provider_of(model: str) -> str:
    """Return the provider part of a ``provider:model`` string (``scripted`` -> ``scripted``)."""
    return model.split(":", 1)[0]


def _check_model(value: str) -> str:
    """``value`` if it names a usable ``provider:model``; ValueError says what to write."""
    provider = provider_of(value)
    if ":" not in value and value not in KNOWN_PROVIDERS:
        raise ValueError(_bare_model_hint(value))
    if not _PROVIDER_NAME.fullmatch(provider):
        known = ", ".join(sorted(KNOWN_PROVIDERS))
        raise ValueError(
            f"bad model provider {provider!r}: use 'provider:model' with one of {known} "
            "or an endpoint name from the worker's ONWARD_ENDPOINTS"
        )
    if provider != "scripted" and not value.partition(":")[2]:
        raise ValueError(f"{value!r} names no model; use '{provider}:<model>'")
    return value


def _check_script_is_for_scripted(
    script: list[ScriptTurn] | None, model: str, fallbacks: list[str] | None
) -> None:
    """A script only where the scripted model plays it: the run's, or a fallback."""
    models = [model, *(fallbacks or ())]
    if script is not None and "scripted" not in map(provider_of, models):
        raise ValueError("script: only the scripted model takes a script")


MAX_FALLBACK_MODELS = 4
"""A run tries at most this many models after its own: each is given up on only after
its retries, so a longer list mostly makes a failing run fail later."""


def _check_fallbacks(model: str, fallbacks: list[str] | None) -> list[str] | None:
    """``fallbacks`` if each is a usable model, none repeats and none is ``model``."""
    if fallbacks is None:
        return None
    for position, fallback in enumerate(fallbacks):
        try:
            _check_model(fallback)
        except ValueError as err:
            raise ValueError(f"fallback_models.{position}: {err}") from None
        if fallback == model:
            raise ValueError(
                f"fallback_models.{position}: {fallback!r} is the model itself; "
                "list only the models to try after it"
            )
        if fallback in fallbacks[:position]:
            raise ValueError(
                f"fallback_models.{position}: {fallback!r} is listed twice; "
                "each model is tried once"
            )
    return fallbacks


class _Strict(BaseModel):
    """Base for inputs: unknown fields are errors, so a typo is reported, not ignored."""

    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------------------
# Workflow input
# ---------------------------------------------------------------------------


class Budget(_Strict):
    """Limits checked before every model call and tool call. ``None`` means unlimited."""

    max_tokens: int | None = Field(default=None, ge=0, description="input + output tokens")
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_duration_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_DURATION_S,
        description="wall time since start (at most ~10 years)",
    )
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_steps: int | None = Field(default=None, ge=0, description="finished steps")
    on_exceeded: OnExceeded = Field(
        default="stop",
        description="stop: end as budget_exceeded; pause: wait for extend_budget; "
        "finish: one last model call without tools",
    )


class BudgetExtension(_Strict):
    """New, higher limits for a running agent (the ``extend_budget`` update)."""

    max_tokens: int | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=None, ge=0)
    max_duration_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    max_cost_usd: float | None = Field(default=None, ge=0)
    max_steps: int | None = Field(default=None, ge=0)


class ScriptToolCall(_Strict):
    """A tool call the scripted model will make."""

    name: str = Field(min_length=1)
    arguments: dict[str, Any] = Field(default_factory=dict)


class Usage(BaseModel):
    """Token counts reported for one model call, or summed over a run."""

    input_tokens: int = Field(default=0, ge=0, description="all prompt tokens, cached included")
    output_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int | None = Field(
        default=None,
        ge=0,
        description="of input_tokens, read from the provider's prompt cache (billed at its "
        "cached rate); None: the provider did not say",
    )
    cache_write_tokens: int | None = Field(
        default=None,
        ge=0,
        description="of input_tokens, written to the provider's prompt cache (Anthropic; "
        "billed at its cache-write rate); None: the provider did not say",
    )
    estimated: bool = Field(
        default=False,
        description="True: the provider's answer reported no usage; the counts are estimated "
        "from the text (about 4 characters a token) and the call's cost is unknown",
    )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class ScriptTurn(_Strict):
    """One turn of the scripted model: tool calls (with optional reasoning) or a final text."""

    text: str | None = None
    tool_calls: list[ScriptToolCall] = Field(default_factory=list)
    usage: Usage | None = None
    delay_s: float = Field(
        default=0.0, ge=0, le=MAX_DURATION_S, description="the model call takes this long"
    )


class ModelPrice(_Strict):
    """Price of a model in US dollars per million tokens."""

    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    cached_input_per_mtok: float | None = Field(
        default=None, ge=0, description="input read from the prompt cache; None: input_per_mtok"
    )
    cache_write_per_mtok: float | None = Field(
        default=None, ge=0, description="input written to the prompt cache; None: input_per_mtok"
    )
    context_window: int | None = Field(
        default=None, gt=0, description="tokens the model accepts at once; None: not known"
    )


class ModelSettings(_Strict):
    """Settings passed through to the model provider."""

    temperature: float | None = None
    max_output_tokens: int | None = Field(default=None, gt=0)
    stop: list[str] | None = None
    seed: int | None = None
    parallel_tool_calls: bool | None = None
    cache_prompt: bool = Field(
        default=True,
        description="mark the stable prompt prefix for the provider's prompt cache "
        "(Anthropic cache_control breakpoints; OpenAI caches by itself)",
    )


class ContextLimit(_Strict):
    """Compaction: past ``max_tokens`` (estimated), older turns are sent as one summary."""

    max_tokens: int = Field(gt=0, description="estimated tokens the model may be sent")
    keep_last_turns: int = Field(default=4, ge=0, description="recent turns always sent in full")


class ClearToolResults(_Strict):
    """Tool-result clearing: past ``trigger_tokens``, older tool results are sent as a placeholder.

    See :mod:`onward.clearing`; the transcript keeps every result.
    """

    trigger_tokens: int = Field(
        gt=0, description="clear once the conversation sent passes this many (estimated) tokens"
    )
    keep_tool_uses: int = Field(
        default=3, ge=0, description="the most recent tool results, always sent in full"
    )
    clear_at_least_tokens: int = Field(
        default=0,
        ge=0,
        description="clear only when that saves this many tokens: each clearing makes the "
        "provider's prompt cache start again from the first result it clears",
    )
    exclude_tools: list[str] = Field(
        default_factory=list, description="tools whose results are never cleared"
    )


def _checked_output_schema(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """``schema`` if it can be an ``output_schema`` (see :mod:`onward.final_answer`)."""
    from onward.final_answer import schema_problem  # jsonschema only where it is used

    problem = None if schema is None else schema_problem(schema)
    if problem is not None:
        raise ValueError(problem)
    return schema


def _check_final_answer_unnamed(
    schema: dict[str, Any] | None, tools: list[str] | None, approve_tools: list[str] | None
) -> None:
    """With ``output_schema``, ``final_answer`` is the workflow's: no tool to name."""
    if schema is not None and "final_answer" in (tools or []):
        raise ValueError(
            "tools: final_answer is the tool output_schema adds; leave it out of tools"
        )
    if schema is not None and "final_answer" in (approve_tools or []):
        # The run ends with a matching answer at once: an approval would never be asked.
        raise ValueError(
            "approve_tools: final_answer is not approved (a matching answer ends the "
            "run); leave it out of approve_tools"
        )


class AgentInput(_Strict):
    """The one input object of ``AgentWorkflow``; plain JSON from the ``temporal`` CLI works."""

    prompt: str = Field(min_length=1)
    system: str | None = None
    model: str = Field(default="scripted", max_length=200)
    fallback_models: list[str] | None = Field(
        default=None,
        max_length=MAX_FALLBACK_MODELS,
        exclude_if=lambda value: not value,  # none given: as before the field existed
        description="models tried in turn when a model call fails for the provider's "
        "sake (after its retries): the run goes on with the first that answers, for "
        "its remaining steps",
    )
    script: list[ScriptTurn] | None = None
    tools: list[str] | None = Field(default=None, description="tool names; default: all built-ins")
    budget: Budget = Field(default_factory=Budget)
    pricing: ModelPrice | None = Field(
        default=None, description="price override for this run (the scripted model's price, say)"
    )
    settings: ModelSettings | None = None
    tenant: str | None = Field(default=None, min_length=1, max_length=200)
    memory_scope: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="whose memory remember/recall use, within the run's tenant; "
        "None: the tenant's shared scope",
    )
    # -- human approval --------------------------------------------
    approve_tools: list[str] | None = Field(
        default=None,
        description="tools whose calls wait for a person's approval in this run, "
        "besides those the registry marks requires_approval",
    )
    approval_timeout_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_DURATION_S,
        description="a call waits this long for approval; None: forever",
    )
    on_approval_timeout: OnApprovalTimeout = Field(
        default="reject", description="what a call gets when approval_timeout_s has passed"
    )
    # -- end human approval ------------------------------------------------------------
    webhook_url: str | None = Field(
        default=None,
        max_length=2000,
        description="http(s) URL that gets the signed result once the run ends",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, sep, rest = value.partition("://")
        host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        if not sep or scheme.lower() not in ("http", "https") or not host or value != value.strip():
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    context: ContextLimit | None = Field(
        default=None, description="compaction; None: the model is sent the whole conversation"
    )
    clear_tool_results: ClearToolResults | None = Field(
        default=None,
        description="older tool results sent as a placeholder once the conversation is long; "
        "None: every result is sent in full",
    )
    cache_tools: dict[str, float] | None = Field(
        default=None,
        description="tool name -> seconds a result is reused for identical arguments "
        "(same tenant); beside the tools' own @tool(cache_ttl_s=...)",
    )

    @field_validator("cache_tools")
    @classmethod
    def _positive_ttls(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, ttl in (value or {}).items():
            if not ttl > 0 or ttl == float("inf"):
                raise ValueError(f"{name!r}: a cache TTL must be a positive number of seconds")
        return value

    output_schema: dict[str, Any] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="a JSON Schema (type object) for the answer: the model answers by "
        "calling final_answer with matching arguments, which become the result's "
        "structured_output (and output, as JSON text)",
    )
    continue_as_new_after: int | None = Field(
        default=None,
        ge=1,
        description="steps per run before the workflow continues as new (default: "
        "the workflow's own threshold, or earlier when Temporal suggests it)",
    )
    carry: AgentCarry | None = Field(
        default=None,
        description="set by the workflow itself when it continues as new; not for clients",
    )
    # -- sub-agents -------------------------------------------------
    delegation_depth: int = Field(
        default=0,
        ge=0,
        description="how many delegations deep this run is (0: started by a client); "
        "set by the delegate tool",
    )
    workspace: str | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="the workspace key tool calls use (a sub-agent gets its parent's); "
        "None: the run's root workflow id. Only a sub-agent names one: its parent's or "
        "root run's id (any other fails the run: it would reach into another run's files)",
    )
    # -- end sub-agents ----------------------------------------------------------------
    stream: bool = Field(
        default=False,
        description="send each model answer's text token by token on the run's event "
        "stream while the call runs (the finished message is recorded once, as always)",
    )
    conversation: ConversationRef | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="the conversation so far, by reference into the transcript store: "
        "the prompt is its next user message (set by SessionWorkflow for each message)",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @field_validator("model")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        return _check_model(value)

    @model_validator(mode="after")
    def _fallbacks_usable(self) -> AgentInput:
        _check_fallbacks(self.model, self.fallback_models)
        return self

    @model_validator(mode="after")
    def _script_only_for_scripted(self) -> AgentInput:
        _check_script_is_for_scripted(self.script, self.model, self.fallback_models)
        return self

    @field_validator("output_schema")
    @classmethod
    def _output_schema_is_an_object_schema(
        cls, schema: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        return _checked_output_schema(schema)

    @model_validator(mode="after")
    def _final_answer_is_no_tool_of_its_own(self) -> AgentInput:
        _check_final_answer_unnamed(self.output_schema, self.tools, self.approve_tools)
        return self

    @model_validator(mode="after")
    def _cache_tools_among_tools(self) -> AgentInput:
        if self.cache_tools and self.tools is not None:
            missing = sorted(set(self.cache_tools) - set(self.tools))
            if missing:
                raise ValueError(
                    f"cache_tools: {', '.join(map(repr, missing))} not among the run's tools"
                )
        return self


# ---------------------------------------------------------------------------
# Conversation and model activity
# ---------------------------------------------------------------------------


class ToolCall(BaseModel):
    """A tool call asked for by a model."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Message(BaseModel):
    """One message of the provider-neutral conversation."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    name: str | None = Field(default=None, description="tool name, on tool messages")
    is_error: bool = False


class ToolSpec(BaseModel):
    """What the worker's registry says about a tool: shown to the model, used for scheduling."""

    name: str
    description: str
    parameters: dict[str, Any] = Field(description="JSON schema of the arguments")
    local: bool = Field(default=False, description="fast and pure: runs as a local activity")
    timeout_s: float = 60.0
    max_attempts: int = 3
    max_result_chars: int = 16_000
    requires_approval: bool = False
    uses_workspace: bool = Field(
        default=True,
        description=(
            "the tool may read or write its run's workspace (its function takes a "
            "ToolContext); a run whose calls were all of tools without it lists no "
            "artifacts. Specs from workers before this field say True"
        ),
    )


def tool_specs_key(specs: Sequence[ToolSpec]) -> str:
    """The store key of a run's tool specs (``ModelRequest.tools_key``): their digest.

    Pure, so the workflow computes it: the same specs give the same key on every
    worker, and runs with the same tools share one stored copy.
    """
    document = json.dumps([spec.model_dump(mode="json") for spec in specs], sort_keys=True)
    digest = hashlib.sha256(b"onward tool specs\n" + document.encode()).hexdigest()
    return f"sha256-{digest}"


class ConversationRef(BaseModel):
    """A conversation in the transcript store: messages ``[0, messages)`` of ``transcript``."""

    transcript: str = Field(description="the transcript id holding the messages")
    messages: int = Field(
        ge=0, description="how many of its messages the conversation is; 0: a new conversation"
    )
    context_tokens: int = Field(
        default=0, ge=0, description="estimated tokens of those messages (compaction)"
    )


class ConversationCopy(BaseModel):
    """Input of ``copy_conversation``: a run begins its transcript with a conversation."""

    source: ConversationRef
    target: str = Field(description="the run's transcript id")


class TranscriptWrite(BaseModel):
    """Messages and step records for the store, written at their positions (idempotent)."""

    id: str = Field(description="the transcript id")
    count: int = Field(
        ge=0, description="messages the transcript holds once ``new_messages`` are written"
    )
    new_messages: list[Message] = Field(
        default_factory=list, description="the last messages, at ``count - len(new_messages)``.."
    )
    steps: list[StepRecord] = Field(
        default_factory=list, description="closed step records, each at its step's position"
    )


class TranscriptRef(TranscriptWrite):
    """The conversation of a model call, by reference: messages ``[0, count)`` of ``id``.

    The model's reply is written at position ``count``. After a compaction the
    messages before ``summary_covers`` (but the task) are sent as the summary
    that is the text of step ``summary_step``.
    """

    summary_step: int | None = Field(default=None, description="the step holding the summary")
    summary_covers: int = Field(default=0, ge=0, description="messages the summary replaces")
    left_out: list[str] = Field(
        default_factory=list,
        description="what ``steps`` leave out because the messages say the same "
        "(``onward.steplog.slimmed``): ``text:<step>``, ``arguments:<call id>``, "
        "``result:<call id>``; the activity fills them in before it stores the steps",
    )


class CompactionRequest(BaseModel):
    """Input of ``compact_transcript``: summarise older turns if the conversation is too long."""

    transcript: TranscriptRef
    context: ContextLimit
    model: str
    step: int = Field(description="the step the summary is recorded as")
    settings: ModelSettings | None = None
    pricing: ModelPrice | None = None
    require_price: bool = Field(
        default=False,
        description="the run keeps a cost budget: as ModelRequest.require_price",
    )


class CompactionResult(BaseModel):
    """Output of ``compact_transcript``; ``summary`` None: nothing could be summarised."""

    summary: str | None = None
    covers: int = Field(default=0, description="messages (from 0) the summary stands for")
    tokens: int = Field(default=0, description="estimated tokens of what the model is now sent")
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    cache_saved_usd: float | None = None


class ModelRequest(BaseModel):
    """Input of the ``call_model`` activity.

    Either ``messages`` holds the whole conversation (runs begun before the
    transcript store), or it is empty and ``transcript`` says where the
    conversation is: the activity reads it from the store.
    """

    model: str
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    step: int
    allow_tools: bool = Field(default=True, description="False: the model must answer in text")
    scripted_turn: ScriptTurn | None = Field(
        default=None, description="the turn the scripted model plays; None: the script ran out"
    )
    settings: ModelSettings | None = None
    pricing: ModelPrice | None = None
    transcript: TranscriptRef | None = Field(
        default=None, description="the conversation in the store; then ``messages`` is empty"
    )
    stream: bool = Field(
        default=False, description="publish the text as it comes to the run's ``tokens`` topic"
    )
    stream_attempt_offset: int = Field(
        default=0,
        ge=0,
        exclude_if=lambda value: value == 0,
        description="added to the attempt of the streamed text's chunks: a fallback "
        "model's call restarts the step's stream after the failed model's attempts",
    )
    clear_tool_results: ClearToolResults | None = Field(
        default=None, description="the run's tool-result clearing, applied to what is sent"
    )
    tools_key: str | None = Field(
        default=None,
        description="the store key of the run's tool specs: with ``tools``, the activity "
        "keeps them there; with none, it reads them (``allow_tools`` decides what is offered)",
    )
    not_after: datetime | None = Field(
        default=None,
        description="the run's deadline: no attempt starts after it (a ``DeadlinePassed`` "
        "failure instead); None: the run has no wall-time limit, or began before run version 3",
    )
    require_price: bool = Field(
        default=False,
        description="the run keeps a cost budget: a model with no price is not called "
        "(a ``ModelNotPriced`` failure instead), since its cost could not be counted",
    )


TOKENS_TOPIC = "tokens"
"""The workflow stream topic model activities publish streamed text to."""


class TokenChunk(BaseModel):
    """One item of a run's ``tokens`` topic: text of a model call, or its restart.

    ``kind="stream_restart"``: attempt ``attempt`` of call ``call`` starts the
    text again from the beginning (the attempt before it crashed mid-stream).
    """

    kind: Literal["token", "stream_restart"] = "token"
    call: int = Field(description="the step the model call is for")
    text: str = ""
    attempt: int = 1


class ModelResponse(BaseModel):
    """Output of the ``call_model`` activity."""

    text: str = ""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = Field(default=None, description="None: the model's price is unknown")
    cache_saved_usd: float | None = Field(
        default=None,
        description="what the provider's prompt cache saved on this call (full input price "
        "minus cost_usd; negative when cache writes cost more); None: nothing to say",
    )
    model: str = ""
    finish_reason: str | None = None
    cleared_tool_results: int = Field(
        default=0, description="older tool results the model was sent as a placeholder"
    )
    rate_limit_wait_ms: int = Field(
        default=0,
        description="how long the call waited for its turn under the workers' shared rate "
        "limits (ONWARD_RATE_LIMITS) before it was sent",
    )


COMPACT_PAYLOADS: frozenset[type[BaseModel]] = frozenset({ModelRequest, ModelResponse})
"""Models written to payloads without their fields at their defaults
(``onward.connection.OnwardPayloadConverter``).

A model call's input and result, recorded in the history at every step: a
request's empty lists and None settings, its step records' unset fields, half
of its JSON. Every reader decodes them with the model, which fills the
defaults back in; so a default of these models (and of the models inside
them) must never change, which recorded histories already require.
"""


# ---------------------------------------------------------------------------
# Tool activities
# ---------------------------------------------------------------------------


class WorkerDescriptionRequest(BaseModel):
    """Input of ``describe_worker``; ``tools=None`` asks for every built-in tool."""

    tools: list[str] | None = None
    model: str | None = Field(
        default=None, description="the run's model, to report its context window"
    )
    fallback_models: list[str] | None = Field(
        default=None,
        exclude_if=lambda value: not value,
        description="the run's fallback models, to report their context windows",
    )


class WorkerDescription(BaseModel):
    """What the worker offers a run: tool specs, and the search attributes it may set."""

    tools: list[ToolSpec] = Field(default_factory=list)
    unknown: list[str] = Field(default_factory=list, description="asked-for names it lacks")
    available: list[str] = Field(default_factory=list)
    search_attributes: list[str] = Field(
        default_factory=list, description="Onward search attributes registered on the server"
    )
    providers: list[str] = Field(
        default_factory=list, description="model providers the worker has (empty: not checked)"
    )
    unusable_providers: dict[str, str] = Field(
        default_factory=dict,
        exclude_if=lambda value: not value,
        description="providers among them that would refuse every call here, with why (a "
        "key not set); checked for schedules (InputCheckWorkflow), not by runs",
    )
    model_max_attempts: int | None = Field(
        default=None,
        ge=1,
        description="attempts of one model call (ONWARD_MODEL_MAX_ATTEMPTS); None: an "
        "older worker, the workflow's default policy applies",
    )
    context_window: int | None = Field(
        default=None,
        gt=0,
        description="the asked-for model's context window in tokens, from the worker's "
        "pricing table; None: not known (or an older worker)",
    )
    fallback_context_windows: list[int | None] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="each asked-for fallback model's context window, as ``context_window``",
    )
    tools_by_key: bool = Field(
        default=False,
        description="its model calls read the run's tool specs from the store by "
        "``ModelRequest.tools_key``; False: an older worker, or one without a store",
    )
    steps_from_messages: bool = Field(
        default=False,
        description="its model calls fill in what ``TranscriptRef.left_out`` names from "
        "the messages; False: an older worker, or one without a store",
    )
    sealed: bool = Field(
        default=False,
        description="the worker encodes payloads (ONWARD_ENCRYPTION_KEYS, a codec): a "
        "local tool call's activity type, plain text in the history, then names its "
        "tool only, not its arguments (run version 6); False: plain, or an older worker",
    )
    run_version: int = Field(
        default=0,
        ge=0,
        description="the RUN_VERSION a run begun here follows; 0: an older worker",
    )


class InputProblem(BaseModel):
    """One thing in an ``AgentInput`` a worker refuses: its tools, its model's provider."""

    field: str = Field(description="the input's field: tools, model, approve_tools, workspace")
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InputCheck(BaseModel):
    """What ``InputCheckWorkflow`` answers: the problems a run of the input would fail on."""

    problems: list[InputProblem] = Field(default_factory=list)


class ToolRequest(BaseModel):
    """Input of ``execute_tool``."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    call_id: str
    idempotency_key: str = Field(description="workflow id / step / call id: stable across retries")
    step: int | None = Field(default=None, description="the step the call belongs to")
    workspace: str | None = Field(
        default=None,
        description="the run whose workspace the call uses (its workflow id, or its parent's); "
        "None: the worker's workspace root itself (runs begun before per-run workspaces)",
    )
    tenant: str | None = None
    memory_scope: str | None = Field(
        default=None,
        description="the run's memory scope within its tenant (remember/recall); None: the "
        "run began before memory scopes, and has no memory",
    )
    cache_ttl_s: float | None = Field(
        default=None,
        gt=0,
        description="reuse a result of an identical call (name, arguments, tenant) this "
        "recent (the run's cache_tools); None: only the tool's own cache_ttl_s",
    )
    not_after: datetime | None = Field(
        default=None,
        description="the run's deadline: no attempt starts after it (see ``ModelRequest``)",
    )


class ArtifactsRequest(BaseModel):
    """Input of ``list_artifacts``: the run whose workspace to list."""

    workspace: str = Field(description="the workflow id the workspace is keyed by")


class Artifact(BaseModel):
    """A file an agent wrote into its run's workspace."""

    path: str = Field(description="relative to the run's workspace, with '/' separators")
    size: int = Field(ge=0, description="bytes")
    sha256: str


class ToolOutcome(BaseModel):
    """What a tool call produced: the content for the model, or an error message."""

    content: str = ""
    error: str | None = None
    truncated: bool = False
    call_id: str | None = Field(default=None, description="the request's call id, echoed")
    step: int | None = Field(default=None, description="the request's step, echoed")
    cache_hit: bool = Field(
        default=False, description="the result of an earlier identical call, from the tool cache"
    )


# ---------------------------------------------------------------------------
# Step log, status and result
# ---------------------------------------------------------------------------


class ApprovalRecord(BaseModel):
    """How a call that needed approval was decided, and by whom."""

    decision: Literal["approved", "rejected"]
    by: Literal["person", "timeout"] = Field(
        description="person: the approve or reject update; timeout: on_approval_timeout"
    )
    note: str | None = None
    decided_at: datetime | None = None


class PendingApproval(BaseModel):
    """A tool call waiting for a person's approval (``status.pending_approvals``)."""

    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    step: int
    requested_at: datetime
    deadline: datetime | None = Field(
        default=None, description="when on_approval_timeout decides; None: no timeout"
    )
    run_id: str | None = Field(
        default=None,
        description="the sub-agent whose call this is (clients fill it in: approving the "
        "parent reaches it); None: the run's own call",
    )


class ToolCallRecord(BaseModel):
    """One tool call in the step log."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: str | None = None
    error: str | None = None
    started_at: datetime | None = None
    duration_ms: int | None = None
    status: ToolCallStatus | None = Field(
        default=None, description="None: still running, or recorded before statuses existed"
    )
    approval: ApprovalRecord | None = Field(
        default=None, description="how a call that needed approval was decided; None: it did not"
    )
    cache_hit: bool = Field(
        default=False, description="the result came from the tool cache; the tool did not run"
    )
    child_id: str | None = Field(
        default=None, description="the workflow id of the sub-agent a delegate call started"
    )


class StepRecord(BaseModel):
    """One step: a model turn and the tool calls it asked for."""

    step: int
    text: str = Field(default="", description="the model's stated reason, or its answer")
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = None
    cache_saved_usd: float | None = Field(
        default=None, description="what the prompt cache saved on the step's model call"
    )
    started_at: datetime
    duration_ms: int | None = None
    model: str | None = None
    error: str | None = Field(default=None, description="why the step's model call failed")
    failed_models: list[str] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="models that failed this step's call before ``model`` answered "
        "(fallback_models), each as '<model>: <error>'",
    )
    steering: list[str] = Field(
        default_factory=list, description="user messages (steer) added before this model call"
    )
    compaction: bool = Field(
        default=False, description="a compaction: ``text`` summarises the older turns"
    )
    cleared_tool_results: int = Field(
        default=0,
        description="older tool results the model call was sent as a placeholder "
        "(clear_tool_results)",
    )
    rate_limit_wait_ms: int = Field(
        default=0,
        exclude_if=lambda value: value == 0,
        description="how long the model call waited for its turn under the workers' shared "
        "rate limits (ONWARD_RATE_LIMITS): part of duration_ms",
    )
    finish_reason: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="why the model's answer ended, when not by finishing (stop) or by "
        "asking for tools (tool_calls): length (cut off at the output token limit), "
        "content_filter (withheld by the provider), or the provider's own word",
    )


class RunUsage(BaseModel):
    """What a run has consumed so far."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    tool_calls: int = 0
    model_calls: int = 0
    steps: int = 0
    cost_usd: float = 0.0
    cost_known: bool = Field(
        default=True,
        description="False once a model with no price was used, or an answer reported no "
        "token usage",
    )
    tokens_estimated: bool = Field(
        default=False,
        description="True once an answer reported no token usage: its tokens are estimated "
        "(about 4 characters a token) and its cost is unknown",
    )
    cached_input_tokens: int = Field(
        default=0, description="input tokens read from the providers' prompt caches"
    )
    cache_write_tokens: int = Field(
        default=0, description="input tokens written to the providers' prompt caches"
    )
    cache_saved_usd: float = Field(
        default=0.0, description="what prompt caching saved: full input price minus cost_usd"
    )
    duration_s: float = 0.0


class CallRetry(BaseModel):
    """A model or tool call that failed and is being retried (read from Temporal, not the run)."""

    activity: str = Field(description="the activity type: call_model, or the tool's activity")
    attempt: int = Field(description="the attempt now running or waiting (2 = first retry)")
    max_attempts: int | None = Field(default=None, description="None: no limit")
    last_failure: str | None = None


class AgentStatus(BaseModel):
    """Answer of the ``status`` query."""

    state: AgentState
    step: int
    usage: RunUsage
    budget: Budget
    last_step: StepRecord | None = None
    reason: str | None = None
    model: str | None = None
    retrying: CallRetry | None = Field(
        default=None, description="clients fill it in: a call being retried right now"
    )
    limit: BudgetLimit | None = Field(
        default=None, description="the exceeded limit, while budget_paused or budget_exceeded"
    )
    pending_approvals: list[PendingApproval] = Field(
        default_factory=list, description="tool calls waiting for approve or reject"
    )
    transcript: str | None = Field(
        default=None, description="the transcript id: the full step log is in the store"
    )
    turns: int | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="sessions: messages answered",
    )
    queued: int | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="sessions: messages waiting for the one being answered",
    )
    last_reply: str | None = Field(
        default=None, exclude_if=lambda value: value is None, description="sessions: the last reply"
    )
    pausing: bool = Field(
        default=False,
        exclude_if=lambda value: not value,
        description="a pause was asked for while calls run: the state is still running, and "
        "the run pauses once they end (left out when false)",
    )
    current_step: StepRecord | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="the step in progress once its model call has answered: the model's "
        "stated reason and the tool calls started so far, those still running without a "
        "status (a delegate call's with its sub-agent's child_id); left out between steps, "
        "once the run has ended, and when no worker answered",
    )


class AgentCarry(BaseModel):
    """What a run hands the next run of its continue-as-new chain: references and counters.

    The conversation itself stays in the transcript store; only its id and
    length travel, with the state budgets, pause, cancel and steering need.
    """

    transcript: str = Field(description="the chain's transcript id in the store")
    messages: int = Field(ge=0, description="messages the transcript holds")
    steps_total: int = Field(ge=0, description="steps finished by the whole chain")
    recent_steps: list[StepRecord] = Field(
        default_factory=list, description="the last steps, for the steps query and result"
    )
    usage: RunUsage
    budget: Budget
    started_at: datetime = Field(description="the chain's first run's start: the wall-time start")
    script_index: int = 0
    paused: bool = False
    cancel_requested: bool = False
    cancel_reason: str | None = None
    steering: list[str] = Field(default_factory=list, description="not yet in the conversation")
    steered: list[str] = Field(
        default_factory=list, description="in the conversation, not yet shown in a step"
    )
    tools: list[ToolSpec] = Field(default_factory=list)
    runs: int = Field(default=1, ge=1, description="runs of the chain before this one")
    context_tokens: int = Field(default=0, description="estimated tokens the model is sent")
    summary_step: int | None = None
    summary_covers: int = 0
    used_workspace: bool = Field(
        default=False,
        description="a tool that may touch the workspace ran: the chain's end lists its artifacts",
    )
    stream: WorkflowStreamState | None = Field(
        default=None,
        description="the token stream's offsets and its last call's items: a subscriber "
        "follows the chain without a gap",
    )
    text_answers: int = Field(
        default=0,
        ge=0,
        exclude_if=lambda value: value == 0,
        description="plain-text answers to a run with output_schema so far",
    )


class AgentResult(BaseModel):
    """What a run returns, whatever its outcome: everything done so far."""

    status: AgentState
    output: str | None = None
    reason: str | None = None
    usage: RunUsage
    steps: list[StepRecord] = Field(default_factory=list)
    limit: BudgetLimit | None = Field(
        default=None, description="the exceeded limit, when the status is budget_exceeded"
    )
    artifacts: list[Artifact] | None = Field(
        default=None,
        description="the files in the run's workspace when it ended; None: not listed "
        "(no tool activity ran, or the run began before artifacts were listed)",
    )
    steps_total: int | None = Field(
        default=None,
        description="steps of the whole run; ``steps`` holds the last ones (None: all of them)",
    )
    transcript: str | None = Field(
        default=None, description="the transcript id: the full step log is in the store"
    )
    conversation: ConversationRef | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="the conversation after this run (only for runs given a conversation)",
    )
    structured_output: dict[str, Any] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="the answer as the final_answer call gave it (only for runs given an "
        "output_schema that answered)",
    )
    script_played: int | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="the turns of ``script`` this run played, its sub-agents' not counted "
        "(only for scripted runs): a scripted session's next message plays on from there",
    )


# ---------------------------------------------------------------------------
# Signals
# ---------------------------------------------------------------------------


class CancelRequest(BaseModel):
    """Payload of the ``cancel`` signal (optional)."""

    reason: str | None = None


class WebhookDelivery(BaseModel):
    """Input of the ``deliver_webhook`` activity: the run's result for its webhook."""

    url: str
    run_id: str
    result: AgentResult


class WebhookOutcome(BaseModel):
    """Output of ``deliver_webhook``: the receiver's answer to the delivery that succeeded."""

    status_code: int
    attempt: int


class SteerRequest(BaseModel):
    """Payload of the ``steer`` signal: a user message for the next model call."""

    message: str = Field(min_length=1)


# ---------------------------------------------------------------------------
# Updates: human approval
# ---------------------------------------------------------------------------


class ApprovalDecision(_Strict):
    """Input of the ``approve`` and ``reject`` updates."""

    call_id: str | None = Field(
        default=None, min_length=1, description="the call to decide; None: every pending call"
    )
    note: str | None = Field(
        default=None, description="why; a rejection's note is the call's result for the model"
    )


class ApprovalsDecided(BaseModel):
    """Answer of ``approve`` and ``reject``: the calls decided."""

    call_ids: list[str] = Field(default_factory=list)
    decision: Literal["approved", "rejected"]
    run_id: str | None = Field(
        default=None,
        description="the run whose calls were decided (a sub-agent's, or a session "
        "message's, when asked of its parent or session); set by the client",
    )


# ---------------------------------------------------------------------------
# Sessions: one SessionWorkflow per conversation, one AgentWorkflow per message
# ---------------------------------------------------------------------------

DEFAULT_IDLE_TIMEOUT_S = 7 * 24 * 3600.0
"""A session nobody writes to for this long (7 days) closes by itself."""


class SessionInput(_Strict):
    """The one input of ``SessionWorkflow``: ``AgentInput`` without the prompt, plus session limits.

    ``budget`` applies to the whole session, ``message_budget`` to each message's run.
    """

    system: str | None = None
    model: str = Field(default="scripted", max_length=200)
    fallback_models: list[str] | None = Field(
        default=None,
        max_length=MAX_FALLBACK_MODELS,
        exclude_if=lambda value: not value,
        description="as AgentInput's: each message's run begins with ``model`` again",
    )
    script: list[ScriptTurn] | None = Field(
        default=None, description="the scripted model's turns, played across the messages"
    )
    tools: list[str] | None = Field(default=None, description="tool names; default: all built-ins")
    budget: Budget = Field(default_factory=Budget, description="limits of the whole session")
    message_budget: Budget | None = Field(
        default=None, description="limits of each message's run; None: only the session's"
    )
    pricing: ModelPrice | None = None
    settings: ModelSettings | None = None
    tenant: str | None = Field(default=None, min_length=1, max_length=200)
    approve_tools: list[str] | None = None
    approval_timeout_s: float | None = Field(default=None, gt=0, le=MAX_DURATION_S)
    on_approval_timeout: OnApprovalTimeout = "reject"
    context: ContextLimit | None = Field(
        default=None, description="compaction of the conversation each message's run is sent"
    )
    clear_tool_results: ClearToolResults | None = Field(
        default=None, description="as AgentInput's: older tool results sent as a placeholder"
    )
    cache_tools: dict[str, float] | None = Field(
        default=None, description="as AgentInput's: tool results reused within a TTL"
    )
    memory_scope: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="as AgentInput's: what remember and recall share within the tenant",
    )
    stream: bool = Field(
        default=False, description="as AgentInput's: each reply's text token by token"
    )
    output_schema: dict[str, Any] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="as AgentInput's: every reply is an object matching it "
        "(SessionReply.structured_output)",
    )
    idle_timeout_s: float = Field(
        default=DEFAULT_IDLE_TIMEOUT_S,
        gt=0,
        le=MAX_DURATION_S,
        description="close after this long without messages",
    )
    continue_as_new_after: int | None = Field(
        default=None,
        ge=1,
        description="messages per run before the session continues as new (default: the "
        "workflow's own threshold, or earlier when Temporal suggests it)",
    )
    carry: SessionCarry | None = Field(
        default=None,
        description="set by the workflow itself when it continues as new; not for clients",
    )

    @model_validator(mode="after")
    def _final_answer_is_no_tool_of_its_own(self) -> SessionInput:
        _check_final_answer_unnamed(self.output_schema, self.tools, self.approve_tools)
        return self

    @field_validator("output_schema")
    @classmethod
    def _output_schema_is_an_object_schema(
        cls, schema: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        return _checked_output_schema(schema)

    @field_validator("model")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        return _check_model(value)

    @model_validator(mode="before")
    @classmethod
    def _no_prompt(cls, data: Any) -> Any:
        if isinstance(data, dict) and "prompt" in data:
            raise ValueError(
                "prompt: a session takes no prompt; send it as the first message "
                "(send_message, onward send, POST /v1/sessions/{id}/messages)"
            )
        return data

    @model_validator(mode="after")
    def _fallbacks_usable(self) -> SessionInput:
        _check_fallbacks(self.model, self.fallback_models)
        return self

    @model_validator(mode="after")
    def _script_only_for_scripted(self) -> SessionInput:
        _check_script_is_for_scripted(self.script, self.model, self.fallback_models)
        return self

    @model_validator(mode="after")
    def _valid_for_each_message(self) -> SessionInput:
        """What AgentInput checks of these fields, checked once when the session opens."""
        fields = self.model_dump(
            include={"model", "tools", "cache_tools", "approve_tools"}, exclude_none=True
        )
        AgentInput.model_validate({"prompt": "-", **fields})
        return self


class SessionMessage(_Strict):
    """Input of the ``send_message`` update: the user's next message."""

    message: str = Field(min_length=1)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        exclude_if=lambda value: value is None,
        description=(
            "the same key with the same message is answered once: sent again, it gets "
            "the first reply (while the session keeps the turn, its last 100)"
        ),
    )

    @field_validator("message")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class SessionReply(BaseModel):
    """Answer of ``send_message``: the agent's reply once its run (tools included) has ended."""

    reply: str = Field(default="", description="the agent's answer; empty if the run had none")
    steps: list[StepRecord] = Field(default_factory=list)
    usage: RunUsage = Field(default_factory=RunUsage, description="this message's usage")
    number: int = Field(default=0, ge=0, description="the message's number in the session (1..)")
    status: AgentState = Field(default="completed", description="how the message's run ended")
    reason: str | None = None
    run_id: str | None = Field(default=None, description="the message's run: <session-id>-m<N>")
    structured_output: dict[str, Any] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="the reply as an object, in a session given an output_schema",
    )
    repeated: bool = Field(
        default=False,
        exclude_if=lambda value: not value,
        description=(
            "answered from the session's turns: the message came again with its "
            "idempotency_key after the session had continued as new"
        ),
    )


class SessionTurn(BaseModel):
    """One message and its reply, as the ``history`` query lists them."""

    number: int = Field(ge=1)
    message: str
    reply: str = ""
    status: AgentState = "completed"
    reason: str | None = None
    run_id: str
    usage: RunUsage = Field(default_factory=RunUsage)
    steps: int = Field(default=0, description="steps of the message's run")
    sent_at: datetime
    answered_at: datetime | None = None
    idempotency_key: str | None = Field(default=None, exclude_if=lambda value: value is None)
    message_sha256: str | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="with an idempotency_key: the whole message's digest, what a repeat must match",
    )
    structured_output: dict[str, Any] | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="the reply as an object (a session given an output_schema), kept when "
        "its JSON is no longer than a turn's reply text is kept (4,000 characters)",
    )
    structured_output_omitted: bool = Field(
        default=False,
        exclude_if=lambda value: not value,
        description="the reply's object was longer than a turn keeps, so it is left out "
        "(the message's run has it: its result's structured_output)",
    )


class SessionCarry(BaseModel):
    """What a session hands the next run of its continue-as-new chain."""

    conversation: ConversationRef | None = None
    usage: RunUsage
    turns: int = Field(ge=0, description="messages answered by the whole chain")
    steps_total: int = Field(default=0, ge=0)
    recent_turns: list[SessionTurn] = Field(default_factory=list)
    script_index: int = 0
    started_at: datetime
    last_active: datetime
    runs: int = Field(default=1, ge=1)
    closing: bool = False
    close_reason: str | None = None


class SessionResult(BaseModel):
    """What a session returns once closed (``close`` signal or ``idle_timeout_s``)."""

    status: AgentState = "completed"
    reason: str | None = Field(default=None, description="why it closed")
    usage: RunUsage
    turns: int = Field(ge=0, description="messages answered")
    conversation: ConversationRef | None = None


for _model in (
    AgentInput,
    TranscriptWrite,
    TranscriptRef,
    ModelRequest,
    CompactionRequest,
    SessionInput,
):
    _model.model_rebuild()
