"""The retraining workflow's steps around ``pipeline``: what the Lambda task function runs.

``run_task({"step", "state"}, context)`` checks the event and the execution input, runs one
step on the typed state (``run_state``), adds the step's wall and CPU seconds, and names a
dependency's failure ``TransientError`` so the state machine retries it. The steps guard
the pointer (promote only what evaluate compared, roll back only what this run moved) and
verify that serving picked the new version up, asking it as API Gateway would
(``movierecs_core.apigw``). The heavy work is ``pipeline`` (extract, train, evaluate, promote).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from movierecs_core import apigw
from movierecs_core.config import Settings
from movierecs_serving import ModelStore
from movierecs_training import pipeline
from movierecs_training.failures import CanaryNotStarted, OWN, InvalidRequest, PointerMoved, ServingNotUpdated, TransientError, is_transient
from movierecs_training.request import validate_request
from movierecs_training.run_state import RetrainRequest, Run, State, Task

logger = logging.getLogger("movierecs.training")
logger.setLevel(logging.INFO)


def client_settings(service: str) -> dict[str, Any]:
    """boto3 settings of the training function: standard retries; a Lambda invoke may take 15 min."""
    return {"retries": 3, "retry_mode": "standard", "read_timeout": 900 if service == "lambda" else 60}


@dataclass(frozen=True)
class Context:
    """What a step works with: the settings and the environment's boto3 clients (by service)."""

    settings: Settings
    clients: MutableMapping[str, Any]

    @property
    def s3(self) -> Any:
        return self.clients["s3"]

    @property
    def bucket(self) -> str:
        return self.settings.require("model_bucket")

    @property
    def prefix(self) -> str:
        return self.settings.model_prefix or "models/"

    def store(self) -> ModelStore:
        return ModelStore(self.s3, self.bucket, prefix=self.prefix)


Step = Callable[[Run, RetrainRequest, Context], Run]


# --------------------------------------------------------------------------- steps
def extract(run: Run, request: RetrainRequest, ctx: Context) -> Run:
    """ClickHouse ratings + likes -> training/<run_id>/interactions.parquet."""
    out = pipeline.extract(dict(run), s3=ctx.s3, bucket=ctx.bucket,
                           clickhouse_url=ctx.settings.require("clickhouse_url"), prefix=ctx.prefix)
    if not out.get("rows"):
        raise RuntimeError("no interactions in ClickHouse (ratings and likes are empty): load data first")
    return {**run, **out}


def train(run: Run, request: RetrainRequest, ctx: Context) -> Run:
    """Parquet -> a new unpromoted version under models/<version>/ (manifest written last)."""
    params = request.get("hyperparameters") or None
    return pipeline.train(dict(run), s3=ctx.s3, bucket=ctx.bucket, prefix=ctx.prefix, params=params)


def evaluate(run: Run, request: RetrainRequest, ctx: Context) -> Run:
    """Candidate vs the promoted model on the same holdout; sets run.promote and run.reason."""
    out: Run = pipeline.evaluate(dict(run), s3=ctx.s3, bucket=ctx.bucket, prefix=ctx.prefix,
                                 tolerance=ctx.settings.promote_tolerance)
    out["promote"] = bool(out.get("promote"))  # a JSON boolean for the Choice state
    out["reason"] = str(out.get("reason") or ("not worse than the current model" if out["promote"] else "worse"))
    return out


def promote(run: Run, request: RetrainRequest, ctx: Context) -> Run:
    """Move models/CURRENT to the candidate, unless it moved since evaluation (PointerMoved);
    in canary mode start an experiment candidate vs current instead (the pointer stays)."""
    if not run.get("promote"):
        raise InvalidRequest("promote called for a candidate the evaluation did not approve")
    now = ctx.store().current_version()
    if now != run.get("current_version"):
        raise PointerMoved(f"models/CURRENT is {now!r}, but {run.get('candidate_version')!r} was evaluated "
                           f"against {run.get('current_version')!r}; retrain again to compare with the new model")
    canary = _canary(request, ctx)
    if canary and now:
        return start_canary(run, canary, ctx)
    return pipeline.promote(dict(run), s3=ctx.s3, bucket=ctx.bucket, prefix=ctx.prefix)


def _canary(request: RetrainRequest, ctx: Context) -> dict[str, Any] | None:
    """The experiment settings of this run: the request's ``canary``, else the CANARY_* settings."""
    s = ctx.settings
    canary = request.get("canary")
    if canary is None and s.canary_share > 0:
        canary = {"share": s.canary_share, "min_impressions": s.canary_min_impressions, "max_hours": s.canary_max_hours}
    return canary if canary and canary.get("share") else None


