"""Unit tests of the retraining task function (functions/training/app.py) and the state machine's shape.

Fakes only: an in-memory S3 behind the real ModelStore, a fake serving function, and the
pipeline's steps replaced by recording stand-ins. What is checked is the handler's own job:
shaping the state, refusing bad input, guarding the pointer, naming errors for the state
machine, and that every failure path of the ASL ends in a Fail state.
"""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASL = ROOT / "statemachines" / "retrain.asl.json"
V0 = "20261127T000000Z-00000000"
V1 = "20261127T010000Z-11111111"


def _load_app():
    spec = importlib.util.spec_from_file_location("training_app", ROOT / "functions" / "training" / "app.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


app = _load_app()
from movierecs_training import steps  # noqa: E402  (the module the handler runs)


# --------------------------------------------------------------------------- fakes
class FakeClientError(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.response = {"Error": {"Code": code}}


class FakeS3:
    """The few S3 calls ModelStore makes, over a dict."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []

    def get_object(self, Bucket: str, Key: str, IfNoneMatch: str | None = None) -> dict[str, Any]:
        if Key not in self.objects:
            raise FakeClientError("NoSuchKey")
        etag = f'"{hash(self.objects[Key])}"'
        if IfNoneMatch == etag:
            raise FakeClientError("304")
        return {"Body": io.BytesIO(self.objects[Key]), "ETag": etag}

    def put_object(self, Bucket: str, Key: str, Body: bytes, **_: Any) -> dict[str, Any]:
        self.objects[Key] = Body
        self.puts.append(Key)
        return {}

    def list_objects_v2(self, Bucket: str, Prefix: str, **_: Any) -> dict[str, Any]:
        return {"Contents": [{"Key": k} for k in sorted(self.objects) if k.startswith(Prefix)], "IsTruncated": False}

    def publish(self, version: str) -> None:
        self.objects[f"models/{version}/manifest.json"] = json.dumps({"version": version, "files": {}}).encode()

    def point(self, version: str) -> None:
        self.objects["models/CURRENT"] = json.dumps({"version": version, "promoted_at": "x"}).encode()

    def pointer(self) -> str | None:
        raw = self.objects.get("models/CURRENT")
        return json.loads(raw)["version"] if raw else None


class FakeLambda:
    """A serving function whose GET /health reports the versions given, one per call."""

    def __init__(self, versions: list[str], status: int = 200) -> None:
        self.versions = versions
        self.status = status
        self.events: list[dict[str, Any]] = []

    def invoke(self, FunctionName: str, Payload: bytes) -> dict[str, Any]:
        self.events.append(json.loads(Payload))
        v = self.versions.pop(0) if len(self.versions) > 1 else self.versions[0]
        body = json.dumps({"status": "ok", "model_version": v})
        return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps({"statusCode": self.status, "body": body}).encode())}


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> FakeS3:
    fake = FakeS3()
    monkeypatch.setattr(app, "_clients", {"s3": fake})
    monkeypatch.setenv("MODEL_BUCKET", "models-bucket")
    monkeypatch.setenv("MODEL_PREFIX", "models/")
    monkeypatch.setenv("CLICKHOUSE_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("PROMOTE_TOLERANCE", "0.02")
    monkeypatch.delenv("SERVING_FUNCTION", raising=False)
    return fake


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Replace the pipeline's steps by stand-ins that record their calls."""
    from movierecs_training import pipeline as real

    calls: dict[str, list] = {"extract": [], "train": [], "evaluate": [], "promote": []}

    def extract(event: dict, **kw: Any) -> dict:
        calls["extract"].append((event, kw))
        return {**event, "interactions_key": f"training/{event['run_id']}/interactions.parquet", "rows": 10, "users": 2, "items": 5}

    def train(event: dict, **kw: Any) -> dict:
        calls["train"].append((event, kw))
        return {**event, "candidate_version": V1, "train_seconds": 0.1}

    def evaluate(event: dict, **kw: Any) -> dict:
        calls["evaluate"].append((event, kw))
        return {**event, "current_version": V0, "promote": 1, "reason": "candidate map@10 0.03 >= current 0.02"}

    def promote(event: dict, *, s3: Any, bucket: str, prefix: str) -> dict:
        calls["promote"].append((event, {"bucket": bucket}))
        s3.put_object(Bucket=bucket, Key=prefix + "CURRENT", Body=json.dumps({"version": event["candidate_version"]}).encode())
        return {**event, "promoted_version": event["candidate_version"], "promoted_at": "now"}

    for name, fn in [("extract", extract), ("train", train), ("evaluate", evaluate), ("promote", promote)]:
        monkeypatch.setattr(real, name, fn)
    return calls


def state(run: dict | None = None, request: Any = None) -> dict:
    return {"request": {} if request is None else request, "run": {"run_id": "exec-1", **(run or {})}}


# --------------------------------------------------------------------------- request validation
def test_request_defaults_and_hyperparameters_are_checked() -> None:
    assert app.validate_request(None) == {}
    assert app.validate_request({"trigger": "schedule"}) == {"trigger": "schedule"}
    ok = app.validate_request({"hyperparameters": {"factors": 2.0, "iterations": 1, "weighting": "binary"}})
    assert ok["hyperparameters"] == {"factors": 2, "iterations": 1, "weighting": "binary"}
    assert isinstance(ok["hyperparameters"]["factors"], int)


@pytest.mark.parametrize(
    "request_, words",
    [
        ([1, 2], "JSON object"),
        ({"force_worse": True}, "unknown execution input keys"),
        ({"hyperparameters": [1]}, "must be an object"),
        ({"hyperparameters": {"factors": 0}}, "outside"),
        ({"hyperparameters": {"factors": 2.5}}, "must be a int"),
        ({"hyperparameters": {"iterations": True}}, "must be a int"),
        ({"hyperparameters": {"alpha": "big"}}, "must be a float"),
        ({"hyperparameters": {"weighting": {"x": 1}}}, "number, string or boolean"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(request_: Any, words: str) -> None:
    with pytest.raises(app.InvalidRequest, match=words):
        app.validate_request(request_)


def test_handler_refuses_a_malformed_event_before_any_work(s3: FakeS3, pipeline: dict) -> None:
    for event in [None, {}, {"step": "nope", "state": {}}, {"step": "extract", "state": []}, {"step": "extract", "state": {"request": {}}}]:
        with pytest.raises(app.InvalidRequest):
            app.handler(event)
    with pytest.raises(app.InvalidRequest, match="outside"):
        app.handler({"step": "extract", "state": state(request={"hyperparameters": {"factors": -1}})})
    assert pipeline["extract"] == []


# --------------------------------------------------------------------------- state shaping
def test_each_step_keeps_the_request_and_replaces_run(s3: FakeS3, pipeline: dict) -> None:
    req = {"trigger": "admin", "hyperparameters": {"factors": 8}}
    st = app.handler({"step": "extract", "state": state(request=req)})
    assert st["request"] == req
    assert st["run"]["interactions_key"] == "training/exec-1/interactions.parquet"
    assert set(st["run"]["step_seconds"]) == {"extract"}
    event, kw = pipeline["extract"][0]
    assert event == {"run_id": "exec-1"}
    assert kw == {"s3": s3, "bucket": "models-bucket", "clickhouse_url": "http://127.0.0.1:1", "prefix": "models/"}

    st = app.handler({"step": "train", "state": st})
    assert pipeline["train"][0][1]["params"] == {"factors": 8}
    assert st["run"]["candidate_version"] == V1
    assert set(st["run"]["step_seconds"]) == set(st["run"]["step_cpu_seconds"]) == {"extract", "train"}
    assert all(v >= 0 for v in st["run"]["step_cpu_seconds"].values())

    st = app.handler({"step": "evaluate", "state": st})
    assert st["run"]["promote"] is True  # normalised to a JSON boolean for the Choice state
    assert pipeline["evaluate"][0][1]["tolerance"] == pytest.approx(0.02)


def test_train_without_overrides_passes_no_params(s3: FakeS3, pipeline: dict) -> None:
    app.handler({"step": "train", "state": state({"interactions_key": "k"})})
    assert pipeline["train"][0][1]["params"] is None


def test_empty_extract_fails_with_a_hint(s3: FakeS3, pipeline: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from movierecs_training import pipeline as real

    monkeypatch.setattr(real, "extract", lambda event, **kw: {**event, "rows": 0})
    with pytest.raises(RuntimeError, match="load data first"):
        app.handler({"step": "extract", "state": state()})


def test_bad_tolerance_setting_is_reported(s3: FakeS3, pipeline: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMOTE_TOLERANCE", "two percent")
    with pytest.raises(RuntimeError, match="PROMOTE_TOLERANCE"):
        app.handler({"step": "evaluate", "state": state({"candidate_version": V1})})


def test_evaluate_without_a_reason_gets_one(s3: FakeS3, pipeline: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from movierecs_training import pipeline as real

    monkeypatch.setattr(real, "evaluate", lambda event, **kw: {**event, "promote": False})
    st = app.handler({"step": "evaluate", "state": state({"candidate_version": V1})})
    assert st["run"]["promote"] is False and st["run"]["reason"]


# --------------------------------------------------------------------------- pointer
def test_promote_moves_the_pointer_when_it_did_not_move(s3: FakeS3, pipeline: dict) -> None:
    s3.point(V0)
    st = app.handler({"step": "promote", "state": state({"candidate_version": V1, "current_version": V0, "promote": True})})
    assert st["run"]["promoted_version"] == V1
    assert s3.pointer() == V1


def test_promote_refuses_when_the_pointer_moved_since_evaluation(s3: FakeS3, pipeline: dict) -> None:
    other = "20261127T020000Z-22222222"
    s3.point(other)
    with pytest.raises(app.PointerMoved, match=other):
        app.handler({"step": "promote", "state": state({"candidate_version": V1, "current_version": V0, "promote": True})})
    assert s3.pointer() == other and pipeline["promote"] == []


def test_promote_refuses_a_rejected_candidate(s3: FakeS3, pipeline: dict) -> None:
    with pytest.raises(app.InvalidRequest):
        app.handler({"step": "promote", "state": state({"candidate_version": V1, "promote": False})})


def test_verify_waits_until_serving_reports_the_version(s3: FakeS3, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.point(V1)
    fake = FakeLambda([V0, V0, V1])
    app._clients["lambda"] = fake
    monkeypatch.setenv("SERVING_FUNCTION", "movierecs-recommend")
    monkeypatch.setattr(steps.time, "sleep", lambda s: None)
    st = app.handler({"step": "verify", "state": state({"promoted_version": V1})})
    assert st["run"]["served_version"] == V1 and st["run"]["verified"] == "serving"
    assert len(fake.events) == 3
    ev = fake.events[0]
    assert ev["requestContext"]["resourcePath"] == "/health" and ev["httpMethod"] == "GET"


def test_verify_gives_up_when_serving_never_switches(s3: FakeS3, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.point(V1)
    app._clients["lambda"] = FakeLambda([V0])
    monkeypatch.setenv("SERVING_FUNCTION", "movierecs-recommend")
    monkeypatch.setenv("VERIFY_TIMEOUT_S", "0")
    monkeypatch.setattr(steps.time, "sleep", lambda s: None)
    with pytest.raises(app.ServingNotUpdated, match=V0):
        app.handler({"step": "verify", "state": state({"promoted_version": V1})})


def test_verify_reports_a_broken_serving_function(s3: FakeS3, monkeypatch: pytest.MonkeyPatch) -> None:
    s3.point(V1)
    app._clients["lambda"] = FakeLambda([V1], status=500)
    monkeypatch.setenv("SERVING_FUNCTION", "movierecs-recommend")
    with pytest.raises(app.ServingNotUpdated, match="failed"):
        app.handler({"step": "verify", "state": state({"promoted_version": V1})})


def test_verify_without_a_serving_function_checks_the_pointer(s3: FakeS3) -> None:
    s3.point(V0)
    with pytest.raises(app.PointerMoved):
        app.handler({"step": "verify", "state": state({"promoted_version": V1})})
    s3.point(V1)
    assert app.handler({"step": "verify", "state": state({"promoted_version": V1})})["run"]["verified"] == "pointer"


def test_rollback_restores_the_previous_version_only_if_we_moved_it(s3: FakeS3) -> None:
    s3.publish(V0)
    s3.point(V1)
    st = app.handler({"step": "rollback", "state": state({"candidate_version": V1, "current_version": V0})})
    assert st["run"]["rolled_back"] is True and s3.pointer() == V0

    other = "20261127T020000Z-22222222"
    s3.point(other)
    st = app.handler({"step": "rollback", "state": state({"candidate_version": V1, "current_version": V0})})
    assert st["run"]["rolled_back"] is False and s3.pointer() == other

    s3.point(V1)
    st = app.handler({"step": "rollback", "state": state({"candidate_version": V1, "current_version": None})})
    assert st["run"]["rolled_back"] is False and s3.pointer() == V1


# --------------------------------------------------------------------------- errors
def test_connection_trouble_becomes_a_retryable_transient_error(s3: FakeS3, pipeline: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from movierecs_training import pipeline as real

    def refuse(event: dict, **kw: Any) -> dict:
        raise ConnectionRefusedError("connection refused: 127.0.0.1:18123")

    monkeypatch.setattr(real, "extract", refuse)
    with pytest.raises(app.TransientError, match="extract: ConnectionRefusedError"):
        app.handler({"step": "extract", "state": state()})
    assert type(app.TransientError("x")).__name__ == "TransientError"  # the name the ASL retries on


def test_real_failures_keep_their_type(s3: FakeS3, pipeline: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from movierecs_training import pipeline as real

    def bad(event: dict, **kw: Any) -> dict:
        raise ValueError("weighting must be one of ('binary', 'positive', 'rating')")

    monkeypatch.setattr(real, "train", bad)
    with pytest.raises(ValueError, match="weighting"):
        app.handler({"step": "train", "state": state()})
    assert app.is_transient(FakeClientError("SlowDown"))
    assert not app.is_transient(FakeClientError("AccessDenied"))
    assert not app.is_transient(KeyError("x"))


# --------------------------------------------------------------------------- the state machine
def _asl() -> dict:
    return json.loads(ASL.read_text())


def _reachable_ends(states: dict, name: str, seen: set[str] | None = None) -> set[str]:
    """Terminal states reachable from `name` (following Next, Default, Choices and Catch)."""
    seen = seen if seen is not None else set()
    if name in seen:
        return set()
    seen.add(name)
    s = states[name]
    if s["Type"] in ("Fail", "Succeed") or s.get("End"):
        return {name}
    nxt = [s.get("Next"), s.get("Default")] + [c["Next"] for c in s.get("Choices", [])] + [c["Next"] for c in s.get("Catch", [])]
    out: set[str] = set()
    for n in filter(None, nxt):
        out |= _reachable_ends(states, n, seen)
    return out


def test_asl_every_task_retries_transient_errors_and_catches_everything() -> None:
    states = _asl()["States"]
    tasks = {n: s for n, s in states.items() if s["Type"] == "Task"}
    assert set(tasks) == {"Extract", "Train", "Evaluate", "Promote", "VerifyServing", "Rollback"}
    for name, s in tasks.items():
        assert s["Parameters"]["FunctionName"] == "${TrainingFunctionArn}", name
        assert s["Parameters"]["Payload"]["step"] in app.STEPS, name
        retried = {e for r in s["Retry"] for e in r["ErrorEquals"]}
        assert {"TransientError", "Lambda.ServiceException", "Lambda.TooManyRequestsException"} <= retried, name
        assert "States.ALL" not in retried, name  # a real failure must not be retried
        catch = s["Catch"]
        assert any("States.ALL" in c["ErrorEquals"] for c in catch), name
        assert "TimeoutSeconds" in s, name


def test_asl_failure_paths_end_failed_and_only_a_verified_promotion_succeeds() -> None:
    states = _asl()["States"]
    succeed = {n for n, s in states.items() if s["Type"] == "Succeed"}
    assert succeed == {"Promoted"}
    for name, s in states.items():
        for c in s.get("Catch", []):
            ends = _reachable_ends(states, c["Next"])
            assert ends and all(states[e]["Type"] == "Fail" for e in ends), (name, ends)
    assert states["VerifyServing"]["Next"] == "Promoted"
    assert states["Promote"]["Next"] == "VerifyServing"
    choice = states["Decide"]
    assert choice["Choices"] == [{"Variable": "$.run.promote", "BooleanEquals": True, "Next": "Promote"}]
    assert states[choice["Default"]]["Type"] == "Fail" and states[choice["Default"]]["Error"] == "CandidateWorse"
    # every Next points at a state, and every state is reachable from StartAt
    assert _reachable_ends(states, _asl()["StartAt"]) >= {"Promoted", "Failed", "NotPromoted"}


def test_handler_steps_match_the_asl() -> None:
    used = {s["Parameters"]["Payload"]["step"] for s in _asl()["States"].values() if s["Type"] == "Task"}
    assert used == set(app.STEPS)


# --------------------------------------------------------------------------- packaging
def _retraining_block() -> str:
    text = (ROOT / "template.yaml").read_text()
    start, end = text.index("# >>> retraining\n"), text.index("# <<< retraining\n")
    return text[start:end]


def test_template_substitutes_every_placeholder_of_the_asl() -> None:
    import re

    placeholders = set(re.findall(r"\$\{(\w+)\}", ASL.read_text()))
    block = _retraining_block()
    assert placeholders == {"TrainingFunctionArn"}
    for name in placeholders:
        assert re.search(rf"^\s+{name}: ", block, re.M), f"DefinitionSubstitutions lacks {name}"
    assert "Name: movierecs-retrain" in block  # the admin function builds the ARN from this name
    assert "Schedule: !Ref RetrainSchedule" in block and "Type: Schedule " in block  # an EventBridge rule, not ScheduleV2


def test_the_aws_image_holds_the_same_code_as_the_local_function() -> None:
    dockerfile = (ROOT / "functions" / "training" / "Dockerfile").read_text()
    for layer in ("shared", "serving", "training"):
        assert f"COPY layers/{layer}/python/ " in dockerfile, layer
    assert "COPY functions/training/app.py " in dockerfile and 'CMD ["app.handler"]' in dockerfile
    block = _retraining_block()
    assert "Handler: app.handler" in block and "Command: [app.handler]" in block
    # `sam build` must not vendor the heavy requirements into the zip function
    assert not (ROOT / "functions" / "training" / "requirements.txt").exists()


def _asl_paths(node: Any) -> set[str]:
    """Every reference path ("$.run.promote", ...) the ASL makes into the state document."""
    found: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and (key.endswith((".$", "Path")) or key == "Variable") and value.startswith("$."):
                found.add(value)
            found |= _asl_paths(value)
    elif isinstance(node, list):
        for value in node:
            found |= _asl_paths(value)
    return found


def test_every_state_path_of_the_asl_names_a_field_of_the_typed_state() -> None:
    import typing

    from movierecs_training import run_state

    # paths into a Lambda invoke's own result, not into the workflow state
    own = {"$.Payload", "$.Payload.run"}
    paths = _asl_paths(_asl()) - own
    assert {"$.run.promote", "$.run.reason", "$.error", "$.error.Error", "$.error.Cause", "$.rollback"} <= paths
    for path in paths:
        kind: Any = run_state.State
        for part in path.split(".")[1:]:
            hints = typing.get_type_hints(kind)
            assert part in hints, f"{path}: {part!r} is not a field of {kind.__name__}"
            kind = hints[part]
    assert typing.get_type_hints(run_state.Run)["promote"] is bool  # the Choice state's BooleanEquals
    assert app.validate_request({"trigger": "admin"}).keys() <= run_state.REQUEST_KEYS


def test_a_canary_starts_an_experiment_instead_of_moving_the_pointer(s3: FakeS3, pipeline: dict,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from movierecs_core import experiments
    from movierecs_core.errors import ApiError

    started: list[dict] = []

    def start(db: Any, store: Any, body: dict) -> dict:
        if started:
            raise ApiError(409, "experiment exp-0 is running; one runs at a time")
        started.append(body)
        return {"experiment_id": "exp-0123456789ab", "created_at": "2026-12-03T00:00:00Z"}

    monkeypatch.setattr(experiments, "start", start)
    monkeypatch.setenv("POSTGRES_DSN", "postgresql://u@127.0.0.1:9/db")  # never connected: start is faked
    s3.point(V0)
    run = {"candidate_version": V1, "current_version": V0, "promote": True}
    st = app.handler({"step": "promote", "state": state(run, request={"canary": {"share": 0.2, "max_hours": 1}})})
    assert st["run"]["canary_experiment_id"] == "exp-0123456789ab" and st["run"]["promoted_version"] == V0
    assert s3.pointer() == V0 and pipeline["promote"] == []
    assert started == [{"control": V0, "candidate": V1, "share": 0.2, "max_hours": 1}]
    with pytest.raises(app.CanaryNotStarted, match="is running"):
        app.handler({"step": "promote", "state": state(run, request={"canary": {"share": 0.2}})})
    st = app.handler({"step": "promote", "state": state(run, request={"canary": {"share": 0}})})  # off: promote
    assert st["run"]["promoted_version"] == V1 and s3.pointer() == V1
    with pytest.raises(app.InvalidRequest, match="canary"):
        app.validate_request({"canary": {"share": 0.1, "colour": "red"}})
