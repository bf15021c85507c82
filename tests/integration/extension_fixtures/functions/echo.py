"""API Gateway (REST v1 proxy) echo: returns what it received, plus proof of init-once and
the layer module. Also used as the Step Functions task."""

import json
import os
import time

import ext_layer_mod  # only in the layer

INIT_AT = time.time()
INVOCATIONS = 0


def handler(event, context):
    global INVOCATIONS
    INVOCATIONS += 1
    print(f"echo invoked: {context.aws_request_id}")
    info = {
        "layer_value": ext_layer_mod.LAYER_VALUE,
        "init_at": INIT_AT,
        "invocations": INVOCATIONS,
        "pid": os.getpid(),
        "context": {
            "aws_request_id": context.aws_request_id,
            "function_name": context.function_name,
            "function_version": context.function_version,
            "invoked_function_arn": context.invoked_function_arn,
            "memory_limit_in_mb": context.memory_limit_in_mb,
            "log_group_name": context.log_group_name,
            "log_stream_name": context.log_stream_name,
            "remaining_ms": context.get_remaining_time_in_millis(),
        },
        "env": {k: os.environ.get(k) for k in
                ("EXT_TEST_VAR", "AWS_ENDPOINT_URL", "PYTHONPATH", "AWS_REGION")},
    }
    if "httpMethod" in event:  # API Gateway proxy event
        info["request"] = {
            "method": event["httpMethod"],
            "path": event.get("path"),
            "pathParameters": event.get("pathParameters"),
            "query": event.get("queryStringParameters"),
            "headers": {k.lower(): v for k, v in (event.get("headers") or {}).items()},
            "body": event.get("body"),
        }
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "body": json.dumps(info)}
    info["event"] = event
    return info
