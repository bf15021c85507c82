"""End to end: the retraining workflow on the running stack (real LocalStack Step Functions,
Lambda on the process executor, ClickHouse over chDB, S3, the recommend function).

1. POST /admin/retrain starts an execution that ends SUCCEEDED with a new promoted version,
   which GET /health and GET /recommendations then serve.
2. A retrain with deliberately bad hyperparameters (2 factors, 1 iteration: a real, worse
   model, no test flag) evaluates worse and ends FAILED with CandidateWorse; the pointer and
   the served model are unchanged; the candidate is listed as rejected.
3. A retrain whose training step raises (a hyperparameter value the training code refuses)
   ends FAILED in the Train state; the pointer and the served model are unchanged.

Needs `make up` (ML-1M loaded, a model promoted). About 2-3 minutes for the file.
"""
from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.timeout(600)

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ROOT / ".movierecs" / "endpoints.json"
EXECUTION_TIMEOUT_S = 300
SERVED_TIMEOUT_S = 30  # serving polls the pointer every ~2 s; generous for a loaded machine


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ep() -> dict[str, Any]:
    if not ENDPOINTS.exists():
        pytest.fail("the stack is not up (.movierecs/endpoints.json is missing): run `make up` first")
    e = json.loads(ENDPOINTS.read_text())
    if not e.get("api"):
        pytest.fail("no API in .movierecs/endpoints.json (the template is not deployed): run `make up` first")
    return e


