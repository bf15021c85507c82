"""Calling an API function directly: an API Gateway REST proxy event in, its answer out.

Why: the retraining workflow's verify step asks the serving function which model it serves
(GET /health) without going through API Gateway, so it has to speak the proxy integration's
event format itself. The event is built here once, in the shape of AWS's REST proxy event
(the committed sample is ``events/get_recommendations.json``); the unit tests check it
against that sample and against the recommend function's Chalice app.
"""
from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

DEFAULT_HEADERS = {"accept": "application/json"}


def proxy_event(
    method: str,
    path: str,
    *,
    resource: str | None = None,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: str | None = None,
    path_params: Mapping[str, str] | None = None,
    stage: str = "direct",
) -> dict[str, Any]:
    """The REST proxy event API Gateway would send for ``method path`` (``resource`` = the route)."""
    resource = resource or path
    hdrs = dict(headers or DEFAULT_HEADERS)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": hdrs,
        "multiValueHeaders": {k: [v] for k, v in hdrs.items()},
        "queryStringParameters": dict(query) if query else None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": dict(path_params) if path_params else None,
        "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": path, "stage": stage,
                           "requestId": str(uuid.uuid4()), "identity": {"sourceIp": "127.0.0.1"}},
        "body": body,
        "isBase64Encoded": False,
    }


@dataclass(frozen=True)
class Answer:
    """A function's HTTP answer: status, decoded JSON body (None if none) and the raw payload."""

    status: int
    body: Any
    payload: Any


def invoke(lam: Any, function: str, method: str, path: str, **event: Any) -> Answer:
    """Invoke ``function`` (boto3 Lambda client ``lam``) with a proxy event; a crash is a 500."""
    resp = lam.invoke(FunctionName=function, Payload=json.dumps(proxy_event(method, path, **event)).encode())
    payload = json.loads(resp["Payload"].read() or b"null")
    if resp.get("FunctionError") or not isinstance(payload, dict):
        return Answer(500, None, payload)
    raw = payload.get("body")
    if raw and payload.get("isBase64Encoded"):
        raw = base64.b64decode(raw).decode("utf-8", "replace")
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = None
    return Answer(int(payload.get("statusCode", 500)), body, payload)
