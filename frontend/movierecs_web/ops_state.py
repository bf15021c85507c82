"""Reflex state of the ops page: stats charts, error log, model versions, reload, retrain.

Split from state.py (the recommendations page) so each page's state stays small; the same
rules hold: async handlers, blocking API calls in threads, nothing secret in state.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt

import reflex as rx

from . import api


@dataclasses.dataclass
class Version:
    version: str = ""
    created_at: str = ""
    status: str = ""
    promoted: bool = False
    current: bool = False
    metrics: str = ""


@dataclasses.dataclass
class ErrorLine:
    ts: str = ""
    function: str = ""
    message: str = ""
    request_id: str = ""


def merge_series(stats: dict) -> list[dict]:
    """The per-minute series from /admin/stats as one row per minute for the charts."""
    rows: dict[str, dict] = {}
    names = {"requests": "requests", "errors": "errors", "latency_p50_ms": "p50",
             "latency_p95_ms": "p95", "likes": "likes"}
    for key, col in names.items():
        for point in stats.get(key) or []:
            t = str(point.get("t", ""))
            row = rows.setdefault(t, {"t": t, "minute": t[11:16] or t, "requests": 0, "rps": 0.0,
                                      "errors": 0, "p50": None, "p95": None, "likes": 0})
            v = point.get("v")
            # A minute without requests has no latency: leave a gap, not a zero.
            row[col] = None if v is None and col in ("p50", "p95") else round(float(v or 0), 2)
    for row in rows.values():
        row["rps"] = round(row["requests"] / 60.0, 3)
    return [rows[t] for t in sorted(rows)]


def _ms(value: float) -> str:
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _fmt_metrics(metrics: dict) -> str:
    parts = []
    for name, value in sorted((metrics or {}).items()):
        parts.append(f"{name} {value:.4f}" if isinstance(value, float) else f"{name} {value}")
    return ", ".join(parts) or "—"


class OpsState(rx.State):
    """The ops page: stats charts, error log, model versions, reload/rollback, retrain."""

    minutes: str = "60"
    series: list[dict[str, float | int | str | None]] = []
    total_requests: int = 0
    total_errors: int = 0
    total_likes: int = 0
    latency_now: str = "–"
    peak_rps: float = 0.0
    errors: list[ErrorLine] = []
    versions: list[Version] = []
    current: str = ""
    loading: bool = False
    error: str = ""
    action_busy: str = ""
    result: str = ""
    result_ok: bool = True
    updated: str = ""

    @rx.event
    async def set_minutes(self, value: str):
        self.minutes = value
        async for update in self.refresh():
            yield update

    @rx.event
    async def refresh(self):
        self.loading, self.error = True, ""
        yield
        minutes = int(self.minutes) if self.minutes.isdigit() else 60
        stats, errs, models = await asyncio.gather(
            asyncio.to_thread(api.admin_stats, minutes),
            asyncio.to_thread(api.admin_errors, 20),
            asyncio.to_thread(api.admin_models),
            return_exceptions=True,
        )
        problems = []
        if isinstance(stats, Exception):
            problems.append(f"stats: {stats}")
        else:
            self._set_stats(stats)
        if isinstance(errs, Exception):
            problems.append(f"error log: {errs}")
        else:
            self.errors = [ErrorLine(ts=str(x.get("ts", "")), function=str(x.get("function", "")),
                                     message=str(x.get("message", "")),
                                     request_id=str(x.get("request_id", "")))
                           for x in errs.get("items", [])]
        if isinstance(models, Exception):
            problems.append(f"models: {models}")
        else:
            self._set_models(models)
        self.error = "Could not load " + "; ".join(problems) if problems else ""
        self.updated = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S UTC")
        self.loading = False

    def _set_stats(self, stats: dict) -> None:
        rows = merge_series(stats)
        self.series = rows
        self.total_requests = int(sum(r["requests"] for r in rows))
        self.total_errors = int(sum(r["errors"] for r in rows))
        self.total_likes = int(sum(r["likes"] for r in rows))
        self.peak_rps = max((r["rps"] for r in rows), default=0.0)
        busy = [r for r in rows if r["p50"] is not None and r["p95"] is not None]
        self.latency_now = (f"{_ms(busy[-1]['p50'])} / {_ms(busy[-1]['p95'])}" if busy else "–")

    def _set_models(self, models: dict) -> None:
        self.current = str(models.get("current") or "")
        versions = sorted(models.get("versions") or [], key=lambda v: str(v.get("created_at", "")),
                          reverse=True)
        self.versions = [Version(version=str(v.get("version", "")),
                                 created_at=str(v.get("created_at", ""))[:19].replace("T", " "),
                                 status=str(v.get("status", "")), promoted=bool(v.get("promoted")),
                                 current=str(v.get("version", "")) == self.current,
                                 metrics=_fmt_metrics(v.get("metrics") or {}))
                         for v in versions]

    @rx.event
    async def reload(self, version: str):
        self.action_busy, self.result = version, ""
        yield
        try:
            data = await asyncio.to_thread(api.admin_reload, version)
        except api.ApiError as exc:
            self.action_busy, self.result, self.result_ok = "", f"Reload of {version} failed: {exc}", False
            yield rx.toast.error(self.result)
            return
        self.result, self.result_ok = f"Now serving model {data.get('model_version', version)}.", True
        self.action_busy = ""
        yield rx.toast.success(self.result)
        async for update in self.refresh():
            yield update

    @rx.event
    async def retrain(self):
        self.action_busy, self.result = "retrain", ""
        yield
        try:
            data = await asyncio.to_thread(api.admin_retrain)
        except api.ApiError as exc:
            self.action_busy, self.result, self.result_ok = "", f"Retrain did not start: {exc}", False
            yield rx.toast.error(self.result)
            return
        self.action_busy = ""
        self.result, self.result_ok = f"Retraining started: {data.get('execution_arn', '')}", True
        yield rx.toast.success("Retraining started")