@pytest.fixture(scope="module")
def aws(ep: dict[str, Any]) -> dict[str, Any]:
    """boto3 clients for the stack's LocalStack gateway (the host of the API URL)."""
    import boto3

    m = re.match(r"(https?://[^/]+)", ep["api"])
    assert m, ep["api"]
    kw = dict(endpoint_url=m.group(1), region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    cfn = boto3.client("cloudformation", **kw)
    outputs: dict[str, str] = {}
    for stack in cfn.describe_stacks()["Stacks"]:  # the app stack ("movierecs"), not a test's scratch stack
        o = {x["OutputKey"]: x["OutputValue"] for x in stack.get("Outputs", [])}
        usable = stack["StackStatus"].endswith("_COMPLETE") and not stack["StackStatus"].startswith("DELETE")
        if usable and {"StateMachineArn", "ModelBucketName"} <= set(o) and (not outputs or stack["StackName"] == "movierecs"):
            outputs = o
    if not outputs:
        pytest.fail("no deployed stack has the StateMachineArn output (retraining not deployed): run `make up` first")
    return {"sfn": boto3.client("stepfunctions", **kw), "s3": boto3.client("s3", **kw),
            "events": boto3.client("events", **kw), "outputs": outputs}


def api(ep: dict[str, Any]) -> str:
    return ep["api"].rstrip("/")


def served(ep: dict[str, Any]) -> str | None:
    r = requests.get(f"{api(ep)}/health", timeout=30)
    assert r.status_code == 200, f"GET /health answered {r.status_code}: {r.text[:300]}"
    return r.json().get("model_version")


def pointer(aws: dict[str, Any]) -> str | None:
    try:
        obj = aws["s3"].get_object(Bucket=aws["outputs"]["ModelBucketName"], Key="models/CURRENT")
    except aws["s3"].exceptions.NoSuchKey:
        return None
    return json.loads(obj["Body"].read())["version"]


def wait_execution(aws: dict[str, Any], arn: str) -> dict[str, Any]:
    sfn = aws["sfn"]
    deadline = time.monotonic() + EXECUTION_TIMEOUT_S
    while True:
        d = sfn.describe_execution(executionArn=arn)
        if d["status"] != "RUNNING":
            return d
        assert time.monotonic() < deadline, f"execution {arn} still RUNNING after {EXECUTION_TIMEOUT_S} s"
        time.sleep(1)


def states_entered(aws: dict[str, Any], arn: str) -> list[str]:
    events = aws["sfn"].get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return [e["stateEnteredEventDetails"]["name"] for e in events if "stateEnteredEventDetails" in e]


def state_output(aws: dict[str, Any], arn: str, state: str) -> dict[str, Any]:
    """The output of a state that exited (from the execution history)."""
    events = aws["sfn"].get_execution_history(executionArn=arn, maxResults=1000)["events"]
    for e in events:
        details = e.get("stateExitedEventDetails")
        if details and details["name"] == state:
            return json.loads(details["output"])
    raise AssertionError(f"state {state} never exited in {arn}")


def start(aws: dict[str, Any], request: dict[str, Any], label: str) -> str:
    return aws["sfn"].start_execution(stateMachineArn=aws["outputs"]["StateMachineArn"],
                                      name=f"e2e-{label}-{uuid.uuid4().hex[:8]}", input=json.dumps(request))["executionArn"]


def wait_served(ep: dict[str, Any], version: str) -> str | None:
    """Poll GET /health until it reports `version` (or the deadline); returns the last version seen."""
    deadline = time.monotonic() + SERVED_TIMEOUT_S
    seen = served(ep)
    while seen != version and time.monotonic() < deadline:
        time.sleep(0.5)
        seen = served(ep)
    return seen


@pytest.fixture(scope="module")
def promoted(ep: dict[str, Any], aws: dict[str, Any]) -> str:
    """The version promoted before these tests change anything (make up promotes one)."""
    v = pointer(aws)
    if v is None:
        pytest.fail("no model is promoted (models/CURRENT missing): `make up` trains and promotes the first one")
    return v


# --------------------------------------------------------------------------- tests
def clickhouse_counts(ep: dict[str, Any]) -> tuple[int, int]:
    """(ratings, liked (user, movie) pairs) in ClickHouse: what Extract must read. A pair whose
    latest feedback is an unlike or a not_interested is neither (issue 12)."""
    import clickhouse_connect
    from urllib.parse import urlparse

    u = urlparse(ep["clickhouse"])
    ch = clickhouse_connect.get_client(host=u.hostname, port=u.port)
    try:
        state = ("SELECT user_id, movie_id, argMax(type, (ts, ingested_at)) AS last FROM movierecs.likes FINAL "
                 "GROUP BY user_id, movie_id")
        ratings = ch.query(f"SELECT count() FROM movierecs.ratings FINAL WHERE (user_id, movie_id) NOT IN "
                           f"(SELECT user_id, movie_id FROM ({state}) WHERE last != 'like')").result_rows[0][0]
        likes = ch.query(f"SELECT count() FROM ({state}) WHERE last = 'like'").result_rows[0][0]
    finally:
        ch.close()
    return int(ratings), int(likes)


def test_admin_retrain_promotes_a_new_version_that_is_then_served(ep: dict[str, Any], aws: dict[str, Any], promoted: str) -> None:
    before = pointer(aws)
    ratings, likes = clickhouse_counts(ep)
    r = requests.post(f"{api(ep)}/admin/retrain", headers={"x-api-key": ep["admin_api_key"]}, timeout=30)
    assert r.status_code == 202, f"POST /admin/retrain answered {r.status_code}: {r.text[:300]}"
    arn = r.json()["execution_arn"]
    assert arn.split(":")[-2] == "movierecs-retrain"

    d = wait_execution(aws, arn)
    assert d["status"] == "SUCCEEDED", f"{d['status']}: {d.get('error')} {str(d.get('cause'))[:500]}"
    out = json.loads(d["output"])
    run = out["run"]
    assert out["request"]["trigger"] == "admin"
    new = run["promoted_version"]
    assert new != before and run["candidate_version"] == new and run["current_version"] == before
    assert run["promote"] is True and run["verified"] == "serving" and run["served_version"] == new
    # Extract read both sources: every rating, and at least the likes present before the start
    assert run["ratings"] == ratings >= 900_000  # ML-1M's 1,000,209, less the users forgotten (DELETE /users)
    assert run["likes"] >= likes and run["rows"] == run["ratings"] + run["likes"]
    assert states_entered(aws, arn) == ["Init", "Extract", "Train", "Evaluate", "Decide", "Promote", "VerifyServing", "Promoted"]

    assert pointer(aws) == new
    assert wait_served(ep, new) == new
    rec = requests.get(f"{api(ep)}/recommendations", params={"user_id": 1, "k": 10}, timeout=30)
    assert rec.status_code == 200, rec.text[:300]
    body = rec.json()
    assert body["model_version"] == new and body["strategy"] == "personal" and len(body["items"]) == 10

    models = requests.get(f"{api(ep)}/admin/models", headers={"x-api-key": ep["admin_api_key"]}, timeout=30)
    assert models.status_code == 200, models.text[:300]
    assert models.json()["current"] == new


def test_worse_candidate_is_not_promoted_and_previous_model_stays_served(ep: dict[str, Any], aws: dict[str, Any], promoted: str) -> None:
    before = pointer(aws)
    assert wait_served(ep, before) == before
    arn = start(aws, {"trigger": "e2e", "hyperparameters": {"factors": 2, "iterations": 1}}, "worse")

    d = wait_execution(aws, arn)
    assert d["status"] == "FAILED", f"expected FAILED, got {d['status']}: {str(d.get('output'))[:300]}"
    assert d["error"] == "CandidateWorse", f"{d.get('error')}: {str(d.get('cause'))[:500]}"
    assert "candidate map@10" in d["cause"] and " < current " in d["cause"]
    entered = states_entered(aws, arn)
    assert entered[-2:] == ["Decide", "NotPromoted"] and "Promote" not in entered

    assert pointer(aws) == before
    assert served(ep) == before
    models = requests.get(f"{api(ep)}/admin/models", headers={"x-api-key": ep["admin_api_key"]}, timeout=30)
    assert models.status_code == 200, models.text[:300]
    listing = models.json()
    assert listing["current"] == before
    candidate = state_output(aws, arn, "Train")["run"]["candidate_version"]
    status = {v["version"]: v["status"] for v in listing["versions"]}
    assert status.get(candidate) == "rejected", f"candidate {candidate} listed as {status.get(candidate)!r}"


def test_training_step_that_raises_fails_the_execution_and_keeps_the_model(ep: dict[str, Any], aws: dict[str, Any], promoted: str) -> None:
    before = pointer(aws)
    arn = start(aws, {"trigger": "e2e", "hyperparameters": {"weighting": "no-such-weighting"}}, "raise")

    d = wait_execution(aws, arn)
    assert d["status"] == "FAILED", f"expected FAILED, got {d['status']}"
    assert d["error"] == "ValueError", f"{d.get('error')}: {str(d.get('cause'))[:500]}"
    assert "weighting" in d["cause"]
    entered = states_entered(aws, arn)
    assert entered[-2:] == ["Train", "Failed"], entered

    assert pointer(aws) == before
    assert served(ep) == before
    rec = requests.get(f"{api(ep)}/recommendations", params={"user_id": 1, "k": 5}, timeout=30)
    assert rec.status_code == 200 and rec.json()["model_version"] == before, rec.text[:300]


def test_schedule_is_an_eventbridge_rule_that_starts_the_state_machine(aws: dict[str, Any]) -> None:
    """The periodic trigger is an EventBridge rule (Scheduler never fires locally) aimed at the workflow."""
    sm = aws["outputs"]["StateMachineArn"]
    found = []
    for rule in aws["events"].list_rules()["Rules"]:
        if not rule.get("ScheduleExpression"):
            continue
        for t in aws["events"].list_targets_by_rule(Rule=rule["Name"])["Targets"]:
            if t["Arn"] == sm:
                found.append((rule, t))
    assert len(found) == 1, f"expected one schedule rule targeting {sm}, found {len(found)}"
    rule, target = found[0]
    assert rule["State"] == "ENABLED"
    assert re.fullmatch(r"(rate|cron)\(.+\)", rule["ScheduleExpression"]), rule["ScheduleExpression"]
    assert json.loads(target["Input"]) == {"trigger": "schedule"}
    assert target.get("RoleArn"), "the rule needs a role allowed to start the execution"