def start_canary(run: Run, canary: dict[str, Any], ctx: Context) -> Run:
    """Start the experiment current (control) vs candidate; the scheduled check ends it."""
    from movierecs_core import experiments
    from movierecs_core.errors import ApiError
    from movierecs_core.stores.postgres import Postgres

    db = Postgres(ctx.settings.require("postgres_dsn"))
    try:
        exp = experiments.start(db, ctx.store(), {"control": run["current_version"],
                                                  "candidate": run["candidate_version"], **canary})
    except ApiError as exc:
        raise CanaryNotStarted(f"the canary experiment did not start: {exc.message}") from None
    finally:
        db.close()
    return {**run, "promoted_version": str(run["current_version"]), "promoted_at": exp["created_at"],
            "canary_experiment_id": exp["experiment_id"]}


def served_version(ctx: Context, function: str) -> str:
    """The model version the serving function reports on GET /health (one direct invoke)."""
    answer = apigw.invoke(ctx.clients["lambda"], function, "GET", "/health",
                          headers={"accept": "application/json", "user-agent": "movierecs-retrain-verify"},
                          stage="retrain-verify")
    if answer.status != 200:
        raise ServingNotUpdated(f"GET /health on {function} failed: {str(answer.payload)[:300]}")
    return str((answer.body or {}).get("model_version") or "")


def verify(run: Run, request: RetrainRequest, ctx: Context) -> Run:
    """Reload check: the pointer names the candidate and serving reports it (it polls by itself)."""
    version = run["promoted_version"]
    pointer = ctx.store().current_version()
    if pointer != version:
        raise PointerMoved(f"models/CURRENT is {pointer!r} right after promoting {version!r}")
    function = ctx.settings.serving_function
    if not function:
        return {**run, "served_version": None, "verified": "pointer"}
    timeout = ctx.settings.verify_timeout_s
    t0 = time.monotonic()
    while True:
        seen = served_version(ctx, function)
        if seen == version:
            return {**run, "served_version": seen, "verified": "serving",
                    "served_after_s": round(time.monotonic() - t0, 3)}
        if time.monotonic() - t0 > timeout:
            raise ServingNotUpdated(f"serving still reports {seen!r} {timeout:g} s after promoting {version!r}")
        time.sleep(0.5)


def rollback(run: Run, request: RetrainRequest, ctx: Context) -> Run:
    """After a failed promotion/verification: point back at the previous version if we moved it."""
    candidate = run.get("candidate_version")
    previous = run.get("current_version")
    store = ctx.store()
    pointer = store.current_version()
    if pointer != candidate:
        return {**run, "rolled_back": False, "pointer": pointer, "note": "pointer does not name this run's candidate"}
    if not previous:
        return {**run, "rolled_back": False, "pointer": pointer, "note": "no previous version to return to"}
    store.promote(previous)
    return {**run, "rolled_back": True, "pointer": previous}


STEPS: dict[str, Step] = {
    "extract": extract,
    "train": train,
    "evaluate": evaluate,
    "promote": promote,
    "verify": verify,
    "rollback": rollback,
}


# --------------------------------------------------------------------------- one task
def parse_task(event: Any) -> tuple[str, State, RetrainRequest, Run]:
    """The step, the state, the checked request and the run of a task event (InvalidRequest if not)."""
    if not isinstance(event, dict) or event.get("step") not in STEPS or not isinstance(event.get("state"), dict):
        raise InvalidRequest(f"expected {{'step': one of {sorted(STEPS)}, 'state': {{...}}}}, got {str(event)[:200]}")
    task: Task = event  # type: ignore[assignment]  (checked above)
    state = task["state"]
    request = validate_request(state.get("request"))
    run = state.get("run")
    if not isinstance(run, dict):
        raise InvalidRequest("state.run must be an object (the state machine's Init state sets it)")
    return task["step"], state, request, run


def run_task(event: Any, ctx_factory: Callable[[], Context]) -> State:
    """Run ``event["step"]`` on ``event["state"]`` and return the next state."""
    step, state, request, run = parse_task(event)
    t0, c0 = time.perf_counter(), time.process_time()
    logger.info("step %s start run_id=%s", step, run.get("run_id"))
    try:
        out = STEPS[step](run, request, ctx_factory())
    except OWN:
        raise
    except Exception as e:
        if is_transient(e):
            logger.warning("step %s transient failure: %s", step, e)
            raise TransientError(f"{step}: {type(e).__name__}: {e}") from e
        raise
    seconds, cpu = round(time.perf_counter() - t0, 3), round(time.process_time() - c0, 3)
    logger.info("step %s done in %.3f s (%.3f CPU s) run_id=%s", step, seconds, cpu, run.get("run_id"))
    # wall and CPU seconds per step: CPU time (all threads) does not grow with other load on
    # the machine, so it tells what a step costs where wall time only tells what it took
    timings = {**(run.get("step_seconds") or {}), **(out.get("step_seconds") or {}), step: seconds}
    cpu_timings = {**(run.get("step_cpu_seconds") or {}), **(out.get("step_cpu_seconds") or {}), step: cpu}
    return {**state, "run": {**out, "step_seconds": timings, "step_cpu_seconds": cpu_timings}}
