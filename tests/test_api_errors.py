"""HTTP statuses of Onward's errors: each error a client may see has its status and its body."""

from __future__ import annotations

import json

import pytest

from onward.errors import (
    ConnectionFailed,
    InvalidInput,
    MessageNotTaken,
    NoWorker,
    OnwardError,
    RequestRejected,
    RunAlreadyExists,
    RunEnded,
    RunNotFound,
    StoreError,
    TemporalError,
    UnexpectedResponse,
    UpdateNotTaken,
)
from onward.starter.api.errors import (
    ApiProblem,
    TooManyRequests,
    error_response,
    retry_after,
    status_of,
)


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (RunNotFound("r"), 404),
        (InvalidInput("prompt: must not be blank"), 422),
        (RunAlreadyExists("r"), 409),
        (RunEnded("r"), 409),
        (RequestRejected("extend_budget: can only be raised"), 409),
        (NoWorker("no worker"), 503),
        (ConnectionFailed("gone"), 503),
        (UnexpectedResponse("odd"), 502),
        (TemporalError("bad query", "INVALID_ARGUMENT"), 400),
        (TemporalError("denied", "PERMISSION_DENIED"), 502),
        (ApiProblem(401, "Unauthorized", "unknown API key"), 401),
        (TooManyRequests("TooManyRuns", "over", 0), 429),
    ],
)
def test_every_error_has_its_status(error: OnwardError, status: int) -> None:
    assert status_of(error) == status


def test_a_503_says_when_to_retry_unless_retrying_answers_twice() -> None:
    for error in (NoWorker("no worker"), ConnectionFailed("gone"), StoreError("down")):
        assert retry_after(error) == {"Retry-After": "5"}
    # Kept by the server: sent again, it would be answered (or applied) twice.
    for kept in (MessageNotTaken("not taken"), UpdateNotTaken("approve not answered")):
        assert status_of(kept) == 503
        assert retry_after(kept) is None
    # Unless the same request is the same update, answered once: it may come again.
    for same in (
        MessageNotTaken("keyed message not taken", repeatable=True),
        UpdateNotTaken("named approval not answered", repeatable=True),
    ):
        assert retry_after(same) == {"Retry-After": "5"}
    assert retry_after(RunNotFound("r")) is None


def test_retry_after_is_at_least_a_second() -> None:
    assert TooManyRequests("TooManyRuns", "over", 0).retry_after_s == 1
    assert TooManyRequests("BudgetCeiling", "over", 3600).retry_after_s == 3600


def test_the_error_body_names_type_and_message() -> None:
    response = error_response(429, "TooManyRuns", "over", headers={"Retry-After": "5"})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert json.loads(bytes(response.body)) == {
        "error": {"type": "TooManyRuns", "message": "over", "problems": []}
    }
