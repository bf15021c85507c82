"""training: the task function of the retraining state machine (statemachines/retrain.asl.json).

The state machine calls this one function with ``{"step": <name>, "state": <state>}``; the
steps, the request checks and the naming of errors live in ``movierecs_training.steps``
(the state's types: ``movierecs_training.run_state``). One function, not one per step,
because on AWS the training code ships as one container image (docs/RETRAINING.md).
"""
from __future__ import annotations

from typing import Any

from movierecs_core.config import Settings
from movierecs_core.stores.aws import Clients
from movierecs_training.failures import CanaryNotStarted, InvalidRequest, PointerMoved, ServingNotUpdated, TransientError, is_transient
from movierecs_training.request import validate_request
from movierecs_training.run_state import State
from movierecs_training.steps import STEPS, Context, client_settings, run_task

__all__ = ["STEPS", "CanaryNotStarted", "InvalidRequest", "PointerMoved", "ServingNotUpdated", "TransientError", "handler",
           "is_transient", "validate_request"]

_clients = Clients(client_settings)  # one boto3 client per service per execution environment


def handler(event: dict[str, Any], context: Any = None) -> State:
    """Lambda entry point: run ``event["step"]`` on ``event["state"]``, return the next state."""
    return run_task(event, lambda: Context(Settings.from_env(), _clients))
