"""Unit tests of the Chalice handlers through chalice.test.Client (Chalice's own local API
Gateway: it builds each proxy event from method, path, headers and body) with faked
dependencies: routing, the contract's error shape (including Chalice's own errors), body
limits, status codes. The consumer gets the committed sample Kafka event (events/), and the
proxy event of movierecs_core.apigw (the retraining verify step's) is checked against the
committed sample and answered by the recommend app."""
from __future__ import annotations

import importlib.util
import io
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import chalice.local
import pytest
from chalice.test import Client

from movierecs_core import apigw
from movierecs_core.config import settings
from movierecs_core.stores import Unavailable

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
REQUEST_ID = "req-1"


@pytest.fixture(autouse=True)
def _env(monkeypatch):
    monkeypatch.setenv("MOVIERECS_TELEMETRY", "0")
    monkeypatch.setenv("MOVIERECS_IMPRESSIONS", "0")  # no background producer in unit tests
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "MovieRecsTest")
    monkeypatch.setenv("ADMIN_API_KEY", "unit-test-admin-key-0123")
    settings.cache_clear()
    yield
    settings.cache_clear()


@pytest.fixture(autouse=True)
def _request_id(monkeypatch):
    """Chalice's local context names each request with a random id; here every one is REQUEST_ID."""

    class Context(chalice.local.LambdaContext):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.aws_request_id = REQUEST_ID

    monkeypatch.setattr(chalice.local, "LambdaContext", Context)


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"fn_{name}", ROOT / "functions" / name / "app.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Ctx:
    """A Lambda context for the handlers that are not HTTP routes (the consumer)."""

    aws_request_id = REQUEST_ID
    function_name = "fn"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:fn"

    def get_remaining_time_in_millis(self):
        return 30000


def call(mod, method: str, path: str, query: dict | None = None, body: Any = None,
         headers: dict | None = None) -> tuple[int, Any]:
    """One request through chalice.test.Client; (status, decoded JSON body)."""
    raw = body if isinstance(body, (str, type(None))) else json.dumps(body)
    target = path + ("?" + urlencode(query) if query else "")
    with Client(mod.app) as client:
        r = client.http.request(method, target, headers=headers or {"content-type": "application/json"},
                                body=(raw or "").encode())
    return r.status_code, json.loads(r.body)


def test_recommend_validation_errors_have_contract_shape():
    mod = load("recommend")
    for query, word in [(None, "user_id"), ({"user_id": "-1"}, "user_id"), ({"user_id": "abc"}, "user_id"),
                        ({"user_id": "1", "k": "0"}, "'k'"), ({"user_id": "1", "k": "101"}, "'k'")]:
        status, body = call(mod, "GET", "/recommendations", query=query)
        assert status == 400 and set(body) == {"error"} and word in body["error"]
    status, body = call(mod, "GET", "/movies/x")
    assert status == 400 and "movie_id" in body["error"]


def test_chalice_own_errors_are_rewritten():
    mod = load("recommend")
    status, body = call(mod, "POST", "/recommendations", query={"user_id": "1"})
    assert status == 405 and set(body) == {"error"}


def test_dependency_failure_is_503_and_crash_is_500_without_traceback(monkeypatch):
    mod = load("recommend")

    def down(*a, **k):
        raise Unavailable("the interactions store (ClickHouse) is unavailable")  # a store's neutral error

    monkeypatch.setattr(mod.service, "recommendations", down)
    status, body = call(mod, "GET", "/recommendations", query={"user_id": "1"})
    assert status == 503 and "ClickHouse" in body["error"]

    def crash(*a, **k):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(mod.service, "movie", crash)
    status, body = call(mod, "GET", "/movies/1")
    assert status == 500 and REQUEST_ID in body["error"] and "secret" not in body["error"]


