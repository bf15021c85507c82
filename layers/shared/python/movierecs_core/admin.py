"""The admin endpoints' logic: key check, model reload, retrain, models, stats, errors.

The admin key is enforced twice: by API Gateway (API key + usage plan) and here with a
constant-time comparison against ``ADMIN_API_KEY``, so a gateway that does not enforce API
keys (LocalStack's free edition may not) still refuses: 401 without a key, 403 with a wrong one.
"""
from __future__ import annotations

import hmac
import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, TypeVar

from .errors import ApiError, bad_request, not_found, unavailable
from .events import format_ts
from .stores import Unavailable, clickhouse


# -- key ---------------------------------------------------------------------------------
def check_key(provided: str | None, expected: str) -> None:
    """401 when no key was sent, 403 when it is wrong (or when no key is configured at all)."""
    if not provided:
        raise ApiError(401, "this is an admin route: send the admin key in the x-api-key header")
    if not expected:
        raise ApiError(403, "the admin API is disabled: no admin key is configured for this deployment")
    if not hmac.compare_digest(provided.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise ApiError(403, "the x-api-key header does not hold the admin key")


# -- models ------------------------------------------------------------------------------
class ModelStoreAPI(Protocol):
    """What the admin endpoints need of ``movierecs_serving.ModelStore`` (given, never imported)."""

    NotFound: type[Exception]
    Invalid: type[Exception]

    @staticmethod
    def is_valid_version(version: object) -> bool: ...

    def current_version(self) -> str | None: ...

    def list_versions(self) -> list[dict[str, Any]]: ...

    def load(self, version: str, cache_dir: str) -> Any: ...

    def promote(self, version: str) -> Any: ...


def reload(store: ModelStoreAPI, version: str | None, cache_dir: str) -> dict[str, str]:
    """Verify ``version`` (download + checksums) and point ``models/CURRENT`` at it.

    ``version`` None means the currently promoted one (re-verified and re-announced).
    """
    if version is not None and (not isinstance(version, str) or not store.is_valid_version(version)):
        raise bad_request(
            f"'version' must look like 20261127T031500Z-1a2b3c4d (see GET /admin/models), got {json.dumps(version)[:60]}"
        )
    try:
        target = version or store.current_version()
    except Exception as exc:
        raise unavailable(f"the model store is unavailable ({type(exc).__name__})") from exc
    if target is None:
        raise not_found("no model has been promoted yet: train one (POST /admin/retrain) or give a 'version'")
    try:
        store.load(target, cache_dir)
        store.promote(target)
    except store.NotFound:
        raise not_found(f"model version {target} does not exist; GET /admin/models lists the versions") from None
    except store.Invalid as exc:
        raise ApiError(409, f"model version {target} failed verification and was not promoted: {exc}") from None
    return {"model_version": target}


def models(store: ModelStoreAPI) -> dict[str, Any]:
    """The contract's ``{"current", "versions": [...]}``, newest first."""
    try:
        current = store.current_version()
        versions = store.list_versions()
    except Exception as exc:
        raise unavailable(f"the model store is unavailable ({type(exc).__name__})") from exc
    keep = ("version", "created_at", "promoted", "metrics", "status")
    return {"current": current, "versions": [{k: v.get(k) for k in keep} for v in versions]}


# -- retrain -----------------------------------------------------------------------------
def retrain(sfn: Any, state_machine_arn: str, body: Any = None) -> dict[str, str]:
    """Start the retraining state machine; returns ``{"execution_arn"}``. ``body`` may hold
    ``{"canary": {"share": 0.1, ...}}``: start an experiment instead of promoting at once."""
    extra: dict[str, Any] = {}
    if body is not None:
        if not isinstance(body, dict) or set(body) - {"canary"} or not isinstance(body.get("canary", {}), dict):
            raise bad_request('the body must be empty or {"canary": {"share": 0.1, "min_impressions": 2000, "max_hours": 72}}')
        extra = body
    if not state_machine_arn:
        raise unavailable("the retraining workflow is not configured (STATE_MACHINE_ARN is empty)")
    name = "admin-" + datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    try:
        resp = sfn.start_execution(stateMachineArn=state_machine_arn, name=name, input=json.dumps({"trigger": "admin", **extra}))
    except Exception as exc:
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", "") if hasattr(exc, "response") else ""
        if code in ("StateMachineDoesNotExist", "ResourceNotFoundException"):
            raise unavailable("the retraining workflow is not deployed (no state machine movierecs-retrain)") from exc
        raise unavailable(f"could not start the retraining workflow ({type(exc).__name__}: {code})") from exc
    return {"execution_arn": resp["executionArn"]}


# -- stats -------------------------------------------------------------------------------
def _minute(t: Any) -> datetime:
    if isinstance(t, datetime):
        return (t if t.tzinfo else t.replace(tzinfo=timezone.utc)).replace(second=0, microsecond=0)
    raise TypeError(f"unexpected minute {t!r}")


def _iso_minute(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:00Z")


T = TypeVar("T")


def telemetry(read: Callable[[], T]) -> T:
    """Run one ClickHouse read of the admin; the store being down is ``Unavailable`` (a 503)."""
    try:
        return read()
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"the telemetry store (ClickHouse) is unavailable ({type(exc).__name__})") from exc


def stats(ch: Any, minutes: int, now: datetime | None = None) -> dict[str, Any]:
    """Per-minute series over the last ``minutes`` minutes; count series have every minute (0 if idle)."""
    now = (now or datetime.now(timezone.utc)).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes - 1)
    req_rows = telemetry(lambda: clickhouse.request_minutes(ch, start))
    like_rows = telemetry(lambda: clickhouse.like_minutes(ch, start))
    req = {_minute(t): (int(n), int(e), float(p50), float(p95)) for t, n, e, p50, p95 in req_rows}
    lik = {_minute(t): int(n) for t, n in like_rows}
    grid = [start + timedelta(minutes=i) for i in range(minutes)]
    return {
        "minutes": minutes,
        "requests": [{"t": _iso_minute(m), "v": req.get(m, (0,))[0]} for m in grid],
        "errors": [{"t": _iso_minute(m), "v": req[m][1] if m in req else 0} for m in grid],
        "latency_p50_ms": [{"t": _iso_minute(m), "v": round(req[m][2], 3)} for m in grid if m in req],
        "latency_p95_ms": [{"t": _iso_minute(m), "v": round(req[m][3], 3)} for m in grid if m in req],
        "likes": [{"t": _iso_minute(m), "v": lik.get(m, 0)} for m in grid],
    }


