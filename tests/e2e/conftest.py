"""End-to-end fixtures: the running local stack (`make up`), reached only through its
loopback endpoints in `.movierecs/endpoints.json`. A missing file is a failure that says
what to do, never a skip.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = Path(os.environ.get("MOVIERECS_ENDPOINTS", ROOT / ".movierecs" / "endpoints.json"))


@pytest.fixture(scope="session")
def endpoints() -> dict[str, Any]:
    """The contract's endpoints file."""
    if not ENDPOINTS.exists():
        pytest.fail(f"{ENDPOINTS} not found: run `make up` first")
    data = json.loads(ENDPOINTS.read_text())
    for key in ("api", "clickhouse", "postgres", "kafka"):
        if not data.get(key):
            pytest.fail(f"{ENDPOINTS} has no '{key}': run `make up` first")
    return data


@pytest.fixture(scope="session")
def api(endpoints) -> str:
    """Base URL of the REST API stage (no trailing slash)."""
    return endpoints["api"].rstrip("/")


@pytest.fixture(scope="session")
def http() -> requests.Session:
    s = requests.Session()
    s.headers["Content-Type"] = "application/json"
    return s


@pytest.fixture(scope="session")
def admin_key(endpoints) -> str:
    return endpoints["admin_api_key"]


@pytest.fixture(scope="session")
def ch(endpoints):
    """A ClickHouse client on the stack's endpoint (database movierecs)."""
    import clickhouse_connect

    u = urlparse(endpoints["clickhouse"])
    return clickhouse_connect.get_client(host=u.hostname, port=u.port, database="movierecs", compress=False)


@pytest.fixture(scope="session")
def pg(endpoints):
    """PostgreSQL of the stack; reconnects by itself (the fault suite kills and restarts it)."""
    from movierecs_core.stores.postgres import Postgres

    db = Postgres(endpoints["postgres"])
    yield db
    db.close()


@pytest.fixture(scope="session")
def model_version(api, http) -> str:
    """The promoted model's version; fails with instructions when no model is served."""
    deadline = time.monotonic() + 60
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = http.get(f"{api}/health", timeout=30)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        if r.status_code == 200 and body.get("model_version"):
            return body["model_version"]
        time.sleep(1)
    pytest.fail(f"no model is served (GET /health -> {body}): `make up` loads the data and trains the first model")


@pytest.fixture(scope="session")
def popular(api, http, model_version) -> list[int]:
    """The popular list as served to a user without any signal."""
    r = http.get(f"{api}/recommendations", params={"user_id": 2_147_483_000, "k": 50}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["strategy"] == "popular"
    return [i["movie_id"] for i in r.json()["items"]]


@pytest.fixture(scope="session")
def wait() -> Callable[..., Any]:
    """``wait(predicate, timeout, interval)``: see ``wait_until``."""
    return wait_until


@pytest.fixture(scope="session")
def stored(ch) -> Callable[[list[str]], int]:
    """``stored(event_ids)``: how many of them are in movierecs.likes."""
    return lambda event_ids: stored_count(ch, event_ids)


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """Poll ``predicate`` until it returns a truthy value or ``timeout`` seconds pass (then returns the last value)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    return value


def stored_count(ch, event_ids: list[str]) -> int:
    """How many distinct of ``event_ids`` are in movierecs.likes."""
    if not event_ids:
        return 0
    return int(ch.query("SELECT uniqExact(event_id) FROM likes WHERE event_id IN {ids:Array(String)}",
                        parameters={"ids": event_ids}).result_rows[0][0])
