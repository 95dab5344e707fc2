"""HTTP statuses of Onward's errors, as ``onward.starter.errors.exit_code_of`` gives exit codes.

Every error answer is ``{"error": {"type", "message", "problems"}}`` (an
:class:`~onward.starter.api.models.ErrorBody`): never a traceback. Errors no
handler expects are logged here with their traceback and answered as a bare
500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onward.encryption import EncryptionError
from onward.errors import (
    ArtifactNotFound,
    ConnectionFailed,
    InvalidInput,
    NoWorker,
    OnwardError,
    RequestRejected,
    RunAlreadyExists,
    RunEnded,
    RunNotFound,
    ScheduleNotFound,
    StoreError,
    TemporalError,
    UnexpectedResponse,
    UpdateNotTaken,
    named_problem,
)
from onward.starter.api.models import ApiError, ErrorBody

__all__ = [
    "INTERNAL_ERROR",
    "ApiProblem",
    "BodyLimit",
    "TooManyRequests",
    "error_response",
    "error_responses",
    "install_error_handlers",
    "located",
    "not_json",
    "parse_json",
    "status_of",
]

log = logging.getLogger("onward.api")

INTERNAL_ERROR = "internal error; see the API's log"
"""What a client is told of a failure no handler expected (the HTTP 500's message)."""

_STATUS: tuple[tuple[type[OnwardError], int], ...] = (
    (RunNotFound, 404),
    (ArtifactNotFound, 404),
    (ScheduleNotFound, 404),
    (InvalidInput, 422),
    (RunAlreadyExists, 409),
    (RunEnded, 409),
    (RequestRejected, 409),
    (NoWorker, 503),
    (ConnectionFailed, 503),
    (StoreError, 503),
    (UnexpectedResponse, 502),
    # Payloads this process cannot open: its own setting (ONWARD_ENCRYPTION_KEYS), which
    # the message names, not an upstream's failure.
    (EncryptionError, 500),
)


class ApiProblem(OnwardError):
    """A problem of the request itself, answered with ``status`` (401, 404, 409, ...)."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


class TooManyRequests(ApiProblem):
    """Over a tenant's limit: 429, with ``Retry-After`` seconds."""

    def __init__(self, error_type: str, message: str, retry_after_s: int) -> None:
        super().__init__(429, error_type, message)
        self.retry_after_s = max(int(retry_after_s), 1)


def status_of(err: OnwardError) -> int:
    """The HTTP status that answers ``err``."""
    if isinstance(err, ApiProblem):
        return err.status
    for kind, status in _STATUS:
        if isinstance(err, kind):
            return status
    if isinstance(err, TemporalError) and err.status == "INVALID_ARGUMENT":
        return 400
    return 502  # Temporal reported something else: the upstream failed, not this request


UNAVAILABLE_RETRY_AFTER_S = 5
"""``Retry-After`` of a 503: Temporal, a worker or the store may be back by then."""

_SECONDS = {"type": "integer", "minimum": 1}
_ERROR_ANSWERS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("Temporal refused the request as invalid", {}),
    401: ("Unauthorized: no API key, or an unknown one", {}),
    403: (
        "OriginNotAllowed: sent by a web page of an origin not allowed (more than a read), "
        "or, with no API keys, addressed to a name that is not loopback; "
        "SchedulesNotAllowed: a schedule under a daily spend ceiling",
        {},
    ),
    404: ("No such run, session or schedule of this tenant", {}),
    409: ("The run has ended or refused the request (RunEnded, RequestRejected ...)", {}),
    413: ("BodyTooLarge: a body over 1 MiB", {}),
    422: ("Invalid input: problems has one {loc, msg, type} per problem", {}),
    429: (
        "Over a tenant limit (TooManyRuns, BudgetCeiling)",
        {"Retry-After": {"description": "seconds to wait before trying again", "schema": _SECONDS}},
    ),
    500: ("InternalError: the API's log has what went wrong", {}),
    502: ("Temporal or a worker answered something unexpected", {}),
    503: (
        "Temporal, a worker or the store is out of reach (NoWorker, ConnectionFailed, "
        "StoreError); UpdateNotTaken and MessageNotTaken: no worker took the request in "
        "time, and the server keeps it",
        {
            "Retry-After": {
                "description": f"{UNAVAILABLE_RETRY_AFTER_S} (seconds); absent for "
                "UpdateNotTaken and MessageNotTaken, which a retry would apply twice, "
                "unless the request is one a retry is answered once for (an approval "
                "naming its call_id, a message with an idempotency_key)",
                "schema": _SECONDS,
            }
        },
    ),
}


def error_responses(limited: bool = False) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route's errors, each an :class:`ErrorBody`, with their
    headers; 429 only where a tenant's limits are checked (``limited``)."""
    return {
        status: {"model": ErrorBody, "description": description, "headers": headers}
        if headers
        else {"model": ErrorBody, "description": description}
        for status, (description, headers) in _ERROR_ANSWERS.items()
        if status != 429 or limited
    }


