"""Domain errors, each carrying the gRPC status the front ends map it to."""

from __future__ import annotations

import grpc


class DecisionError(Exception):
    """Base of errors a caller can act on; ``message`` names the field and what is accepted."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DecisionError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(DecisionError):
    status = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(DecisionError):
    """The request contradicts what is already stored (an outcome once final); retrying it cannot succeed."""

    status = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(DecisionError):
    """A dependency failed and nothing was stored: the caller should retry."""

    status = grpc.StatusCode.UNAVAILABLE
