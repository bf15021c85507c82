"""training: the task function of the retraining state machine (statemachines/retrain.asl.json).

Thin on purpose: the work lives in `movierecs_training.pipeline` (extract, train, evaluate,
promote) and `movierecs_serving.ModelStore` (the pointer). This module only shapes the state,
checks the execution input, guards the pointer and names errors so the state machine can
tell a transient failure (retried) from a real one (caught, execution fails).

The state machine calls one function with `{"step": <name>, "state": <state>}` and the
state is `{"request": <execution input>, "run": <pipeline dict>}`; each step returns the
state with `run` replaced by the step's output, so a state's output is the next state's
input and nothing but S3 is shared between steps. One function (not one per step) because
on AWS the training code ships as one container image (docs/RETRAINING.md).
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any, Callable

logger = logging.getLogger("movierecs.training")
logger.setLevel(logging.INFO)

#: Range checks for the numeric hyperparameters an execution input may override
#: (`{"hyperparameters": {...}}`), done before any work; other names go to the training code,
#: whose `Params.from_dict` refuses unknown ones (then the Train state fails).
HYPERPARAMETERS: dict[str, tuple[type, float, float]] = {
    "factors": (int, 1, 1024),
    "iterations": (int, 1, 200),
    "regularization": (float, 0.0, 1e6),
    "alpha": (float, 0.0, 1e6),
}
REQUEST_KEYS = {"trigger", "hyperparameters", "source", "requested_by", "requested_at"}


class InvalidRequest(ValueError):
    """The execution input is not a retrain request this workflow understands (not retried)."""


class TransientError(RuntimeError):
    """A dependency (ClickHouse, S3, Lambda) was briefly unreachable; the state machine retries."""


class PointerMoved(RuntimeError):
    """models/CURRENT changed since evaluation: the candidate was compared with another model."""


class ServingNotUpdated(RuntimeError):
    """The serving function did not report the promoted version in time (promotion rolled back)."""


# --------------------------------------------------------------------------- configuration
def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None or value == "":
        raise RuntimeError(f"environment variable {name} is not set (template.yaml sets it)")
    return value


def _bucket() -> str:
    return _env("MODEL_BUCKET")


def _prefix() -> str:
    return _env("MODEL_PREFIX", "models/")


def _tolerance() -> float:
    raw = _env("PROMOTE_TOLERANCE", "0.02")
    try:
        value = float(raw)
    except ValueError:
        raise RuntimeError(f"PROMOTE_TOLERANCE={raw!r} is not a number (e.g. 0.02)") from None
    if not 0.0 <= value < 1.0:
        raise RuntimeError(f"PROMOTE_TOLERANCE={raw!r} must be in [0, 1)")
    return value


_clients: dict[str, Any] = {}


def _client(service: str) -> Any:
    """One boto3 client per service per environment; path-style S3 for an emulator endpoint."""
    if service not in _clients:
        from movierecs_core.stores import aws

        _clients[service] = aws.client(service, retries=3, retry_mode="standard",
                                       read_timeout=900 if service == "lambda" else 60)
    return _clients[service]


def _store() -> Any:
    from movierecs_serving import ModelStore

    return ModelStore(_client("s3"), _bucket(), prefix=_prefix())


# --------------------------------------------------------------------------- request
def validate_request(request: Any) -> dict[str, Any]:
    """The execution input as a dict with checked hyperparameters; InvalidRequest says what is wrong."""
    if request is None:
        return {}
    if not isinstance(request, dict):
        raise InvalidRequest(f"execution input must be a JSON object, got {type(request).__name__}")
    unknown = sorted(set(request) - REQUEST_KEYS)
    if unknown:
        raise InvalidRequest(f"unknown execution input keys {unknown}; allowed: {sorted(REQUEST_KEYS)}")
    hp = request.get("hyperparameters")
    if hp is None:
        return dict(request)
    if not isinstance(hp, dict):
        raise InvalidRequest("'hyperparameters' must be an object such as {\"factors\": 64}")
    checked: dict[str, Any] = {}
    for name, value in hp.items():
        if name not in HYPERPARAMETERS:
            # names and values the training code itself checks (weighting, like_weight, ...)
            if not isinstance(value, (str, int, float, bool)):
                raise InvalidRequest(f"hyperparameter {name!r} must be a number, string or boolean")
            checked[name] = value
            continue
        kind, lo, hi = HYPERPARAMETERS[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
            raise InvalidRequest(f"hyperparameter {name!r} must be a {kind.__name__}, got {value!r}")
        if not lo <= value <= hi:
            raise InvalidRequest(f"hyperparameter {name!r}={value!r} is outside [{lo:g}, {hi:g}]")
        checked[name] = kind(value)
    return {**request, "hyperparameters": checked}


# --------------------------------------------------------------------------- steps
def step_extract(run: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """ClickHouse ratings + likes -> training/<run_id>/interactions.parquet."""
    from movierecs_training import pipeline

    out = pipeline.extract(dict(run), s3=_client("s3"), bucket=_bucket(),
                           clickhouse_url=_env("CLICKHOUSE_URL"), prefix=_prefix())
    if not out.get("rows"):
        raise RuntimeError("no interactions in ClickHouse (ratings and likes are empty): load data first")
    return {**run, **out}


def step_train(run: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Parquet -> a new unpromoted version under models/<version>/ (manifest written last)."""
    from movierecs_training import pipeline

    params = request.get("hyperparameters") or None
    return pipeline.train(dict(run), s3=_client("s3"), bucket=_bucket(), prefix=_prefix(), params=params)