def retry_after(err: OnwardError) -> dict[str, str] | None:
    """``Retry-After`` for an error worth retrying as it was sent, else None.

    A 503 is; an update no worker took (a session message, an approval, a budget
    extension) is not, though it answers 503: the server keeps it, and sending it
    again has it applied twice. Unless it is the same update sent again (an approval
    naming its call, a message with an idempotency key): answered once.
    """
    if status_of(err) != 503:
        return None
    if isinstance(err, UpdateNotTaken) and not err.repeatable:
        return None
    return {"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)}


def error_response(
    status: int,
    error_type: str,
    message: str,
    problems: list[dict[str, object]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON error answer."""
    body = ErrorBody(error=ApiError(type=error_type, message=message, problems=problems or []))
    return JSONResponse(
        body.model_dump(mode="json"), status_code=status, headers=dict(headers or {})
    )


def not_json(what: str, err: BaseException | None) -> str:
    """Why ``json.loads`` refused ``what`` ("the body", "the message"), for whoever sent it."""
    message = f"{what} is not valid JSON"
    if isinstance(err, json.JSONDecodeError):
        return f"{message} at character {err.pos}: {err.msg}"
    if isinstance(err, UnicodeDecodeError):
        return f"{message}: its bytes are not UTF-8"
    if isinstance(err, RecursionError):
        return f"{message}: nested too deeply"
    return message


def parse_json(raw: str | bytes, what: str) -> object:
    """``raw`` parsed as JSON; ``what`` ("the body", "the message") names it in the error.

    Raises:
        InvalidInput: ``raw`` is not JSON, including bytes that are not UTF-8 and
            nesting deeper than the parser goes (a RecursionError, no ValueError).
    """
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as err:
        message = not_json(what, err)
        raise InvalidInput(message, [{"loc": (), "msg": message, "type": "json_invalid"}]) from None


@contextmanager
def located(*where: str) -> Iterator[None]:
    """Place the client's problems in the request: ``where`` ("body", "query", "path";
    ``"body", "input"`` for a field inside the body) carried the input whose fields
    they name.

    The client names a field of its call (``page_token``); a client of the API
    looks for it where FastAPI's own problems are (``["query", "page_token"]``).
    """
    try:
        yield
    except InvalidInput as err:
        err.problems = [{**item, "loc": (*where, *item.get("loc", ()))} for item in err.problems]
        raise


def _problems(details: list[dict[str, Any]]) -> list[dict[str, object]]:
    """pydantic's problems without the offending input (it may be large, or a secret)."""
    problems: list[dict[str, object]] = []
    for item in details:
        loc, message = named_problem(item.get("loc", ()), str(item.get("msg", "")))
        problems.append(
            {"loc": list(loc), "msg": message, "type": item.get("type") or "value_error"}
        )
    return problems


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with a JSON 413.

    A ``Content-Length`` over the limit is answered before the body is read; a
    body sent without one (chunked) is counted as it arrives.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> HTTPException:
        return HTTPException(413, f"the body is over {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            too_large = self._too_large()
            response = error_response(413, "BodyTooLarge", str(too_large.detail))
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # An HTTPException passes FastAPI's body parsing untouched.
                    raise self._too_large()
            return message

        await self.app(scope, counted, send)


def _json_invalid(problem: Mapping[str, Any]) -> str:
    """The message of FastAPI's ``json_invalid`` problem (the body's JSONDecodeError).

    pydantic's error puts the character position in ``loc``, where a field name would be.
    """
    loc = list(problem.get("loc", ()))
    at = f" at character {loc[-1]}" if len(loc) > 1 and isinstance(loc[-1], int) else ""
    cause = (problem.get("ctx") or {}).get("error")
    return f"the body is not valid JSON{at}" + (f": {cause}" if cause else "")


def _not_json(request: Request, message: str) -> JSONResponse:
    """A body that is not JSON: FastAPI reads it before the key is checked, so check it here."""
    from onward.starter.api.tenants import authenticate

    settings = getattr(request.app.state, "settings", None)
    try:
        authenticate(request, getattr(settings, "keys", None))
    except ApiProblem as err:
        return error_response(err.status, err.error_type, str(err))
    return error_response(
        422, "InvalidInput", message, [{"loc": ["body"], "msg": message, "type": "json_invalid"}]
    )


def install_error_handlers(app: FastAPI) -> None:
    """Answer Onward's errors, validation errors and the unexpected as :class:`ErrorBody`."""

    @app.exception_handler(OnwardError)
    async def onward_error(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, OnwardError)
        status = status_of(err)
        if isinstance(err, ApiProblem):
            headers = (
                {"Retry-After": str(err.retry_after_s)}
                if isinstance(err, TooManyRequests)
                else None
            )
            return error_response(status, err.error_type, str(err), headers=headers)
        problems = _problems(list(err.problems)) if isinstance(err, InvalidInput) else None
        return error_response(status, type(err).__name__, str(err), problems, retry_after(err))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        broken = next((item for item in err.errors() if item.get("type") == "json_invalid"), None)
        if broken is not None:
            return _not_json(request, _json_invalid(broken))
        problems = _problems([dict(item) for item in err.errors()])
        lines = [
            f"{'.'.join(str(p) for p in item['loc'] if p != 'body') or 'body'}: {item['msg']}"  # type: ignore[attr-defined]
            for item in problems
        ]
        return error_response(422, "InvalidInput", "invalid request: " + "; ".join(lines), problems)

    @app.exception_handler(HTTPException)
    async def http_problem(request: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, HTTPException)
        message = str(err.detail)
        if err.status_code == 400 and "parsing the body" in message:
            # FastAPI's answer to a body json.loads refused other than by JSONDecodeError
            # (bytes that are not UTF-8, nesting past the recursion limit): its cause says.
            return _not_json(request, not_json("the body", err.__cause__))
        error_type = "BodyTooLarge" if err.status_code == 413 else "HTTPError"
        return error_response(err.status_code, error_type, message, headers=err.headers)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error answering %s %s", request.method, request.url.path)
        return error_response(500, "InternalError", INTERNAL_ERROR)
