"""Rate limits of model calls shared by every worker: requests and tokens per minute.

A provider's limits (OpenAI's and Anthropic's requests and tokens per minute)
are its organisation's, not one worker's: ten workers each keeping under them
overrun them ten times, and each then hears 429s, backs off on its own and
tries again while the others still send. ``ONWARD_RATE_LIMITS`` (or ``onward
worker --rate-limits``) names a JSON or TOML file of limits by provider
(``openai``, an ``ONWARD_ENDPOINTS`` name) or by model (``openai:gpt-4.1``)::

    {"openai": {"requests_per_minute": 500, "tokens_per_minute": 200000}}

Each limit is one schedule in the workers' transcript store: a small file in
the local directory, shared by the worker processes of one machine; a row in
PostgreSQL, shared by every machine's (by the database's clock). A call takes
its turn before it is sent. It goes once the calls before it are paid off at
the limit's rate, and moves the schedule on by its own cost: one request, and
its prompt's estimated tokens, corrected by the answer's usage once it comes.
So calls are spaced evenly, by every worker together, and no minute sees more
than the limit and one call (this is the generic cell rate algorithm, with no
burst: a burst of a minute's worth is what trips a provider that enforces its
limit over shorter windows, as OpenAI says it may).

A provider's 429 that says how long to wait (``Retry-After``) holds back every
worker's calls under the limits the refused call came under until then, not
only the retry of that call.

The wait is spent inside the call's attempt, heartbeating, so it uses no
attempt (the beats keep the place for the next attempt, should the worker die);
a turn further away than the attempt can wait for (its 10 minutes, less the
call's own timeout) fails the attempt as ``RateLimited`` but keeps its place, in
the attempt's last heartbeat, for the next attempt, which starts just before the
turn: one attempt, however far the turn. A call that will not be sent (its run
cancelled or out of time) gives its place back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from onward import compaction
from onward.activities.heartbeat import AttemptAbandoned, heartbeating, last_attempt
from onward.activities.providers.errors import RATE_LIMITED
from onward.activities.providers.settings import DEFAULT_TIMEOUT_S, read_settings_file
from onward.contracts import ModelRequest, Usage, provider_of
from onward.errors import DEADLINE_PASSED, StoreError
from onward.store.base import MAX_AHEAD_S, RateBackend, advanced

__all__ = [
    "RATE_LIMITS_ENV",
    "InProcessSchedules",
    "RateLimit",
    "RateLimits",
    "Turn",
    "check_providers",
    "load_rate_limits",
    "rate_limits_from_env",
]

log = logging.getLogger("onward.rate_limits")

RATE_LIMITS_ENV = "ONWARD_RATE_LIMITS"
_SPEC_CHARS_PER_TOKEN = 4
"""Tool specs are JSON; the estimate counts them as text, like the messages."""
_WAIT_MARGIN_S = 30.0
"""Left of an attempt, beside the call's own timeout, when deciding how long a turn may
be waited for inside it."""
_LOGGED_WAIT_S = 1.0
"""Turns waited for longer than this are logged (at INFO)."""
_RETRY_LEAD_S = 5.0
"""The next attempt of a call whose turn is further than an attempt can wait starts this
long before the turn (or half as long as the attempt could wait, if less: the next may
wait a little less, having read the conversation again)."""
_KEPT_TURN = "rate_limit_turn_at"


class RateLimit(BaseModel):
    """One provider's or model's limits; calls under it share them across workers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Strict and finite: ``true`` read as 1 a minute, or ``1e999`` as no limit, would
    # be a typo obeyed in silence.
    requests_per_minute: float | None = Field(default=None, gt=0, strict=True, allow_inf_nan=False)
    tokens_per_minute: float | None = Field(
        default=None,
        gt=0,
        strict=True,
        allow_inf_nan=False,
        description="prompt and answer tokens together (cached prompt tokens count too)",
    )

    @model_validator(mode="after")
    def _something(self) -> RateLimit:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError("give requests_per_minute, tokens_per_minute or both")
        return self


def load_rate_limits(path: Path) -> dict[str, RateLimit]:
    """Read a rate limits file (``.toml`` by suffix, JSON otherwise).

    Keys are a provider (``openai``) or a model (``openai:gpt-4.1``); keys
    starting with ``_`` are comments, as in ``ONWARD_PRICING``'s file.

    Raises:
        ValueError: the file is missing, unreadable or invalid; the message names
            the file and the limit, so the worker stops at its start.
    """
    raw = read_settings_file(path, RATE_LIMITS_ENV, "providers or models to limits")
    limits: dict[str, RateLimit] = {}
    for key, config in raw.items():
        if not key.strip() or key != key.strip() or key.endswith(":"):
            raise ValueError(
                f"{RATE_LIMITS_ENV}: {path}: {key!r} names no provider or model "
                "(write 'openai' or 'openai:gpt-4.1')"
            )
        try:
            limits[key] = RateLimit.model_validate(config)
        except ValidationError as err:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'limit'}: {e['msg']}" for e in err.errors()
            )
            raise ValueError(f"{RATE_LIMITS_ENV}: {path}: {key!r}: {problems}") from None
    return limits


