"""Unit tests of the Chalice handlers with API Gateway proxy events and faked dependencies:
routing, the contract's error shape (including Chalice's own errors), body limits, status codes."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest

from movierecs_core.config import settings
from movierecs_core.errors import unavailable

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("MOVIERECS_TELEMETRY", "0")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MovieRecsTest")
    monkeypatch.setenv("ADMIN_API_KEY", "unit-test-admin-key-0123")
    settings.cache_clear()
    yield
    settings.cache_clear()


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"fn_{name}", ROOT / "functions" / name / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Ctx:
    aws_request_id = "req-1"
    function_name = "fn"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:fn"

    def get_remaining_time_in_millis(self):
        return 30000


def event(method: str, resource: str, path: str, query: dict | None = None, body: Any = None,
          path_params: dict | None = None, headers: dict | None = None) -> dict:
    raw = body if isinstance(body, (str, type(None))) else json.dumps(body)
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method,
        "headers": headers or {"content-type": "application/json"},
        "multiValueHeaders": {k: [v] for k, v in (headers or {"content-type": "application/json"}).items()},
        "queryStringParameters": query,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": path_params,
        "stageVariables": None,
        "requestContext": {"resourcePath": resource, "httpMethod": method, "path": path, "requestId": "gw-1", "stage": "v1"},
        "body": raw,
        "isBase64Encoded": False,
    }


def call(mod, ev) -> tuple[int, Any]:
    out = mod.app(ev, Ctx())
    return out["statusCode"], json.loads(out["body"])


def test_recommend_validation_errors_have_contract_shape():
    mod = load("recommend")
    for query, word in [(None, "user_id"), ({"user_id": "-1"}, "user_id"), ({"user_id": "abc"}, "user_id"),
                        ({"user_id": "1", "k": "0"}, "'k'"), ({"user_id": "1", "k": "101"}, "'k'")]:
        status, body = call(mod, event("GET", "/recommendations", "/recommendations", query=query))
        assert status == 400 and set(body) == {"error"} and word in body["error"]
    status, body = call(mod, event("GET", "/movies/{movie_id}", "/movies/x", path_params={"movie_id": "x"}))
    assert status == 400 and "movie_id" in body["error"]


def test_chalice_own_errors_are_rewritten():
    mod = load("recommend")
    status, body = call(mod, event("POST", "/recommendations", "/recommendations", query={"user_id": "1"}))
    assert status == 405 and set(body) == {"error"}


def test_dependency_failure_is_503_and_crash_is_500_without_traceback(monkeypatch):
    mod = load("recommend")

    def down(*a, **k):
        raise unavailable("the interactions store (ClickHouse) is unavailable")

    monkeypatch.setattr(mod.service, "recommendations", down)
    status, body = call(mod, event("GET", "/recommendations", "/recommendations", query={"user_id": "1"}))
    assert status == 503 and "ClickHouse" in body["error"]

    def crash(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(mod.service, "movie", crash)
    status, body = call(mod, event("GET", "/movies/{movie_id}", "/movies/1", path_params={"movie_id": "1"}))
    assert status == 500 and "req-1" in body["error"] and "secret" not in body["error"]


def test_recommend_passes_parsed_values(monkeypatch):
    mod = load("recommend")
    seen = {}

    def fake(reads, user_id, k):
        seen.update(user_id=user_id, k=k)
        return {"user_id": user_id, "k": k, "model_version": "v", "strategy": "popular", "items": []}

    monkeypatch.setattr(mod.service, "recommendations", fake)
    status, body = call(mod, event("GET", "/recommendations", "/recommendations", query={"user_id": "42"}))
    assert status == 200 and seen == {"user_id": 42, "k": 10} and body["strategy"] == "popular"


class FakeCatalog:
    def get(self, movie_id):
        return object() if movie_id < 100 else None


def test_likes_statuses(monkeypatch):
    mod = load("like_ingest")
    sent = []
    monkeypatch.setattr(mod.ingest, "catalog", FakeCatalog())
    monkeypatch.setattr(mod.ingest, "send", sent.append)

    def post(body):
        return call(mod, event("POST", "/likes", "/likes", body=body))

    status, body = post({"user_id": 1, "movie_id": 2, "event_id": "abc"})
    assert status == 202 and body == {"event_id": "abc"} and sent[0].movie_id == 2
    assert post({"user_id": 1, "movie_id": 500})[0] == 404
    status, body = post("{not json")
    assert status == 400 and "JSON" in body["error"]
    status, body = post(json.dumps({"user_id": 1, "movie_id": 2, "pad": "x" * 5000}))
    assert status == 413 and "4096" in body["error"]
    assert post("")[0] == 400
    assert post({"user_id": 0, "movie_id": 2})[0] == 400
    assert len(sent) == 1


def test_likes_broker_down_is_503_never_202(monkeypatch):
    mod = load("like_ingest")
    monkeypatch.setattr(mod.ingest, "catalog", FakeCatalog())

    def down(event):
        raise unavailable("the event broker did not acknowledge the like")

    monkeypatch.setattr(mod.ingest, "send", down)
    status, body = call(mod, event("POST", "/likes", "/likes", body={"user_id": 1, "movie_id": 2}))
    assert status == 503 and "broker" in body["error"]


def test_admin_requires_key():
    mod = load("admin")
    ev = event("POST", "/admin/reload", "/admin/reload", body={})
    status, body = call(mod, ev)
    assert status == 401 and "x-api-key" in body["error"]
    ev = event("GET", "/admin/models", "/admin/models", headers={"x-api-key": "nope"})
    assert call(mod, ev)[0] == 403


def test_admin_reload_with_key(monkeypatch):
    mod = load("admin")
    monkeypatch.setattr(mod.admin, "reload", lambda store, version, cache: {"model_version": version or "cur"})
    monkeypatch.setattr(mod, "_store", lambda: None)
    headers = {"x-api-key": "unit-test-admin-key-0123", "content-type": "application/json"}
    status, body = call(mod, event("POST", "/admin/reload", "/admin/reload", body=None, headers=headers))
    assert status == 200 and body == {"model_version": "cur"}
    status, body = call(mod, event("POST", "/admin/reload", "/admin/reload", body="[1]", headers=headers))
    assert status == 400
    status, body = call(mod, event("GET", "/admin/stats", "/admin/stats", query={"minutes": "0"}, headers=headers))
    assert status == 400 and "minutes" in body["error"]


def test_consumer_handler_raises_when_clickhouse_is_down(monkeypatch):
    mod = load("consumer")

    class Down:
        def query(self, *a, **k):
            raise ConnectionError("refused")

    monkeypatch.setattr(mod, "get_client", lambda url: Down())
    ev = {"eventSource": "SelfManagedKafka", "records": {"interactions-0": [{
        "topic": "interactions", "partition": 0, "offset": 0, "timestamp": 0, "timestampType": "CREATE_TIME",
        "key": "MQ==", "value": "eyJldmVudF9pZCI6ImUiLCJ1c2VyX2lkIjoxLCJtb3ZpZV9pZCI6MiwidHlwZSI6Imxpa2UiLCJ0cyI6IjIwMjYtMTEtMjdUMDA6MDA6MDBaIn0=",
        "headers": []}]}}
    with pytest.raises(ConnectionError):
        mod.handler(ev, Ctx())
