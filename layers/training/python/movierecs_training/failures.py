"""The retraining function's errors, named so the state machine can tell them apart.

A ``TransientError`` is retried by every Task state (``Retry`` on its name); everything else
is caught (``Catch`` States.ALL) and ends the execution failed, with the previous model still
served. ``is_transient`` decides which failures of a dependency are worth a retry.
"""
from __future__ import annotations

from movierecs_core.stores import Unavailable


class InvalidRequest(ValueError):
    """The execution input is not a retrain request this workflow understands (not retried)."""


class TransientError(RuntimeError):
    """A dependency (ClickHouse, S3, Lambda) was briefly unreachable; the state machine retries."""


class PointerMoved(RuntimeError):
    """models/CURRENT changed since evaluation: the candidate was compared with another model."""


class ServingNotUpdated(RuntimeError):
    """The serving function did not report the promoted version in time (promotion rolled back)."""


class CanaryNotStarted(RuntimeError):
    """The canary experiment could not start (another one runs, or its settings are wrong)."""


#: Errors of the workflow's own making: raised as they are, never reclassified.
OWN = (InvalidRequest, PointerMoved, ServingNotUpdated, CanaryNotStarted)

#: Client exceptions (botocore, urllib3, clickhouse-connect, pg8000) that mean "could not
#: reach it", matched by name: the training layer does not import those libraries to ask.
_TRANSIENT_NAMES = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                              "ConnectionClosedError", "OperationalError", "ProtocolError", "NewConnectionError",
                              "MaxRetryError"})
#: AWS error codes that mean "try again".
_TRANSIENT_CODES = frozenset({"Throttling", "ThrottlingException", "SlowDown", "ServiceUnavailable", "InternalError",
                              "RequestTimeout", "TooManyRequestsException"})


def _aws_code(e: BaseException) -> str:
    response = getattr(e, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def is_transient(e: BaseException) -> bool:
    """Connection trouble and throttling: worth a retry. Everything else is a real failure."""
    if isinstance(e, (ConnectionError, TimeoutError, Unavailable)):
        return True
    return type(e).__name__ in _TRANSIENT_NAMES or _aws_code(e) in _TRANSIENT_CODES