def rate_limits_from_env(environ: Mapping[str, str]) -> dict[str, RateLimit]:
    """The limits of the file ``ONWARD_RATE_LIMITS`` names; none when it is unset.

    Raises:
        ValueError: see :func:`load_rate_limits`.
    """
    path = environ.get(RATE_LIMITS_ENV, "").strip()
    return load_rate_limits(Path(path)) if path else {}


def check_providers(limits: Mapping[str, RateLimit], providers: Collection[str]) -> None:
    """Raise ValueError naming a limit whose provider this worker does not have (a typo
    would otherwise limit nothing, in silence)."""
    for key in limits:
        if provider_of(key) not in providers:
            raise ValueError(
                f"{RATE_LIMITS_ENV}: the limit {key!r} is for provider {provider_of(key)!r}, "
                f"which this worker does not have (it has: {', '.join(sorted(providers))})"
            )


class InProcessSchedules:
    """A :class:`~onward.store.base.RateBackend` in this process's memory (no shared store).

    Shares nothing with other processes: for a worker without a store, and tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._scheduled: dict[str, float] = {}

    async def advance(self, key: str, add_s: float, hold_s: float = 0.0) -> float:
        now = self._clock()
        self._scheduled[key] = scheduled = advanced(self._scheduled.get(key), now, add_s, hold_s)
        return scheduled - now


class Turn:
    """One call's place under the limits that apply to it (see :meth:`RateLimits.take`)."""

    def __init__(self, schedules: RateBackend, costs: dict[str, tuple[float, float]]) -> None:
        self._schedules = schedules
        self._costs = costs
        """Seconds each schedule was moved on, and seconds a token is, by schedule key."""
        self.waited_s = 0.0
        """How long the call waited for its turn."""

    async def _take(self) -> float:
        """Move every schedule on by the call's cost; the wait until all are paid off."""
        aheads = await asyncio.gather(
            *(self._schedules.advance(key, cost) for key, (cost, _) in self._costs.items())
        )
        return max(
            ahead - cost for ahead, (cost, _) in zip(aheads, self._costs.values(), strict=True)
        )

    async def give_back(self) -> None:
        """Give the place back: the call was not sent (cancelled, or too late for its run).

        Only calls that take their turn afterwards go sooner for it; those already
        waiting keep the turns they were given.
        """
        await asyncio.gather(
            *(self._schedules.advance(key, -cost) for key, (cost, _) in self._costs.items())
        )

    async def settle(self, usage: Usage) -> None:
        """Correct the tokens limits from the prompt's estimate to the answer's usage.

        A store that cannot be reached leaves the estimate (said in the log): the
        answer is paid for, and failing its attempt would ask the model again.
        """
        if not self._costs:
            return  # under no limit: every model call of a worker without any comes here
        tokens = usage.input_tokens + usage.output_tokens
        corrections = [
            self._schedules.advance(key, tokens * per_token - cost)
            for key, (cost, per_token) in self._costs.items()
            if per_token and tokens
        ]
        await _or_logged(asyncio.gather(*corrections), "correct the tokens to the usage")

    async def refused(self, err: ApplicationError) -> None:
        """A provider's 429 saying how long to wait holds every worker's calls under
        these limits back until then (unless the store cannot be reached: then only
        this call's retry waits, and ``err`` is still what the attempt fails with)."""
        if err.type != RATE_LIMITED or not err.next_retry_delay or not self._costs:
            return
        hold_s = err.next_retry_delay.total_seconds()
        holds = asyncio.gather(*(self._schedules.advance(key, 0.0, hold_s) for key in self._costs))
        await _or_logged(holds, "hold the other calls back for the provider's Retry-After")


async def _or_logged(bookkeeping: Awaitable[object], what: str) -> None:
    """Await ``bookkeeping`` of a call already made; a store error is logged, not raised."""
    try:
        await bookkeeping
    except StoreError as err:
        log.warning("cannot %s under the shared rate limit: %s", what, err)


_NO_LIMIT = Turn(InProcessSchedules(), {})


