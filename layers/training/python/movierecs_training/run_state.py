"""The retraining workflow's state, as types: what each step reads and adds.

The state machine (statemachines/retrain.asl.json) passes one JSON document from state to
state: ``{"request": <execution input>, "run": <what the steps found so far>}``. Each step
returns the state with ``run`` grown by its own results, so a state's output is the next
state's input and nothing but S3 is shared between steps. The ASL reads some of these keys
by path (``$.run.promote`` in the Choice state, ``$.run.reason`` as the failure's cause);
``tests/unit/test_training_handlers.py`` checks that every such path names a field below, so
a renamed key fails in the unit tests instead of inside Step Functions.

TypedDicts, not dataclasses: the document is JSON on the wire, and the steps' outputs are
merged into it, so a typed dict is exactly what travels.
"""
from __future__ import annotations

from typing import Any, TypedDict


class RetrainRequest(TypedDict, total=False):
    """The execution input (POST /admin/retrain, the schedule, or by hand)."""

    trigger: str
    hyperparameters: dict[str, Any]
    # start an experiment instead of promoting: {"share", "min_impressions"?, "max_hours"?}
    # (default: the CANARY_* settings; {"share": 0} promotes at once)
    canary: dict[str, Any]
    source: str
    requested_by: str
    requested_at: str


REQUEST_KEYS = frozenset(RetrainRequest.__annotations__)


class Extracted(TypedDict, total=False):
    """extract: ClickHouse ratings + likes -> training/<run_id>/interactions.parquet."""

    run_id: str
    interactions_key: str
    rows: int
    users: int
    items: int
    ratings: int
    likes: int
    min_ts: str | None
    max_ts: str | None


class Trained(TypedDict, total=False):
    """train: a new, unpromoted version models/<candidate_version>/."""

    candidate_version: str
    train_seconds: float


class Evaluated(TypedDict, total=False):
    """evaluate: candidate vs the promoted model on the same holdout; the ASL's Choice reads promote."""

    current_version: str | None
    candidate_metrics: dict[str, Any]
    current_metrics: dict[str, Any] | None
    tolerance: float
    decided_by: str
    promote: bool
    reason: str


class Promoted(TypedDict, total=False):
    """promote: models/CURRENT names the candidate."""

    promoted_version: str
    promoted_at: str
    # canary mode: the pointer stays (promoted_version is the control) and this experiment runs
    canary_experiment_id: str


class Verified(TypedDict, total=False):
    """verify: the pointer names the candidate and serving reports it (or only the pointer)."""

    served_version: str | None
    verified: str  # "serving" or "pointer"
    served_after_s: float


class RolledBack(TypedDict, total=False):
    """rollback: the pointer is back at the previous version, if this run had moved it."""

    rolled_back: bool
    pointer: str | None
    note: str


class Run(Extracted, Trained, Evaluated, Promoted, Verified, RolledBack, total=False):
    """Everything the steps found so far, plus each step's wall and CPU seconds."""

    step_seconds: dict[str, float]
    step_cpu_seconds: dict[str, float]


class StepError(TypedDict):
    """What a Catch stores at ``$.error`` (read by the Fail state)."""

    Error: str
    Cause: str


class RollbackResult(TypedDict):
    """What the Rollback state stores at ``$.rollback``."""

    result: Run


class State(TypedDict, total=False):
    """The document every state of the workflow receives and returns."""

    request: RetrainRequest
    run: Run
    error: StepError
    rollback: RollbackResult
    rollback_error: StepError


class Task(TypedDict):
    """The training function's event: which step, on which state."""

    step: str
    state: State
