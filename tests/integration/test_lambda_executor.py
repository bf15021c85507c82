"""The movierecs-process Lambda executor inside the real LocalStack of ``make up``.

Deploys tests/integration/extension_fixtures/template.yaml once (session fixture) and shows:
API Gateway REST v1 -> Lambda round trip, a layer's module imported by a function, init once
per environment, the context object and environment, a Step Functions Lambda task, an
EventBridge pattern rule starting the state machine, CloudWatch logs of the handler's output,
timeouts and unhandled errors reported as Lambda does, and concurrent environments.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests


def _invoke(aws, name: str, payload: dict) -> tuple[dict, dict]:
    resp = aws("lambda").invoke(FunctionName=name, Payload=json.dumps(payload).encode())
    return resp, json.loads(resp["Payload"].read() or b"null")


def test_api_gateway_round_trip_with_path_query_body_headers(gateway, extension_stack):
    url = f"{gateway}/_aws/execute-api/{extension_stack['ApiId']}/Prod/echo/alice"
    body = json.dumps({"hello": "world"})
    resp = requests.post(url, params={"q": "films", "k": "5"}, data=body,
                         headers={"X-Ext-Test": "yes", "Content-Type": "application/json"},
                         timeout=30)
    assert resp.status_code == 200, resp.text
    info = resp.json()
    req = info["request"]
    assert req["method"] == "POST"
    assert req["path"] == "/echo/alice"
    assert req["pathParameters"] == {"name": "alice"}
    assert req["query"] == {"q": "films", "k": "5"}
    assert req["headers"]["x-ext-test"] == "yes"
    assert json.loads(req["body"]) == {"hello": "world"}
    # the layer's module came from the layer, not from the function code
    assert info["layer_value"] == "from-ext-test-layer"


def test_context_environment_and_init_once(aws, extension_stack, gateway):
    name = extension_stack["EchoFunctionName"]
    first_resp, first = _invoke(aws, name, {"n": 1})
    _, second = _invoke(aws, name, {"n": 2})
    assert "FunctionError" not in first_resp
    ctx = first["context"]
    assert ctx["function_name"] == name
    assert ctx["function_version"] == "$LATEST"
    assert ctx["invoked_function_arn"].endswith(f":function:{name}")
    assert ctx["memory_limit_in_mb"] == 256
    assert ctx["log_group_name"] == f"/aws/lambda/{name}"
    assert ctx["log_stream_name"]
    assert len(ctx["aws_request_id"]) == 36
    assert 0 < ctx["remaining_ms"] <= 10_000
    assert first["env"]["EXT_TEST_VAR"] == "ext-test-value"
    assert first["env"]["AWS_ENDPOINT_URL"] == gateway
    assert first["env"]["PYTHONPATH"] is None  # not LocalStack's
    assert first["env"]["AWS_REGION"] == "us-east-1"
    # sequential invocations reuse the warm environment: module init ran once
    assert second["pid"] == first["pid"]
    assert second["init_at"] == first["init_at"]
    assert second["invocations"] == first["invocations"] + 1
    assert second["context"]["aws_request_id"] != ctx["aws_request_id"]


def test_unhandled_error_is_reported_with_type_and_stack_trace(aws, extension_stack):
    resp, payload = _invoke(aws, extension_stack["ErrorFunctionName"], {"message": "kaboom"})
    assert resp["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "ExtTestError"
    assert payload["errorMessage"] == "kaboom"
    trace = "".join(payload["stackTrace"])
    assert "failing.py" in trace and "_inner" in trace
    assert "worker.py" not in trace  # the executor's own frames are not the user's problem


def test_timeout_is_reported_and_environment_recovers(aws, extension_stack):
    name = extension_stack["SlowFunctionName"]
    resp, before = _invoke(aws, name, {"seconds": 0})
    assert "FunctionError" not in resp
    resp, payload = _invoke(aws, name, {"seconds": 5})
    assert resp["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in payload["errorMessage"]
    # the timed-out worker was killed: the next invocation runs in a fresh process
    resp, after = _invoke(aws, name, {"seconds": 0})
    assert "FunctionError" not in resp
    assert after["slept"] is True
    assert after["pid"] != before["pid"]


def test_handler_output_goes_to_cloudwatch_logs(aws, extension_stack):
    name = extension_stack["EchoFunctionName"]
    _, result = _invoke(aws, name, {"log": "me"})
    request_id = result["context"]["aws_request_id"]
    logs = aws("logs")
    deadline = time.monotonic() + 20
    messages: list[str] = []
    while time.monotonic() < deadline:
        try:
            events = logs.filter_log_events(logGroupName=f"/aws/lambda/{name}")["events"]
        except logs.exceptions.ResourceNotFoundException:
            events = []
        messages = [e["message"] for e in events]
        if any(f"echo invoked: {request_id}" in m for m in messages):
            break
        time.sleep(0.5)
    assert any(f"echo invoked: {request_id}" in m for m in messages), messages[-10:]
    assert any(m.startswith(f"REPORT RequestId: {request_id}") for m in messages)


def test_concurrent_invocations_use_several_environments(aws, extension_stack):
    name = extension_stack["SlowFunctionName"]
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(lambda _: _invoke(aws, name, {"seconds": 0.6}), range(3)))
    assert all("FunctionError" not in resp for resp, _ in results)
    assert all(payload["slept"] is True for _, payload in results)
    # three invocations overlapping in time ran in three environments (three processes)
    assert len({payload["pid"] for _, payload in results}) == 3


def test_step_functions_lambda_task(aws, extension_stack):
    sfn = aws("stepfunctions")
    marker = uuid.uuid4().hex
    arn = sfn.start_execution(stateMachineArn=extension_stack["StateMachineArn"],
                              input=json.dumps({"marker": marker}))["executionArn"]
    desc = _wait_execution(sfn, arn)
    assert desc["status"] == "SUCCEEDED", desc
    output = json.loads(desc["output"])
    assert output["event"] == {"marker": marker}
    assert output["layer_value"] == "from-ext-test-layer"


def test_eventbridge_rule_starts_the_state_machine(aws, extension_stack):
    sfn = aws("stepfunctions")
    marker = uuid.uuid4().hex
    resp = aws("events").put_events(Entries=[{
        "Source": "movierecs.ext-test", "DetailType": "ext-test",
        "Detail": json.dumps({"marker": marker})}])
    assert resp["FailedEntryCount"] == 0
    deadline = time.monotonic() + 30
    found = None
    while time.monotonic() < deadline and found is None:
        for ex in sfn.list_executions(stateMachineArn=extension_stack["StateMachineArn"]
                                      )["executions"]:
            desc = sfn.describe_execution(executionArn=ex["executionArn"])
            if marker in desc.get("input", ""):
                found = desc
                break
        else:
            time.sleep(0.5)
    assert found is not None, "the rule did not start the state machine"
    desc = _wait_execution(sfn, found["executionArn"])
    assert desc["status"] == "SUCCEEDED", desc
    output = json.loads(desc["output"])
    assert output["event"]["source"] == "movierecs.ext-test"
    assert output["event"]["detail"] == {"marker": marker}


def _wait_execution(sfn, arn: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        desc = sfn.describe_execution(executionArn=arn)
        if desc["status"] != "RUNNING" or time.monotonic() > deadline:
            return desc
        time.sleep(0.3)