def test_recommend_passes_parsed_values(monkeypatch):
    mod = load("recommend")
    seen = {}

    def fake(reads, user_id, k, controls):
        seen.update(user_id=user_id, k=k, filters=controls.filters, controls=controls)
        return {"user_id": user_id, "k": k, "model_version": "v", "strategy": "popular", "items": []}

    monkeypatch.setattr(mod.service, "recommendations", fake)
    status, body = call(mod, "GET", "/recommendations", query={"user_id": "42"})
    assert status == 200 and seen["user_id"] == 42 and seen["k"] == 10 and body["strategy"] == "popular"
    assert not seen["filters"].active and seen["controls"].diversity == 0 and seen["controls"].cursor is None
    status, body = call(mod, "GET", "/recommendations", query={"user_id": "42", "diversity": "0.3", "cursor": "abc"})
    assert status == 200 and seen["controls"].diversity == 0.3 and seen["controls"].cursor == "abc"
    for bad in ("1.5", "-0.1", "nan", "０.5", "0,3"):
        status, body = call(mod, "GET", "/recommendations", query={"user_id": "42", "diversity": bad})
        assert status == 400 and "'diversity' must be a number from 0 to 1" in body["error"], bad
    status, body = call(mod, "GET", "/recommendations",
                        query={"user_id": "42", "exclude_genres": "comedy,Sci-Fi", "year_min": "1990", "exclude": "1,2"})
    f = seen["filters"]
    assert status == 200 and f.exclude_genres == {"Comedy", "Sci-Fi"} and f.year_min == 1990 and f.exclude == {1, 2}
    status, body = call(mod, "GET", "/recommendations", query={"user_id": "42", "include_genres": "Cartoon"})
    assert status == 400 and "unknown genre 'Cartoon'" in body["error"] and "Animation" in body["error"]


def test_every_list_served_queues_its_impression(monkeypatch):
    mod = load("recommend")
    assert mod.shown is None  # MOVIERECS_IMPRESSIONS=0

    class Queue(list):
        record = list.append

    monkeypatch.setattr(mod, "shown", Queue())
    body = {"user_id": 42, "k": 2, "model_version": "v1", "strategy": "fold_in",
            "items": [{"movie_id": 5}, {"movie_id": 7}], "next_cursor": None}
    monkeypatch.setattr(mod.service, "recommendations", lambda reads, user_id, k, controls: body)
    monkeypatch.setattr(mod.service, "similar", lambda reads, movie_id, k, controls, user_id=None: {
        "movie_id": movie_id, "model_version": "v1", "items": [{"movie_id": 9}], "next_cursor": None})
    assert call(mod, "GET", "/recommendations", query={"user_id": "42"})[0] == 200
    assert call(mod, "GET", "/movies/3/similar")[0] == 200
    assert call(mod, "GET", "/recommendations", query={"user_id": "x"})[0] == 400  # no list, no impression
    rec, sim = mod.shown
    assert (rec.request_id, rec.user_id, rec.listing, rec.strategy, rec.movie_ids) == (REQUEST_ID, 42, "recommendations", "fold_in", (5, 7))
    assert (sim.user_id, sim.listing, sim.source_movie, sim.strategy, sim.movie_ids) == (0, "similar", 3, "similar", (9,))


class FakeCatalog:
    def get(self, movie_id):
        return object() if movie_id < 100 else None


def test_likes_statuses(monkeypatch):
    mod = load("like_ingest")
    sent = []
    monkeypatch.setattr(mod.ingest, "catalog", FakeCatalog())
    monkeypatch.setattr(mod.ingest, "send", sent.append)

    def post(body):
        return call(mod, "POST", "/likes", body=body)

    status, body = post({"user_id": 1, "movie_id": 2, "event_id": "abc"})
    assert status == 202 and body == {"event_id": "abc"} and sent[0].movie_id == 2
    assert post({"user_id": 1, "movie_id": 500})[0] == 404
    status, body = post("{not json")
    assert status == 400 and "JSON" in body["error"]
    status, body = post(json.dumps({"user_id": 1, "movie_id": 2, "pad": "x" * 5000}))
    assert status == 413 and "4096" in body["error"]
    assert post("")[0] == 400
    assert post({"user_id": 0, "movie_id": 2})[0] == 400
    status, body = post("[" * 2000 + "]" * 2000)  # nested thousands of levels: 400, not a RecursionError
    assert status == 400 and "nested too deeply" in body["error"]
    status, body = post({"user_id": "\uff11", "movie_id": 2})  # a fullwidth "1" is not an id
    assert status == 400 and "user_id" in body["error"]
    assert len(sent) == 1


