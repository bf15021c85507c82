"""The execution input of a retraining run, checked before any work is done.

Range checks for the numeric hyperparameters an execution input may override
(``{"hyperparameters": {...}}``); other names go to the training code, whose
``Params.from_dict`` refuses unknown ones (then the Train state fails).
"""
from __future__ import annotations

from typing import Any

from movierecs_training.failures import InvalidRequest
from movierecs_training.run_state import REQUEST_KEYS, RetrainRequest

HYPERPARAMETERS: dict[str, tuple[type, float, float]] = {
    "factors": (int, 1, 1024),
    "iterations": (int, 1, 200),
    "regularization": (float, 0.0, 1e6),
    "alpha": (float, 0.0, 1e6),
}


def _hyperparameter(name: str, value: Any) -> Any:
    if name not in HYPERPARAMETERS:
        # names and values the training code itself checks (weighting, like_weight, ...)
        if not isinstance(value, (str, int, float, bool)):
            raise InvalidRequest(f"hyperparameter {name!r} must be a number, string or boolean")
        return value
    kind, lo, hi = HYPERPARAMETERS[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
        raise InvalidRequest(f"hyperparameter {name!r} must be a {kind.__name__}, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidRequest(f"hyperparameter {name!r}={value!r} is outside [{lo:g}, {hi:g}]")
    return kind(value)


def validate_request(request: Any) -> RetrainRequest:
    """The execution input with checked hyperparameters; InvalidRequest says what is wrong."""
    if request is None:
        return {}
    if not isinstance(request, dict):
        raise InvalidRequest(f"execution input must be a JSON object, got {type(request).__name__}")
    unknown = sorted(set(request) - REQUEST_KEYS)
    if unknown:
        raise InvalidRequest(f"unknown execution input keys {unknown}; allowed: {sorted(REQUEST_KEYS)}")
    canary = request.get("canary")
    if canary is not None and (not isinstance(canary, dict)
                               or set(canary) - {"share", "min_impressions", "max_hours", "alpha"}):
        raise InvalidRequest("'canary' must be an object such as {\"share\": 0.1, \"max_hours\": 24}")
    hp = request.get("hyperparameters")
    if hp is None:
        return RetrainRequest(**request)
    if not isinstance(hp, dict):
        raise InvalidRequest("'hyperparameters' must be an object such as {\"factors\": 64}")
    return RetrainRequest(**{**request, "hyperparameters": {n: _hyperparameter(n, v) for n, v in hp.items()}})
