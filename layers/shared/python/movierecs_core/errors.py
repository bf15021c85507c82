"""The one error type handlers raise for a client-visible failure.

Every API answer that is not a success has the contract's shape ``{"error": "..."}``; raising
``ApiError(status, message)`` anywhere below a handler produces exactly that. The stores raise
the neutral ``stores.Unavailable`` instead; ``from_unavailable`` is the one place it becomes
HTTP (503), used by the web glue and the read side.
"""
from __future__ import annotations

from .stores import Unavailable


class ApiError(Exception):
    """An HTTP error with a human message saying what went wrong and what to do."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code

    def body(self) -> dict[str, str]:
        """The contract's error body; ``code`` (a documented extension) lets a client tell
        apart the errors it can act on, such as a stale paging cursor."""
        return {"error": self.message} if self.code is None else {"error": self.message, "code": self.code}


def bad_request(message: str) -> ApiError:
    """400: the request itself is wrong."""
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    """404: a well-formed id that does not exist."""
    return ApiError(404, message)


def unavailable(message: str) -> ApiError:
    """503: a dependency is down; retrying later may work."""
    return ApiError(503, message)


def from_unavailable(exc: Unavailable) -> ApiError:
    """503 with the store's own message: nothing was done, retrying later may work."""
    return unavailable(str(exc))