def test_likes_broker_down_is_503_never_202(monkeypatch):
    mod = load("like_ingest")
    monkeypatch.setattr(mod.ingest, "catalog", FakeCatalog())

    def down(event):
        raise Unavailable("the event broker did not acknowledge the like")

    monkeypatch.setattr(mod.ingest, "send", down)
    status, body = call(mod, "POST", "/likes", body={"user_id": 1, "movie_id": 2})
    assert status == 503 and "broker" in body["error"]


def test_admin_requires_key():
    mod = load("admin")
    status, body = call(mod, "POST", "/admin/reload", body={})
    assert status == 401 and "x-api-key" in body["error"]
    assert call(mod, "GET", "/admin/models", headers={"x-api-key": "nope"})[0] == 403


def test_admin_reload_with_key(monkeypatch):
    mod = load("admin")
    monkeypatch.setattr(mod.admin, "reload", lambda store, version, cache: {"model_version": version or "cur"})
    monkeypatch.setattr(mod, "_store", lambda: None)
    headers = {"x-api-key": "unit-test-admin-key-0123", "content-type": "application/json"}
    status, body = call(mod, "POST", "/admin/reload", body=None, headers=headers)
    assert status == 200 and body == {"model_version": "cur"}
    status, body = call(mod, "POST", "/admin/reload", body="[1]", headers=headers)
    assert status == 400
    status, body = call(mod, "GET", "/admin/stats", query={"minutes": "0"}, headers=headers)
    assert status == 400 and "minutes" in body["error"]


def test_consumer_handler_raises_when_clickhouse_is_down(monkeypatch):
    mod = load("consumer")

    class Down:
        def query(self, *a, **k):
            raise ConnectionError("refused")

    monkeypatch.setattr(mod, "get_client", lambda url: Down())
    ev = json.loads((EVENTS / "kafka_batch.json").read_text())
    with pytest.raises(ConnectionError):
        mod.handler(ev, Ctx())


def test_the_verify_steps_proxy_event_has_the_samples_shape_and_is_answered(monkeypatch):
    sample = json.loads((EVENTS / "get_recommendations.json").read_text())
    ev = apigw.proxy_event("GET", "/recommendations", query={"user_id": "1", "k": "10"})
    assert set(ev) <= set(sample) and {"resource", "path", "httpMethod", "requestContext"} <= set(ev)
    assert ev["queryStringParameters"] == sample["queryStringParameters"]
    assert ev["multiValueQueryStringParameters"] == sample["multiValueQueryStringParameters"]

    mod = load("recommend")
    monkeypatch.setattr(mod.service, "health", lambda reads: {"status": "ok", "model_version": "v7"})

    class Lambda:  # boto3's invoke, answered by the function's own app in process
        def invoke(self, FunctionName: str, Payload: bytes) -> dict:
            out = mod.app(json.loads(Payload), Ctx())
            return {"StatusCode": 200, "Payload": io.BytesIO(json.dumps(out).encode())}

    answer = apigw.invoke(Lambda(), "movierecs-recommend", "GET", "/health")
    assert answer.status == 200 and answer.body == {"status": "ok", "model_version": "v7"}
    answer = apigw.invoke(Lambda(), "movierecs-recommend", "GET", "/movies/{movie_id}",
                          path_params={"movie_id": "x"})
    assert answer.status == 400 and "movie_id" in answer.body["error"]