def feedback_stats(ch: Any, db: Any, minutes: int, now: datetime | None = None) -> dict[str, Any]:
    """Issue 12's per-minute counts for GET /admin/stats: feedback events by type (ClickHouse)
    and users forgotten (PostgreSQL tombstones), every minute present (0 if idle)."""
    from .events import TYPES
    from .stores import postgres

    now = (now or datetime.now(timezone.utc)).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes - 1)
    try:
        fb_rows = clickhouse.feedback_minutes(ch, start)
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"the telemetry store (ClickHouse) is unavailable ({type(exc).__name__})") from exc
    deleted = {_minute(t): int(n) for t, n in postgres.deletion_minutes(db, start)}
    by_type: dict[str, dict[datetime, int]] = {t: {} for t in TYPES}
    for t, kind, n in fb_rows:
        if kind in by_type:
            by_type[kind][_minute(t)] = int(n)
    grid = [start + timedelta(minutes=i) for i in range(minutes)]
    return {
        "feedback": {kind: [{"t": _iso_minute(m), "v": counts.get(m, 0)} for m in grid] for kind, counts in by_type.items()},
        "deletions": [{"t": _iso_minute(m), "v": deleted.get(m, 0)} for m in grid],
    }


def consumer_lag(bootstrap: str, group: str, topic: str,
                 lag_of: Callable[[str, str, str], list[dict[str, int]]] | None = None) -> dict[str, Any]:
    """The likes mapping's lag for GET /admin/stats: per partition committed vs log end.

    The broker being unreachable does not fail the stats (they come from ClickHouse): the
    answer then says why the lag is unknown.
    """
    if lag_of is None:
        from .stores.kafka import consumer_lag as lag_of
    try:
        parts = lag_of(bootstrap, group, topic)
    except Exception as exc:  # noqa: BLE001 - reported in the answer, not raised
        return {"group": group, "topic": topic, "total": None, "partitions": [],
                "error": f"the broker did not answer ({type(exc).__name__})"}
    return {"group": group, "topic": topic, "total": sum(p["lag"] for p in parts), "partitions": parts}


