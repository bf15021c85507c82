"""Reflex state of the ops page: stats charts, error log, model versions, reload, retrain,
the online like-rate per model version and the experiments panel (issue 13).

Split from state.py (the recommendations page) so each page's state stays small; the same
rules hold: async handlers, blocking API calls in threads, nothing secret in state.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
from typing import Any

import reflex as rx

from . import api, online


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


@dataclasses.dataclass
class OnlineSeries:
    """One model version's line (and band) in the like-rate chart."""

    version: str = ""
    key: str = ""
    band: str = ""
    color: str = ""
    fill: str = ""


@dataclasses.dataclass
class OnlineRow:
    version: str = ""
    color: str = ""
    impressions: int = 0
    converted: int = 0
    likes: int = 0
    rate: str = ""
    interval: str = ""
    arms: str = ""


@dataclasses.dataclass
class Arm:
    version: str = ""
    users: int = 0
    impressions: int = 0
    converted: int = 0
    rate: str = ""
    interval: str = ""
    user_rate: str = ""


@dataclasses.dataclass
class Experiment:
    """An experiment report as the panel shows it (strings from online.experiment_view)."""

    experiment_id: str = ""
    status: str = ""
    control: Arm = dataclasses.field(default_factory=Arm)
    candidate: Arm = dataclasses.field(default_factory=Arm)
    share: str = ""
    min_impressions: int = 0
    max_hours: str = ""
    difference: str = ""
    interval: str = ""
    test: str = ""
    level: str = ""
    rules_decision: str = ""
    rules_text: str = ""
    rules_reason: str = ""
    decision: str = ""
    reason: str = ""
    created_at: str = ""
    ended_at: str = ""


def _experiment(report: dict) -> Experiment:
    view = online.experiment_view(report)
    return Experiment(**{**view, "control": Arm(**view["control"]),
                         "candidate": Arm(**view["candidate"])})


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
    refreshes: int = 0         # finished refreshes: what a test waits on (seconds repeat)
    # The online like-rate (GET /admin/stats `online`).
    online_rows: list[dict[str, Any]] = []
    online_series: list[OnlineSeries] = []
    online_table: list[OnlineRow] = []
    like_window: str = ""
    # The experiments panel (GET /admin/experiments) and its start form.
    has_running: bool = False
    running: Experiment = Experiment()
    past: list[Experiment] = []
    version_choices: list[str] = []
    form_control: str = ""
    form_candidate: str = ""
    form_share: str = "0.1"
    form_min: str = "2000"
    form_hours: str = "72"
    start_busy: bool = False
    start_message: str = ""
    start_ok: bool = True
    confirm: str = ""          # "" | "promote" | "keep": the stop waiting for a confirmation
    confirm_text: str = ""
    stop_busy: bool = False
    stop_message: str = ""
    stop_ok: bool = True

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
        stats, errs, models, exps = await asyncio.gather(
            asyncio.to_thread(api.admin_stats, minutes),
            asyncio.to_thread(api.admin_errors, 20),
            asyncio.to_thread(api.admin_models),
            asyncio.to_thread(api.admin_experiments),
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
        if isinstance(exps, Exception):
            problems.append(f"experiments: {exps}")
        else:
            self._set_experiments(exps)
        self.error = "Could not load " + "; ".join(problems) if problems else ""
        self.updated = dt.datetime.now(dt.timezone.utc).strftime("%H:%M:%S UTC")
        self.refreshes += 1
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
        rows, series = online.online_chart(stats.get("online"))
        self.online_rows = rows
        self.online_series = [OnlineSeries(**x) for x in series]
        colors = {x["version"]: x["color"] for x in series}
        self.online_table = [OnlineRow(**r) for r in online.version_rows(stats.get("online"), colors)]
        window = (stats.get("online") or {}).get("window_seconds")
        self.like_window = f"{int(window) // 60} min" if isinstance(window, (int, float)) else ""

    def _set_experiments(self, data: dict) -> None:
        running, past = online.split_experiments(data.get("items"))
        self.has_running = running is not None
        self.running = _experiment(running) if running else Experiment()
        self.past = [_experiment(r) for r in past[:20]]

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
        self.version_choices = [v.version for v in self.versions]
        default = self.current or (self.version_choices[0] if self.version_choices else "")
        if self.form_control not in self.version_choices:
            self.form_control = default
        if self.form_candidate not in self.version_choices:
            self.form_candidate = default

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

    # -- experiments -------------------------------------------------------------------
    @rx.event
    def set_form_control(self, value: str):
        self.form_control = value

    @rx.event
    def set_form_candidate(self, value: str):
        self.form_candidate = value

    @rx.event
    def set_form_share(self, value: str):
        self.form_share = value

    @rx.event
    def set_form_min(self, value: str):
        self.form_min = value

    @rx.event
    def set_form_hours(self, value: str):
        self.form_hours = value

    @rx.event
    async def start_experiment(self, form_data: dict):
        for name in ("form_control", "form_candidate", "form_share", "form_min", "form_hours"):
            if name in form_data:
                setattr(self, name, str(form_data[name]))
        body, problem = online.start_body(self.form_control, self.form_candidate,
                                          self.form_share, self.form_min, self.form_hours)
        if body is None:
            self.start_message, self.start_ok = problem, False
            return
        self.start_busy, self.start_message = True, ""
        yield
        try:
            data = await asyncio.to_thread(api.admin_start_experiment, body)
        except api.ApiError as exc:
            self.start_busy = False
            self.start_message, self.start_ok = f"The experiment did not start: {exc}", False
            yield rx.toast.error(self.start_message)
            return
        self.start_busy = False
        self.start_message = (f"Experiment {data.get('experiment_id', '')} started: "
                              f"{data.get('control', '')} (control) vs {data.get('candidate', '')} "
                              f"(candidate), {online.experiment_view(data)['share']} of users in "
                              "the candidate arm.")
        self.start_ok = True
        yield rx.toast.success("Experiment started")
        async for update in self.refresh():
            yield update

    @rx.event
    def ask_stop(self, decision: str):
        """The first click: say what the stop will do and wait for a confirmation."""
        if not self.has_running or decision not in ("promote", "keep"):
            return
        self.confirm = decision
        self.confirm_text = online.stop_confirm_text(decision, self.running.control.version,
                                                     self.running.candidate.version)

    @rx.event
    def cancel_stop(self):
        self.confirm, self.confirm_text = "", ""

    @rx.event
    def confirm_open_change(self, is_open: bool):
        if not is_open:
            self.confirm, self.confirm_text = "", ""

    @rx.event
    async def stop_experiment(self):
        decision, experiment_id = self.confirm, self.running.experiment_id
        self.confirm, self.confirm_text = "", ""
        if decision not in ("promote", "keep") or not experiment_id:
            return
        self.stop_busy, self.stop_message = True, ""
        yield
        try:
            data = await asyncio.to_thread(api.admin_stop_experiment, experiment_id, decision)
        except api.ApiError as exc:
            self.stop_busy = False
            self.stop_message, self.stop_ok = f"Stopping {experiment_id} failed: {exc}", False
            yield rx.toast.error(self.stop_message)
        else:
            self.stop_busy = False
            self.stop_message, self.stop_ok = online.stop_result_text(data), True
            yield rx.toast.success(self.stop_message)
        # Either way the models and experiments may have changed (a 409: it ended already).
        async for update in self.refresh():
            yield update