def step_evaluate(run: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Candidate vs the promoted model on the same holdout; sets run.promote and run.reason."""
    from movierecs_training import pipeline

    out = pipeline.evaluate(dict(run), s3=_client("s3"), bucket=_bucket(), prefix=_prefix(),
                            tolerance=_tolerance())
    out["promote"] = bool(out.get("promote"))
    out["reason"] = str(out.get("reason") or ("not worse than the current model" if out["promote"] else "worse"))
    return out


def step_promote(run: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Move models/CURRENT to the candidate, unless it moved since evaluation (PointerMoved)."""
    from movierecs_training import pipeline

    if not run.get("promote"):
        raise InvalidRequest("promote called for a candidate the evaluation did not approve")
    now = _store().current_version()
    if now != run.get("current_version"):
        raise PointerMoved(f"models/CURRENT is {now!r}, but {run.get('candidate_version')!r} was evaluated "
                           f"against {run.get('current_version')!r}; retrain again to compare with the new model")
    return pipeline.promote(dict(run), s3=_client("s3"), bucket=_bucket(), prefix=_prefix())


def health_event() -> dict[str, Any]:
    """An API Gateway (REST, proxy) event for GET /health, as the serving function receives it."""
    return {
        "resource": "/health", "path": "/health", "httpMethod": "GET",
        "headers": {"accept": "application/json", "user-agent": "movierecs-retrain-verify"},
        "multiValueHeaders": {"accept": ["application/json"], "user-agent": ["movierecs-retrain-verify"]},
        "queryStringParameters": None, "multiValueQueryStringParameters": None,
        "pathParameters": None, "stageVariables": None, "body": None, "isBase64Encoded": False,
        "requestContext": {"resourcePath": "/health", "httpMethod": "GET", "path": "/health",
                           "stage": "retrain-verify", "requestId": str(uuid.uuid4()),
                           "identity": {"sourceIp": "127.0.0.1"}},
    }


def served_version(function: str) -> str:
    """The model version the serving function reports on GET /health (one direct invoke)."""
    resp = _client("lambda").invoke(FunctionName=function, Payload=json.dumps(health_event()).encode())
    payload = json.loads(resp["Payload"].read() or b"null")
    if resp.get("FunctionError") or not isinstance(payload, dict) or int(payload.get("statusCode", 500)) != 200:
        raise ServingNotUpdated(f"GET /health on {function} failed: {str(payload)[:300]}")
    body = payload.get("body") or "{}"
    return str(json.loads(body).get("model_version") or "")


def step_verify(run: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Reload check: the pointer names the candidate and serving reports it (it polls by itself)."""
    version = run["promoted_version"]
    pointer = _store().current_version()
    if pointer != version:
        raise PointerMoved(f"models/CURRENT is {pointer!r} right after promoting {version!r}")
    function = os.environ.get("SERVING_FUNCTION", "")
    if not function:
        return {**run, "served_version": None, "verified": "pointer"}
    timeout = float(os.environ.get("VERIFY_TIMEOUT_S", "30"))
    t0 = time.monotonic()
    seen = ""
    while True:
        seen = served_version(function)
        if seen == version:
            return {**run, "served_version": seen, "verified": "serving",
                    "served_after_s": round(time.monotonic() - t0, 3)}
        if time.monotonic() - t0 > timeout:
            raise ServingNotUpdated(f"serving still reports {seen!r} {timeout:g} s after promoting {version!r}")
        time.sleep(0.5)


def step_rollback(run: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """After a failed promotion/verification: point back at the previous version if we moved it."""
    candidate = run.get("candidate_version")
    previous = run.get("current_version")
    store = _store()
    pointer = store.current_version()
    if pointer != candidate:
        return {**run, "rolled_back": False, "pointer": pointer, "note": "pointer does not name this run's candidate"}
    if not previous:
        return {**run, "rolled_back": False, "pointer": pointer, "note": "no previous version to return to"}
    store.promote(previous)
    return {**run, "rolled_back": True, "pointer": previous}


STEPS: dict[str, Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]] = {
    "extract": step_extract,
    "train": step_train,
    "evaluate": step_evaluate,
    "promote": step_promote,
    "verify": step_verify,
    "rollback": step_rollback,
}


# --------------------------------------------------------------------------- errors
def is_transient(e: BaseException) -> bool:
    """Connection trouble and throttling: worth a retry. Everything else is a real failure."""
    if isinstance(e, (ConnectionError, TimeoutError)):
        return True
    name = type(e).__name__
    if name in {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                "OperationalError", "ProtocolError", "NewConnectionError", "MaxRetryError"}:
        return True
    code = str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) if isinstance(getattr(e, "response", None), dict) else ""
    return code in {"Throttling", "ThrottlingException", "SlowDown", "ServiceUnavailable", "InternalError",
                    "RequestTimeout", "TooManyRequestsException"}


# --------------------------------------------------------------------------- entry point
def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point: run `event["step"]` on `event["state"]`, return the next state."""
    if not isinstance(event, dict) or event.get("step") not in STEPS or not isinstance(event.get("state"), dict):
        raise InvalidRequest(f"expected {{'step': one of {sorted(STEPS)}, 'state': {{...}}}}, got {str(event)[:200]}")
    step, state = event["step"], event["state"]
    request = validate_request(state.get("request"))
    run = state.get("run")
    if not isinstance(run, dict):
        raise InvalidRequest("state.run must be an object (the state machine's Init state sets it)")
    t0, c0 = time.perf_counter(), time.process_time()
    logger.info("step %s start run_id=%s", step, run.get("run_id"))
    try:
        out = STEPS[step](run, request)
    except (InvalidRequest, PointerMoved, ServingNotUpdated):
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