# -- errors ------------------------------------------------------------------------------
_UUID_RE = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")


def _parse_line(message: str) -> tuple[bool, str, str]:
    """(is_error, message, request_id) of one log line (Powertools JSON or plain text)."""
    text = message.strip()
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            level = str(doc.get("level", "")).upper()
            msg = str(doc.get("message", ""))
            if doc.get("exception"):
                msg = f"{msg}: {str(doc['exception']).strip().splitlines()[-1]}"
            rid = str(doc.get("request_id") or doc.get("function_request_id") or "")
            return level in ("ERROR", "CRITICAL"), msg, rid
    m = _UUID_RE.search(text)
    is_error = bool(re.search(r"\bERROR\b|Traceback|Task timed out|\[ERROR\]", text))
    return is_error, text[:2000], m.group(0) if m else ""


FILTER_PATTERN = '?ERROR ?CRITICAL ?Traceback ?"Task timed out"'
WINDOWS_MINUTES = (15, 120, 1440)  # widen the look-back only while too few lines were found


class _OverBudget(Exception):
    """The look-back ran out of its time budget."""


def _group_errors(logs: Any, group: str, start_ms: int, max_pages: int, deadline: float,
                  clock: Callable[[], float]) -> list[dict[str, Any]]:
    function = group.rsplit("/", 1)[-1]
    out: list[dict[str, Any]] = []
    token = None
    for _ in range(max_pages):
        if clock() > deadline:
            raise _OverBudget
        kw: dict[str, Any] = {"logGroupName": group, "startTime": start_ms, "filterPattern": FILTER_PATTERN}
        if token:
            kw["nextToken"] = token
        try:
            resp = logs.filter_log_events(**kw)
        except Exception as exc:
            if "ResourceNotFound" in type(exc).__name__ or "ResourceNotFound" in str(exc):
                return out  # the function has not logged anything yet
            raise
        for ev in resp.get("events", []):
            is_error, msg, rid = _parse_line(str(ev.get("message", "")))
            if is_error:
                ts = datetime.fromtimestamp(int(ev.get("timestamp", 0)) / 1000, tz=timezone.utc)
                out.append({"ts": format_ts(ts), "function": function, "message": msg, "request_id": rid})
        token = resp.get("nextToken")
        if not token:
            return out
    raise _OverBudget  # more pages than we read: this window is incomplete


def errors(logs: Any, groups: list[str], limit: int, clock: Callable[[], float] = time.time,
           max_pages: int = 5, budget_s: float = 4.0) -> dict[str, Any]:
    """Recent ERROR lines of the functions' log groups, newest first.

    The look-back starts at 15 minutes and widens (2 h, 24 h) only while fewer than ``limit``
    lines were found, within a time budget: LocalStack ignores filter patterns and pages
    through every event of a window, so a wider window that cannot be read completely is
    dropped and the last complete one is answered (FilterLogEvents pages oldest first).
    """
    deadline = clock() + budget_s
    items: list[dict[str, Any]] = []
    try:
        for minutes in WINDOWS_MINUTES:
            start_ms = int((clock() - minutes * 60) * 1000)
            try:
                found = [i for g in groups for i in _group_errors(logs, g, start_ms, max_pages, deadline, clock)]
            except _OverBudget:
                break
            items = found
            if len(items) >= limit:
                break
    except ApiError:
        raise
    except Exception as exc:
        raise unavailable(f"CloudWatch Logs is unavailable ({type(exc).__name__})") from exc
    items.sort(key=lambda i: i["ts"], reverse=True)
    return {"items": items[:limit]}