class RateLimits:
    """The rate limits of one worker's model calls, kept in ``schedules``.

    Args:
        limits: by provider (``openai``) or model (``openai:gpt-4.1``); a call is
            under its model's and its provider's, and waits for both.
        schedules: where the limits' schedules are kept: the worker's store (see
            :class:`~onward.store.base.RateBackend`), shared by every worker using it;
            None: this process's memory.
        call_timeout_s: the longest a model call takes once sent (the worker's
            ``ONWARD_MODEL_TIMEOUT_S``): an attempt waits for its turn at most
            as long as leaves it that.
    """

    def __init__(
        self,
        limits: Mapping[str, RateLimit] | None = None,
        schedules: RateBackend | None = None,
        *,
        call_timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.limits = dict(limits or {})
        self._schedules = schedules or InProcessSchedules()
        self._call_timeout_s = call_timeout_s

    async def check(self) -> None:
        """Reach every limit's schedule once (moving none): a store that cannot keep them
        (a PostgreSQL role that may not use their table, say) is said at the start.

        Raises:
            StoreError: why the store cannot keep them.
        """
        for key, limit in self.limits.items():
            kind = "requests" if limit.requests_per_minute else "tokens"
            await self._schedules.advance(f"{key}#{kind}", 0.0)

    def under(self, model: str) -> dict[str, RateLimit]:
        """The limits a call to ``model`` is under, by key."""
        return {key: self.limits[key] for key in (model, provider_of(model)) if key in self.limits}

    async def take(self, request: ModelRequest) -> Turn:
        """Wait for the call's turn (heartbeating); at once for a call under no limit.

        After the call, :meth:`Turn.settle` with the answer's usage, or
        :meth:`Turn.refused` with the provider's error.

        Raises:
            ApplicationError: ``RateLimited``, retryable: the turn is further away
                than this attempt can wait (kept for the next attempt, which comes
                just before it); ``DeadlinePassed``: the turn comes after the run's
                deadline (``request.not_after``), and is given back at once, as a
                wait cancelled is.
        """
        limits = self.under(request.model)
        if not limits:
            return _NO_LIMIT
        turn = Turn(self._schedules, _costs(limits, request))
        now = time.time()
        kept = _kept_turn(request.model)
        if kept is None:
            wait_s, since = await turn._take(), now
        else:  # an earlier attempt's place, kept for this one: not taken again
            (at, since), wait_s = kept, kept[0] - now
            _keep_turn(request.model)  # used: a later attempt takes a turn of its own
            turn.waited_s = max(0.0, min(at, now) - since)
        if wait_s <= 0:
            return turn
        if request.not_after is not None:
            after_s = wait_s - (request.not_after - datetime.now(UTC)).total_seconds()
            if after_s > 0:
                await turn.give_back()  # nobody waits behind a call that will not go
                raise ApplicationError(
                    f"model call not started: its turn under the shared rate limit "
                    f"({_named(limits)}) comes {after_s:.1f} s after the run's deadline",
                    type=DEADLINE_PASSED,
                    non_retryable=True,
                    category=ApplicationErrorCategory.BENIGN,
                )
        if wait_s > (can_wait_s := self._can_wait_s()) and last_attempt():
            await turn.give_back()  # no attempt comes to take it
            raise ApplicationError(
                f"{request.model}: its turn under the shared rate limit ({_named(limits)}) "
                f"is {wait_s:.0f} s away, more than this attempt, the call's last "
                f"(ONWARD_MODEL_MAX_ATTEMPTS), can wait ({can_wait_s:.0f} s)",
                type=RATE_LIMITED,
            )
        if wait_s > can_wait_s:
            # The place is kept, in the attempt's last heartbeat, for the next attempt,
            # which starts just before it: calls keep their order, and a turn however
            # far costs one attempt (given back, every such call was told the same
            # time, and all but a few of them failed again at once, attempt after
            # attempt, until the run failed).
            retry_s = wait_s - min(can_wait_s / 2, _RETRY_LEAD_S)
            _keep_turn(request.model, (now + wait_s, since))
            raise ApplicationError(
                f"{request.model}: its turn under the shared rate limit ({_named(limits)}) "
                f"is {wait_s:.0f} s away, more than this attempt can wait "
                f"({can_wait_s:.0f} s); kept for the next attempt, in {retry_s:.0f} s",
                type=RATE_LIMITED,
                next_retry_delay=timedelta(seconds=retry_s),
            )
        if wait_s > _LOGGED_WAIT_S:
            log.info(
                "%s waits %.1f s for its turn under the rate limit (%s)",
                request.model,
                wait_s,
                _named(limits),
            )
        try:
            # Each beat keeps the place for the next attempt, should this worker die.
            async with heartbeating(details=[_kept(request.model, (now + wait_s, since))]):
                await asyncio.sleep(wait_s)
        except (asyncio.CancelledError, AttemptAbandoned):
            # The run was cancelled, ended or ran out of time, or the attempt is given up:
            # the call is not sent, and the calls that take their turn next go in its
            # place; unless the next attempt has it (this one timed out, or its worker is
            # stopping).
            if not _retried():
                await _given_back_while_cancelled(turn)
            raise
        _keep_turn(request.model)  # its turn: a later attempt takes one of its own
        turn.waited_s = now + wait_s - since
        return turn

    def _can_wait_s(self) -> float:
        """How long this attempt may wait for its turn and still make its call in time."""
        if not activity.in_activity():
            return MAX_AHEAD_S
        info = activity.info()
        if info.start_to_close_timeout is None:
            return MAX_AHEAD_S
        ends = info.started_time + info.start_to_close_timeout
        left = (ends - datetime.now(UTC)).total_seconds()
        return max(0.0, left - self._call_timeout_s - _WAIT_MARGIN_S)


def _kept_turn(model: str) -> tuple[float, float] | None:
    """When the turn an earlier attempt of this call kept for it comes, and when the call
    began waiting for it (``time.time()``); None: it kept none (or this is no activity)."""
    if not activity.in_activity():
        return None
    for detail in activity.info().heartbeat_details:
        if isinstance(detail, dict) and detail.get("model") == model:
            kept = detail.get(_KEPT_TURN)
            if (
                isinstance(kept, list)
                and len(kept) == 2
                and all(isinstance(t, int | float) and not isinstance(t, bool) for t in kept)
            ):
                return float(kept[0]), float(kept[1])
    return None


def _keep_turn(model: str, kept: tuple[float, float] | None = None) -> None:
    """Leave the turn ``kept`` (when it comes, when the call began waiting for it) to the
    next attempt, in this one's last heartbeat (Temporal hands it to the next attempt);
    None: the turn kept was used, a later attempt takes its own."""
    if activity.in_activity():
        activity.heartbeat(_kept(model, kept))


def _kept(model: str, kept: tuple[float, float] | None) -> dict[str, object]:
    """The heartbeat detail :func:`_kept_turn` reads."""
    return {"model": model, _KEPT_TURN: list(kept) if kept else None}


def _retried() -> bool:
    """Whether the attempt, cut short, is retried with the place it kept (it timed out,
    or its worker is stopping) rather than not at all (its run cancelled or ended)."""
    if not activity.in_activity():
        return False
    details = activity.cancellation_details()
    return details is not None and (details.timed_out or details.worker_shutdown)


async def _given_back_while_cancelled(turn: Turn) -> None:
    """``turn.give_back()`` in a task being cancelled: whatever happens, the cancel goes on."""
    try:
        await asyncio.shield(turn.give_back())
    except asyncio.CancelledError:
        pass  # cancelled again meanwhile: the shielded give back still finishes
    except StoreError as err:  # a store that cannot be reached: the place is lost, no more
        log.warning("a cancelled call's place under the rate limit was not given back: %s", err)


def _costs(
    limits: Mapping[str, RateLimit], request: ModelRequest
) -> dict[str, tuple[float, float]]:
    """Seconds each of the call's schedules moves on, and seconds a token is (0 for requests)."""
    costs: dict[str, tuple[float, float]] = {}
    tokens: int | None = None
    for key, limit in limits.items():
        if limit.requests_per_minute:
            costs[f"{key}#requests"] = (60.0 / limit.requests_per_minute, 0.0)
        if limit.tokens_per_minute:
            if tokens is None:
                tokens = _estimated_tokens(request)
            per_token = 60.0 / limit.tokens_per_minute
            costs[f"{key}#tokens"] = (tokens * per_token, per_token)
    return costs


def _estimated_tokens(request: ModelRequest) -> int:
    """The prompt's tokens, estimated from its characters (the answer's are counted after)."""
    specs = sum(len(spec.model_dump_json()) for spec in request.tools)
    return compaction.estimate_tokens(request.messages) + specs // _SPEC_CHARS_PER_TOKEN


def _named(limits: Mapping[str, RateLimit]) -> str:
    return ", ".join(
        f"{key}: "
        + ", ".join(
            f"{value:g} {unit}/min"
            for value, unit in (
                (limit.requests_per_minute, "requests"),
                (limit.tokens_per_minute, "tokens"),
            )
            if value
        )
        for key, limit in limits.items()
    )
