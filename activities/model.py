"""The model activity: one activity for every provider.

Providers map every failure to a typed ``ApplicationError`` (see
:mod:`onward.activities.providers.errors`) and Temporal retries the retryable ones.
How many attempts a call gets is decided in one place, the worker's
``ONWARD_MODEL_MAX_ATTEMPTS``: runs learn it from ``describe_worker`` and put it
in the model activity's retry policy. This activity only reads that policy to
end clearly: on the last attempt a retryable error is raised again as
non-retryable, ``gave up after N attempts: <last error>``, keeping its type,
so the run ends with the cause instead of a generic "retries exhausted".

An expected, retried provider error is one log line per attempt, not a
traceback: it is raised as a benign error (which the SDK logs at DEBUG) and
logged here once.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from pydantic import TypeAdapter
from temporalio import activity
from temporalio.contrib.workflow_streams import WorkflowStreamClient
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from onward import clearing, compaction, steplog
from onward.activities.deadline import refuse_if_late
from onward.activities.heartbeat import (
    AttemptAbandoned,
    attempt_limit,
    ensure_current,
    heartbeating,
    last_attempt,
)
from onward.activities.providers.base import ModelProvider
from onward.activities.providers.http_provider import HttpModelProvider
from onward.activities.providers.streaming import TextSink
from onward.activities.rate_limits import RateLimits
from onward.activities.telemetry import ActivityTelemetry
from onward.contracts import (
    TOKENS_TOPIC,
    CompactionRequest,
    CompactionResult,
    ConversationCopy,
    Message,
    ModelPrice,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    TokenChunk,
    ToolSpec,
    TranscriptRef,
    TranscriptWrite,
    Usage,
    provider_of,
)
from onward.errors import MODEL_NOT_PRICED, PROVIDER_NOT_CONFIGURED
from onward.pricing import PricingTable, billed_usd
from onward.store import TranscriptStore
from onward.store.base import StoreError, unreachable

__all__ = ["KEPT_TOOL_SPECS", "TOKEN_BATCH_INTERVAL", "TRANSCRIPT_INCOMPLETE", "ModelActivities"]

TOKEN_BATCH_INTERVAL = timedelta(milliseconds=100)
"""Streamed text goes to the run in one signal this often (history grows per batch, not token)."""

KEPT_TOOL_SPECS = 256
"""Sets of tool specs a worker keeps in memory (runs with the same tools share one)."""
_SPECS = TypeAdapter(list[ToolSpec])
_MILLIONS = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
"""Usage to tell a free model (all its rates 0) from a priced one."""

TRANSCRIPT_INCOMPLETE = "TranscriptIncomplete"
"""The store holds fewer messages than the run sent: retried (a lagging replica, say)."""


class ModelActivities:
    """Calls the provider named by the request's model, and prices the answer.

    Providers and the pricing table are created once in ``worker.py``; API
    keys stay in the worker's environment and never reach workflow history.

    Args:
        providers: by provider name (the part before ``:`` of a model).
        pricing: prices applied to each answer's usage.
        telemetry: GenAI spans of model calls.
        store: the transcript store runs keep their conversation and step log in;
            requests that carry a transcript reference need it.
        rate_limits: requests and tokens per minute that calls wait their turn under,
            shared with every worker of the same store (none by default).
    """

    def __init__(
        self,
        providers: Mapping[str, ModelProvider],
        pricing: PricingTable,
        *,
        telemetry: ActivityTelemetry | None = None,
        store: TranscriptStore | None = None,
        rate_limits: RateLimits | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._rate_limits = rate_limits or RateLimits()
        self._pricing = pricing
        self._telemetry = telemetry or ActivityTelemetry()
        self._store = store
        self._specs: OrderedDict[str, list[ToolSpec]] = OrderedDict()
        self._unreported: set[str] = set()  # providers whose answers came without usage

    @property
    def store(self) -> TranscriptStore | None:
        """The transcript store of this worker (None: runs cannot use one here)."""
        return self._store

    @property
    def rate_limits(self) -> RateLimits:
        """The shared rate limits calls wait their turn under."""
        return self._rate_limits

    @property
    def provider_names(self) -> list[str]:
        """The providers this worker has, for run input checks."""
        return sorted(self._providers)

    @property
    def unusable_providers(self) -> dict[str, str]:
        """Providers that would refuse every call (a key not set), with why: for checks."""
        return {
            name: reason
            for name, provider in sorted(self._providers.items())
            if isinstance(provider, HttpModelProvider) and (reason := provider.unusable)
        }

    @activity.defn(name="call_model")
    async def call_model(self, request: ModelRequest) -> ModelResponse:
        """Make one model call; heartbeats so a dead worker or a cancel is noticed at once."""
        refuse_if_late(request.not_after, "model call")
        self._refuse_unpriced(request.model, request.pricing, request.require_price)
        # An attempt handed to a worker that was stalled meanwhile may be one the server
        # has since given up: it asks nothing of the model (nothing paid for in vain).
        await ensure_current("call the model")
        ref = request.transcript

        async def prepare() -> tuple[list[ToolSpec], list[Message]]:
            tools = await self._tool_specs(request) if request.tools_key else request.tools
            # A conversation in the store: read what it holds, add what the run sent.
            messages = await self._conversation(ref) if ref is not None else request.messages
            return tools, messages

        # Waited for at most half the attempt, leaving the call the other half.
        tools, messages = await _riding_out_the_store("read the conversation", prepare, 0.5)
        refuse_if_late(request.not_after, "model call")  # the wait may have passed it
        sent, placeholders = clearing.cleared(messages, request.clear_tool_results)
        request = request.model_copy(update={"tools": tools, "messages": sent, "transcript": None})
        response = await self._complete(request)
        if placeholders:
            response = response.model_copy(update={"cleared_tool_results": placeholders})
        if ref is not None:
            # Stored as the workflow will hold it, so the next call's read matches it.
            taken = [call.id for message in messages for call in message.tool_calls]
            response = steplog.with_unique_call_ids(response, request.step, taken)
            reply = Message(
                role="assistant", content=response.text, tool_calls=list(response.tool_calls)
            )
            # One write for what the run added and the reply: a call that fails or is
            # cancelled leaves the new messages to the run's next write. The reply is
            # paid for: a store that is briefly away is waited for here, in this
            # attempt, not by asking the model again in the next. Only by the attempt
            # the server still runs: a stalled one's late reply would replace the
            # reply of the attempt that took over, which the run holds.
            await ensure_current("keep the model's reply")
            store = self._required_store()
            await _riding_out_the_store(
                "keep the model's reply",
                lambda: store.write_messages(ref.id, _first_new(ref), [*ref.new_messages, reply]),
            )
        return response

    @activity.defn(name="compact_transcript")
    async def compact_transcript(self, request: CompactionRequest) -> CompactionResult:
        """Summarise the older turns when the conversation passes the run's context limit.

        The summary is a model call of its own; the workflow records it as a
        step, and later calls are sent the summary instead of those turns. The
        transcript in the store keeps every message.
        """
        ref = request.transcript
        self._refuse_unpriced(request.model, request.pricing, request.require_price)
        view = await self._conversation(ref)
        await self._required_store().write_messages(ref.id, _first_new(ref), ref.new_messages)
        limit = request.context
        plan = compaction.plan_compaction(view, limit.max_tokens, limit.keep_last_turns)
        if plan is None:
            return CompactionResult(tokens=compaction.estimate_tokens(view))
        messages = compaction.summary_request(plan)
        asking = ModelRequest(
            model=request.model,
            messages=messages,
            allow_tools=False,
            step=request.step,
            settings=_one_off(request.settings, messages),
            pricing=request.pricing,
            require_price=request.require_price,
        )
        response = await self._complete(asking)
        covered = compaction.absolute_position(
            view,
            len(plan.head) + len(plan.middle),
            ref.summary_covers if ref.summary_step is not None else None,
        )
        sent = compaction.compacted(plan, response.text)
        return CompactionResult(
            summary=response.text,
            covers=covered,
            tokens=compaction.estimate_tokens(sent),
            usage=response.usage,
            cost_usd=response.cost_usd,
            cache_saved_usd=response.cache_saved_usd,
        )

    def _refuse_unpriced(self, model: str, pricing: ModelPrice | None, required: bool) -> None:
        """Refuse a call whose run keeps a cost budget when ``model`` has no price.

        A cost budget cannot be kept blind: the call is refused before anything
        is spent (or read from the store), and the run ends ``budget_exceeded``.
        """
        if not required or pricing is not None or self._pricing.price_for(model) is not None:
            return
        message = (
            f"cost unknown ({model} has no price, and the run keeps a cost budget); "
            "set a price with the worker's ONWARD_PRICING (or the run's `pricing`, which "
            "prices its first model only, not its fallbacks)"
        )
        activity.logger.warning("model call refused: %s", message)
        raise ApplicationError(
            message,
            type=MODEL_NOT_PRICED,
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        )

    async def _complete(self, request: ModelRequest) -> ModelResponse:
        """Ask the provider, price the answer; end clearly on the last attempt."""
        provider_name = provider_of(request.model)
        provider = self._providers.get(provider_name)
        if provider is None:
            configured = ", ".join(sorted(self._providers)) or "none"
            raise ApplicationError(
                f"model provider {provider_name!r} is not configured on this worker "
                f"(configured: {configured})",
                type=PROVIDER_NOT_CONFIGURED,
                non_retryable=True,
            )
        try:
            # Only Onward's HTTP providers say where they call: a provider of the user's
            # may have an attribute of that name meaning something else entirely.
            server = provider.server if isinstance(provider, HttpModelProvider) else None
            turn = await self._rate_limits.take(request)
            if turn.waited_s:
                try:
                    refuse_if_late(request.not_after, "model call")  # the wait overran it?
                except ApplicationError:
                    await turn.give_back()
                    raise
            with self._telemetry.chat(request, server) as chat:
                try:
                    async with heartbeating():
                        if request.stream:
                            response = await self._streamed(provider, request)
                        else:
                            response = await provider.complete(request)
                except ApplicationError as err:
                    await turn.refused(err)
                    raise
                if response.usage.estimated:
                    # Counted, so a token budget still holds; not priced (unless the
                    # model is free): a cost budget stops the run rather than spend on
                    # a guess.
                    usage = self._estimated_usage(provider_name, request, response)
                    price = request.pricing or self._pricing.price_for(request.model)
                    free = price is not None and not billed_usd(price, _MILLIONS)
                    response = response.model_copy(
                        update={"usage": usage, "cost_usd": 0.0 if free else None}
                    )
                else:
                    cost = self._pricing.cost(
                        request.model, response.usage, override=request.pricing
                    )
                    saved = self._pricing.cache_saved(
                        request.model, response.usage, override=request.pricing
                    )
                    response = response.model_copy(
                        update={"cost_usd": cost, "cache_saved_usd": saved}
                    )
                chat.record(response)
            # By the usage the step counts: an answer whose provider reported none is
            # counted estimated, not left out.
            await turn.settle(response.usage)
            if turn.waited_s:
                waited = round(turn.waited_s * 1000)
                response = response.model_copy(update={"rate_limit_wait_ms": waited})
        except AttemptAbandoned:
            raise  # the server has moved on: nothing to log or give up here
        except ApplicationError as err:
            # A provider's typed error is expected: one log line, no traceback.
            if not err.non_retryable and last_attempt():
                raise self._give_up(err.message, err.type) from None
            self._log_failure(err)
            raise _benign(err) from None
        except Exception as err:
            # An unexpected failure (a bug, say) is retried like any other, with its
            # traceback logged by the SDK, but it too must end clearly once the
            # attempts are used up.
            if not last_attempt():
                raise
            raise self._give_up(f"{type(err).__name__}: {err}", type(err).__name__) from None
        return response

    async def _streamed(self, provider: ModelProvider, request: ModelRequest) -> ModelResponse:
        """Call the model, publishing its text to the run's ``tokens`` topic as it comes.

        A retried attempt first publishes ``stream_restart``: the text starts over.
        Every batch is signalled before the answer returns, so a reader sees the
        tokens before the call's result.
        """
        # After a fallback the step's stream goes on numbering past the failed model's.
        attempt = activity.info().attempt + request.stream_attempt_offset
        async with WorkflowStreamClient.from_within_activity(
            batch_interval=TOKEN_BATCH_INTERVAL
        ) as stream:
            tokens = stream.topic(TOKENS_TOPIC, type=TokenChunk)
            if attempt > 1:
                tokens.publish(
                    TokenChunk(kind="stream_restart", call=request.step, attempt=attempt),
                    force_flush=True,
                )

            def on_text(text: str) -> None:
                tokens.publish(TokenChunk(call=request.step, text=text, attempt=attempt))

            stream_call = getattr(provider, "stream", None)
            if stream_call is None:  # a provider that cannot stream: its text in one piece
                response = await provider.complete(request)
                if response.text:
                    on_text(response.text)
                return response
            sink: TextSink = on_text
            streamed: ModelResponse = await stream_call(request, sink)
            return streamed

    @activity.defn(name="write_transcript")
    async def write_transcript(self, write: TranscriptWrite) -> None:
        """Write a run's last messages and step records (at its end, before continue-as-new).

        Heartbeats (as a regular activity) so a worker that dies in it is noticed at once.
        """
        store = self._required_store()
        async with heartbeating():
            await store.write_messages(
                write.id, write.count - len(write.new_messages), write.new_messages
            )
            await store.write_steps(write.id, write.steps)

    @activity.defn(name="copy_conversation")
    async def copy_conversation(self, copy: ConversationCopy) -> None:
        """Start a run's transcript with a conversation's messages (a session's next message).

        Written at the same positions on every attempt, so a retry changes nothing.
        Heartbeats so a worker that dies in it is noticed at once.
        """
        store = self._required_store()
        source = copy.source
        async with heartbeating():
            messages = await store.messages(source.transcript, 0, source.messages)
            if len(messages) != source.messages:
                raise ApplicationError(
                    f"transcript {source.transcript} holds {len(messages)} messages, the "
                    f"conversation has {source.messages}: does this worker use the same "
                    "ONWARD_STORE as the session's other workers?",
                    type=TRANSCRIPT_INCOMPLETE,
                )
            await store.write_messages(copy.target, 0, messages)

    async def _conversation(self, ref: TranscriptRef) -> list[Message]:
        """Write ``ref``'s closed steps; return what the model is sent.

        That is messages ``[0, count)``: those the store holds and the new ones
        ``ref`` carries (the caller writes those), with the older turns as their
        summary after a compaction. Every write is at a fixed position, so a
        retried attempt rewrites the same documents and changes nothing.
        """
        store = self._required_store()
        first_new = _first_new(ref)
        messages = await store.messages(ref.id, 0, first_new)
        if len(messages) != first_new:
            raise ApplicationError(
                f"transcript {ref.id} holds {len(messages)} messages, the run sent "
                f"{ref.count} of which {len(ref.new_messages)} new: does this worker use the "
                "same ONWARD_STORE as the run's other workers?",
                type=TRANSCRIPT_INCOMPLETE,
            )
        messages += ref.new_messages
        try:
            steps = steplog.filled(ref.steps, ref.left_out, messages)
        except KeyError as err:
            raise ApplicationError(
                f"transcript {ref.id} lacks the messages of a step record ({err})",
                type=TRANSCRIPT_INCOMPLETE,
            ) from None
        await store.write_steps(ref.id, steps)
        if ref.summary_step is not None:
            found = await store.steps(ref.id, ref.summary_step, ref.summary_step)
            if not found:
                raise ApplicationError(
                    f"transcript {ref.id} lacks step {ref.summary_step}, its summary",
                    type=TRANSCRIPT_INCOMPLETE,
                )
            messages = compaction.apply_summary(messages, found[0].text, ref.summary_covers)
        return messages

    async def _tool_specs(self, request: ModelRequest) -> list[ToolSpec]:
        """The run's tool specs: kept in the store by its first call, read by later ones.

        A run's specs do not change, so each worker keeps the ones it has seen.
        """
        key = request.tools_key
        assert key is not None
        store = self._required_store()
        if request.tools:
            if key not in self._specs:
                await store.put_cached(key, _SPECS.dump_json(request.tools))
                self._remember_specs(key, request.tools)
            return request.tools
        specs = self._specs.get(key)
        if specs is None:
            raw = await store.get_cached(key)
            if raw is None:
                raise ApplicationError(
                    f"the store lacks the run's tool specs ({key}): does this worker use the "
                    "same ONWARD_STORE as the run's other workers?",
                    type=TRANSCRIPT_INCOMPLETE,
                )
            specs = _SPECS.validate_json(raw)
            self._remember_specs(key, specs)
        return specs

    def _remember_specs(self, key: str, specs: list[ToolSpec]) -> None:
        self._specs[key] = specs
        self._specs.move_to_end(key)
        while len(self._specs) > KEPT_TOOL_SPECS:
            self._specs.popitem(last=False)

    def _required_store(self) -> TranscriptStore:
        if self._store is None:
            raise ApplicationError(
                "this worker has no transcript store, and the run keeps its conversation there",
                type=TRANSCRIPT_INCOMPLETE,
                non_retryable=True,
            )
        return self._store

    def _estimated_usage(
        self, provider_name: str, request: ModelRequest, response: ModelResponse
    ) -> Usage:
        """Tokens of an answer whose provider reported none, from the characters sent and got."""
        if provider_name not in self._unreported:
            self._unreported.add(provider_name)
            activity.logger.warning(
                "%s reported no token usage: tokens are estimated, and the cost of a priced "
                "model unknown (a run with a cost budget stops)",
                provider_name,
            )
        answer = len(response.text) + sum(
            len(call.name) + len(json.dumps(call.arguments)) for call in response.tool_calls
        )
        return Usage(
            input_tokens=compaction.estimate_tokens(request.messages),
            output_tokens=-(-answer // compaction.CHARS_PER_TOKEN),
            estimated=True,
        )

    def _log_failure(self, err: ApplicationError) -> None:
        limit = attempt_limit()  # the run's, from the worker's setting
        of = f" of {limit}" if limit is not None else ""
        then = "not retried" if err.non_retryable else "retrying"
        activity.logger.warning(
            "model call attempt %d%s failed, %s: %s", activity.info().attempt, of, then, err.message
        )

    def _give_up(self, message: str, error_type: str | None) -> ApplicationError:
        attempts = activity.info().attempt
        activity.logger.warning("model call gave up after %d attempts: %s", attempts, message)
        return ApplicationError(
            f"gave up after {attempts} attempts: {message}",
            type=error_type,
            non_retryable=True,
            category=ApplicationErrorCategory.BENIGN,
        )


STORE_RETRY_FIRST_S = 0.5
STORE_RETRY_MAX_S = 10.0
"""Waits between tries of a store that cannot be reached, doubling up to the maximum."""
STORE_RETRY_MARGIN_S = 15.0
"""What an attempt keeps of its start-to-close timeout when it stops waiting for the store."""

_T = TypeVar("_T")


async def _riding_out_the_store(
    what: str, operation: Callable[[], Awaitable[_T]], keep: float = 0.0
) -> _T:
    """``operation``, tried again while the store is unreachable (PostgreSQL restarting, a
    failover), heartbeating, until the attempt's timeout draws near (or until only
    ``keep`` of it is left, a share of the whole, for what follows).

    A store that refuses the operation itself (a bad document, a permission) fails
    the attempt at once, as before.
    """
    info = activity.info()
    deadline = None
    if info.start_to_close_timeout:
        deadline = info.started_time + info.start_to_close_timeout * (1 - keep)
    delay = STORE_RETRY_FIRST_S
    async with heartbeating():
        while True:
            try:
                return await operation()
            except StoreError as err:
                left = None if deadline is None else (deadline - datetime.now(UTC)).total_seconds()
                if not unreachable(err) or (
                    left is not None and left < delay + STORE_RETRY_MARGIN_S
                ):
                    raise
                activity.logger.warning(
                    "cannot %s: the store is unreachable, trying again in %.1f s: %s",
                    what,
                    delay,
                    str(err).splitlines()[0],
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, STORE_RETRY_MAX_S)


def _one_off(settings: ModelSettings | None, messages: list[Message]) -> ModelSettings | None:
    """The settings of a summary call: no prompt-cache breakpoints when the history used tools.

    Such a call declares those tools as placeholders with tools off, so its prompt
    starts unlike any call of the run before or after it: a breakpoint would only
    write it all to the cache (Anthropic bills that at 125% of input) for nothing
    to read. Without tools its prefix is the run's own, and the marks let it read.
    """
    if not any(message.tool_calls or message.role == "tool" for message in messages):
        return settings
    return (settings or ModelSettings()).model_copy(update={"cache_prompt": False})


def _first_new(ref: TranscriptRef) -> int:
    """The position of the first message ``ref`` carries (those before are in the store)."""
    return ref.count - len(ref.new_messages)


def _benign(err: ApplicationError) -> ApplicationError:
    """``err`` marked as expected, so the SDK logs no traceback for it (we log one line)."""
    if err.category == ApplicationErrorCategory.BENIGN:
        return err
    return ApplicationError(
        err.message,
        *err.details,
        type=err.type,
        non_retryable=err.non_retryable,
        next_retry_delay=err.next_retry_delay,
        category=ApplicationErrorCategory.BENIGN,
    )
