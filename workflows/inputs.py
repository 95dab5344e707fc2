"""A workflow's one input, checked where a failure ends the run instead of its task.

Onward's workflows take one JSON object. ``temporal workflow start`` takes
``--input`` more than once, and any client may send more arguments: a run
method that takes one would then raise ``TypeError`` inside the workflow task,
which Temporal retries forever. So the workflows' ``__init__`` and ``run``
take extra arguments (``*extra``), ``__init__`` only records what it got, and
``run`` fails the run with an error naming the input.

Taking ``*extra`` makes the SDK decode arguments without type hints (as JSON
values), so the input is validated here, with the model's own validator; a
``ValidationError`` is each workflow's failure type, raised by ``run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from temporalio.exceptions import ApplicationError

from onward.errors import INVALID_INPUT, InvalidInput

__all__ = ["Given"]

M = TypeVar("M", bound=BaseModel)


@dataclass
class Given(Generic[M]):
    """What a workflow was started with: its input, if valid, and why not otherwise."""

    value: M | None
    """None: no input, ``null``, or an invalid one (``error`` says which)."""
    error: ValidationError | ApplicationError | None = None

    @classmethod
    def of(
        cls, model: type[M], workflow_type: str, args: tuple[Any, ...], missing: str
    ) -> Given[M]:
        """Check ``args``; never raises (``__init__`` must not, see the module).

        ``missing``: the error of no input, or ``null``.
        """
        if len(args) > 1:
            message = (
                f"input: {workflow_type} takes one JSON object as input, not {len(args)} "
                "(one --input)"
            )
            return cls(None, _invalid(message))
        value = args[0] if args else None
        if value is None:
            return cls(None, _invalid(missing))
        if isinstance(value, model):
            return cls(value)
        try:
            return cls(model.model_validate(value))
        except ValidationError as err:
            return cls(None, err)

    def check(self) -> None:
        """Raise the error that fails the run, if the input has one."""
        if self.error is not None:
            raise self.error

    def reason(self) -> str:
        """Why the input fails the run, on one line naming each field (the run's reason)."""
        if isinstance(self.error, ValidationError):
            return str(InvalidInput.from_validation(self.error))  # as a client says it
        return str(self.error).splitlines()[0]


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type=INVALID_INPUT, non_retryable=True)
