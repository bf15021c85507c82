"""Backend-side client of the MovieRecs HTTP API (the public contract: docs/API.md, docs/openapi.yaml).

Why here and not in the browser: Reflex state runs on the Reflex backend, so every API
call (and the admin API key) stays on the server; the browser only talks to the Reflex
server on loopback. The base URL and key come from the environment that serve.sh passes
(MOVIERECS_API_URL, MOVIERECS_ADMIN_API_KEY); for local development they fall back to
the stack's `.movierecs/endpoints.json`.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import requests

from .controls import NO_FILTERS, Filters

ROOT = Path(__file__).resolve().parents[2]
ENDPOINTS = ROOT / ".movierecs" / "endpoints.json"
TIMEOUT_S = 15.0

_session = requests.Session()
# Never route through a proxy from the environment: the API is on loopback.
_session.trust_env = False


class ApiError(Exception):
    """An API call failed; `str(err)` is a message fit to show to a person."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        # The API's machine-readable `code`, when it sends one (cursor_stale, ...).
        self.code = code


def _endpoints() -> dict[str, Any]:
    try:
        return json.loads(ENDPOINTS.read_text())
    except (OSError, ValueError):
        return {}


def base_url() -> str:
    url = os.environ.get("MOVIERECS_API_URL") or _endpoints().get("api") or ""
    if not url:
        raise ApiError("The API address is not configured: start the stack with `make up`.")
    return url.rstrip("/")


def _admin_key() -> str:
    return os.environ.get("MOVIERECS_ADMIN_API_KEY") or _endpoints().get("admin_api_key") or ""


def _call(method: str, path: str, *, params: dict | None = None, body: dict | None = None,
          admin: bool = False) -> dict[str, Any]:
    headers = {"accept": "application/json"}
    if admin:
        headers["x-api-key"] = _admin_key()
    try:
        resp = _session.request(method, base_url() + path, params=params, json=body,
                                headers=headers, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise ApiError(f"The API did not answer ({type(exc).__name__}). Is the stack up?") from exc
    try:
        data = resp.json()
    except ValueError:
        data = {}
    if resp.status_code >= 400:
        msg = data.get("error") if isinstance(data, dict) else None
        code = data.get("code") if isinstance(data, dict) else None
        raise ApiError(f"{msg or resp.reason or 'request failed'} (HTTP {resp.status_code})",
                       resp.status_code, str(code) if code else None)
    return data if isinstance(data, dict) else {}


def _listing_params(k: int, filters: Filters, cursor: str | None) -> dict[str, Any]:
    params: dict[str, Any] = {"k": k, **filters.params()}
    if cursor:
        params["cursor"] = cursor
    return params


def recommendations(user_id: int, k: int, filters: Filters = NO_FILTERS,
                    cursor: str | None = None) -> dict[str, Any]:
    """One page of the user's list; `cursor` is the previous page's `next_cursor`."""
    return _call("GET", "/recommendations",
                 params={"user_id": user_id, **_listing_params(k, filters, cursor)})


def similar(movie_id: int, k: int, filters: Filters = NO_FILTERS,
            cursor: str | None = None) -> dict[str, Any]:
    return _call("GET", f"/movies/{movie_id}/similar", params=_listing_params(k, filters, cursor))


def movie(movie_id: int) -> dict[str, Any]:
    return _call("GET", f"/movies/{movie_id}")


def user_likes(user_id: int, limit: int = 10) -> dict[str, Any]:
    return _call("GET", f"/users/{user_id}/likes", params={"limit": limit})


def like(user_id: int, movie_id: int) -> dict[str, Any]:
    return _call("POST", "/likes", body={"user_id": user_id, "movie_id": movie_id,
                                          "event_id": uuid.uuid4().hex})


def feedback(user_id: int, movie_id: int, kind: str) -> dict[str, Any]:
    """POST /feedback: kind is like, unlike or not_interested (issue 12)."""
    return _call("POST", "/feedback", body={"user_id": user_id, "movie_id": movie_id, "type": kind,
                                             "event_id": uuid.uuid4().hex})


def admin_stats(minutes: int) -> dict[str, Any]:
    return _call("GET", "/admin/stats", params={"minutes": minutes}, admin=True)


def admin_errors(limit: int = 20) -> dict[str, Any]:
    return _call("GET", "/admin/errors", params={"limit": limit}, admin=True)


def admin_models() -> dict[str, Any]:
    return _call("GET", "/admin/models", admin=True)


def admin_reload(version: str | None) -> dict[str, Any]:
    return _call("POST", "/admin/reload", body={"version": version} if version else {}, admin=True)


def admin_retrain() -> dict[str, Any]:
    return _call("POST", "/admin/retrain", body={}, admin=True)


def admin_experiments() -> dict[str, Any]:
    """GET /admin/experiments: every experiment with its report, newest first."""
    return _call("GET", "/admin/experiments", admin=True)


def admin_start_experiment(body: dict[str, Any]) -> dict[str, Any]:
    """POST /admin/experiments: 201 with the experiment; 400/404/409 become ApiError."""
    return _call("POST", "/admin/experiments", body=body, admin=True)


def admin_stop_experiment(experiment_id: str, decision: str) -> dict[str, Any]:
    """POST /admin/experiments/{id}/stop with "promote" or "keep"; 409 if it is not running."""
    return _call("POST", f"/admin/experiments/{experiment_id}/stop", body={"decision": decision},
                 admin=True)
