"""Classification protocols: prompt templates, answer parsing and mapping per image."""

from __future__ import annotations

from collections.abc import Callable

from service.protocols.base import (
    GenerationMode,
    ModelAnswer,
    Outcome,
    ParameterError,
    ProtocolRun,
    PromptRequest,
)
from service.protocols.runs import ChoiceRun, ClosedRun, MultilabelRun, OpenRun, RunContext

RunFactory = Callable[[RunContext], ProtocolRun]

# Protocol name -> run class. Protocols that need backend support beyond free
# generation register themselves here from their own module.
RUN_FACTORIES: dict[str, RunFactory] = {
    "open": OpenRun,
    "closed": ClosedRun,
    "choice": ChoiceRun,
    "multilabel": MultilabelRun,
}


def create_run(context: RunContext) -> ProtocolRun:
    """Return a new run of the request's protocol, or raise ParameterError."""
    protocol = context.params.protocol
    factory = RUN_FACTORIES.get(protocol)
    if factory is None:
        raise ParameterError("protocol", f"protocol {protocol!r} is not available with this backend")
    return factory(context)


__all__ = [
    "GenerationMode",
    "ModelAnswer",
    "Outcome",
    "ParameterError",
    "ProtocolRun",
    "PromptRequest",
    "RunContext",
    "RUN_FACTORIES",
    "create_run",
]

# Registers the constrained and score protocols into RUN_FACTORIES.
from service.protocols import decoding_runs  # noqa: E402,F401
