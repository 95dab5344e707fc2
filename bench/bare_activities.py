"""The bare workflow's activities: one model call over HTTP, and the tools as local activities."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio import activity

from bench.workload import model_name, page_for, record_result

__all__ = ["BareActivities", "ModelCall", "ModelTurn", "read", "record"]

HEARTBEAT_INTERVAL_S = 1.0


@dataclass
class ModelCall:
    """One model call: the run's prompt and the step number (the fake model needs no more)."""

    prompt: str
    step: int


@dataclass
class ModelTurn:
    """The model's answer: a note to record, a page to read, or the final text."""

    note: str | None = None
    page: int | None = None
    text: str = ""


@activity.defn
async def record(note: str) -> str:
    """The same tool every system runs."""
    return record_result(note)


@activity.defn
async def read(page: int) -> str:
    """The ``read`` tool of the tool-heavy task."""
    return page_for(page)


class BareActivities:
    """Holds one HTTP client for the fake model server, as a real worker would."""

    def __init__(self, base_url: str) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=600)

    async def aclose(self) -> None:
        await self._http.aclose()

    @activity.defn(name="bare_model_call")
    async def model_call(self, call: ModelCall) -> ModelTurn:
        """POST one Chat Completions request, heartbeating as Onward's model activity does."""
        request = self._http.post(
            "/chat/completions",
            json={
                "model": model_name("bare"),
                "messages": [{"role": "user", "content": call.prompt}],
                "bench_step": call.step,
            },
        )
        response = asyncio.ensure_future(request)
        # The first beat one interval into the call, as Onward's: one that answers
        # sooner sends none (the SDK would send a first beat at once).
        await asyncio.wait({response}, timeout=HEARTBEAT_INTERVAL_S)
        while not response.done():
            activity.heartbeat()
            await asyncio.wait({response}, timeout=HEARTBEAT_INTERVAL_S)
        answer: Any = response.result().raise_for_status().json()
        message = answer["choices"][0]["message"]
        calls = message.get("tool_calls") or []
        if calls:
            arguments = json.loads(calls[0]["function"]["arguments"])
            if "page" in arguments:
                return ModelTurn(page=int(arguments["page"]))
            return ModelTurn(note=str(arguments["note"]))
        return ModelTurn(text=str(message.get("content") or ""))
