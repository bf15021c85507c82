"""Online experiments between two model versions (issue 13; docs/EXPERIMENTS.md).

- **Assignment** is sticky per user: the first 8 bytes of sha256("<experiment>:<user>") as a
  fraction below ``share`` put the user in the candidate arm, on every request and in every
  execution environment, with no per-user state.
- **The metric** is each user's own like-rate (``online``), users being the unit assigned.
- **The test** is an asymptotic confidence sequence (Waudby-Smith, Arbour, Sinha, Kennedy and
  Ramdas 2021, "Time-uniform central limit theory and asymptotic confidence sequences") for the
  difference candidate - control of the mean user like-rate (augmented inverse-probability
  weighting under the known share, ``confidence_sequence``). Its interval holds at every
  look simultaneously with probability 1 - alpha, so the operator and the scheduled check may
  look as often as they like without inflating false winners (a fixed-sample z-test looked at
  hourly would not); it needs no planned sample size (``rho`` only tunes where it is tightest).
- **Stopping rules**: once ``min_impressions`` are in, the experiment ends as soon as the
  interval excludes 0 (candidate better: promote; worse: keep). At ``max_hours`` it ends
  anyway: promote when the candidate is not shown worse, keep when it is or when fewer than
  ``min_impressions`` arrived (nothing learnt, the control stays).
"""
from __future__ import annotations

import hashlib
import math
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .errors import ApiError, bad_request, not_found

ARMS = ("control", "candidate")
DECISIONS = ("promote", "keep")
_VERSION_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
DEFAULT_MIN_IMPRESSIONS = 2000
DEFAULT_MAX_HOURS = 72.0
DEFAULT_ALPHA = 0.05


@dataclass(frozen=True)
class Experiment:
    """One experiment as stored (``stores.postgres.EXPERIMENT_COLUMNS``)."""

    experiment_id: str
    control: str
    candidate: str
    share: float
    min_impressions: int
    max_hours: float
    alpha: float
    status: str  # running | concluded (by its rules) | stopped (by hand)
    created_at: datetime
    decision: str | None = None
    reason: str | None = None
    ended_at: datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Experiment":
        return cls(**{**row, "share": float(row["share"]), "max_hours": float(row["max_hours"]),
                      "alpha": float(row["alpha"]), "min_impressions": int(row["min_impressions"])})

    def arm(self, user_id: int) -> str:
        """The user's arm, the same on every call."""
        digest = hashlib.sha256(f"{self.experiment_id}:{user_id}".encode()).digest()
        return "candidate" if int.from_bytes(digest[:8], "big") / 2**64 < self.share else "control"

    def version(self, arm: str) -> str:
        return self.candidate if arm == "candidate" else self.control

    def to_json(self) -> dict[str, Any]:
        iso = (lambda t: None if t is None else t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z"))
        return {"experiment_id": self.experiment_id, "control": self.control, "candidate": self.candidate,
                "share": self.share, "min_impressions": self.min_impressions, "max_hours": self.max_hours,
                "alpha": self.alpha, "status": self.status, "decision": self.decision, "reason": self.reason,
                "created_at": iso(self.created_at), "ended_at": iso(self.ended_at)}


# -- the request ------------------------------------------------------------------------------
def _number(body: dict[str, Any], name: str, default: float, low: float, high: float, *, integer: bool = False,
            open_interval: bool = False) -> float:
    raw = body.get(name, default)
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or (integer and not float(raw).is_integer()):
        raise bad_request(f"'{name}' must be a{'n integer' if integer else ' number'}, got {str(raw)[:40]}")
    value = float(raw)
    inside = low < value < high if open_interval else low <= value <= high
    if not math.isfinite(value) or not inside:
        bounds = f"strictly between {low:g} and {high:g}" if open_interval else f"between {low:g} and {high:g}"
        raise bad_request(f"'{name}' must be {bounds}, got {value:g}")
    return value


def new_experiment(body: Any, known_versions: set[str], now: datetime | None = None) -> dict[str, Any]:
    """Validate a POST /admin/experiments body into the row to insert; 400s say what is wrong.
    The same version in both arms is allowed: an A/A test checks the metric and the test."""
    if not isinstance(body, dict):
        raise bad_request('the body must be a JSON object such as {"control": "...", "candidate": "...", "share": 0.1}')
    unknown = sorted(set(body) - {"control", "candidate", "share", "min_impressions", "max_hours", "alpha"})
    if unknown:
        raise bad_request(f"unknown field(s) {', '.join(unknown)}; accepted: control, candidate, share, "
                          "min_impressions, max_hours, alpha")
    versions = {}
    for arm in ARMS:
        v = body.get(arm)
        if not isinstance(v, str) or not _VERSION_RE.match(v):
            raise bad_request(f"'{arm}' must be a model version such as 20261127T031500Z-1a2b3c4d (see GET /admin/models)")
        if v not in known_versions:
            raise ApiError(404, f"model version {v} ('{arm}') does not exist; GET /admin/models lists the versions")
        versions[arm] = v
    return {
        "experiment_id": "exp-" + uuid.uuid4().hex[:12], **versions,
        "share": _number(body, "share", 0.1, 0.0, 1.0, open_interval=True),
        "min_impressions": int(_number(body, "min_impressions", DEFAULT_MIN_IMPRESSIONS, 10, 10**9, integer=True)),
        "max_hours": _number(body, "max_hours", DEFAULT_MAX_HOURS, 0.001, 24 * 90),
        "alpha": _number(body, "alpha", DEFAULT_ALPHA, 0.0, 0.5, open_interval=True),
        "created_at": now or datetime.now(timezone.utc),
    }


def stop_request(body: Any) -> str:
    """The decision of POST /admin/experiments/{id}/stop."""
    if not isinstance(body, dict) or body.get("decision") not in DECISIONS:
        raise bad_request('the body must be {"decision": "promote"} or {"decision": "keep"}')
    return body["decision"]


def check_id(raw: str) -> str:
    if not re.match(r"^exp-[0-9a-f]{12}$", raw or ""):
        raise bad_request(f"'experiment_id' must look like exp-0123456789ab, got '{str(raw)[:40]}'")
    return raw


# -- the test ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArmStats:
    """One arm's counts: users, impressions, converted impressions, the sum of the users'
    rates and of their squares (``stores.clickhouse.arm_users``)."""

    users: int = 0
    impressions: int = 0
    converted: int = 0
    s1: float = 0.0
    s2: float = 0.0

    @property
    def rate(self) -> float | None:
        return self.s1 / self.users if self.users else None


@dataclass(frozen=True)
class Verdict:
    difference: float | None  # candidate - control, mean user like-rate
    interval: tuple[float, float] | None  # always valid at level 1 - alpha
    decision: str | None  # promote | keep | None (keep running)
    reason: str


def confidence_sequence(control: ArmStats, candidate: ArmStats, share: float, alpha: float,
                        planned: int) -> tuple[float, tuple[float, float]] | None:
    """The difference of the arms' mean user like-rates and its asymptotic confidence sequence.

    The per-user influence term of the difference under a known share is
    ``Z (r - mu_B) / share - (1 - Z) (r - mu_A) / (1 - share) + (mu_B - mu_A)``, whose variance
    is ``var_B / share + var_A / (1 - share)`` (augmented IPW with the arm means plugged in:
    far tighter than plain IPW when rates are far from 0). ``planned`` (users) only sets where
    the sequence is tightest; it is valid at every ``n`` whatever it is."""
    if control.users < 2 or candidate.users < 2:
        return None

    def mean_var(a: ArmStats) -> tuple[float, float]:
        mu = a.s1 / a.users
        return mu, max(a.s2 / a.users - mu * mu, 0.0) * a.users / (a.users - 1)

    (mu_a, var_a), (mu_b, var_b) = mean_var(control), mean_var(candidate)
    n = control.users + candidate.users
    var = max(var_b / share + var_a / (1 - share), 1e-12)
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / min(max(planned, 100), 100_000)
    half = math.sqrt(var) * math.sqrt(2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha))
    diff = mu_b - mu_a
    return diff, (diff - half, diff + half)


def verdict(exp: Experiment, control: ArmStats, candidate: ArmStats, now: datetime) -> Verdict:
    """What the stopping rules say now."""
    impressions = control.impressions + candidate.impressions
    planned = max(10, exp.min_impressions // 3)  # about three lists per user before the minimum
    cs = confidence_sequence(control, candidate, exp.share, exp.alpha, planned)
    diff, interval = (cs[0], cs[1]) if cs else (None, None)
    expired = now - exp.created_at >= timedelta(hours=exp.max_hours)
    if impressions >= exp.min_impressions and interval is not None:
        if interval[0] > 0:
            return Verdict(diff, interval, "promote", "the candidate's like-rate is higher (the interval excludes 0)")
        if interval[1] < 0:
            return Verdict(diff, interval, "keep", "the candidate's like-rate is lower (the interval excludes 0)")
        if expired:
            return Verdict(diff, interval, "promote", f"{exp.max_hours:g} h passed and the candidate is not worse")
    if expired:
        return Verdict(diff, interval, "keep", f"{exp.max_hours:g} h passed with {impressions} of "
                       f"{exp.min_impressions} impressions: not enough evidence, the control stays")
    return Verdict(diff, interval, None, f"running: {impressions} of at least {exp.min_impressions} impressions")


def report(exp: Experiment, arms: dict[str, ArmStats], now: datetime) -> dict[str, Any]:
    """GET /admin/experiments/{id}: the experiment, per arm counts and rate, the difference
    with its always-valid interval, and what the rules decide now."""
    from .online import wilson

    v = verdict(exp, arms.get("control", ArmStats()), arms.get("candidate", ArmStats()), now)
    per_arm = {}
    for arm in ARMS:
        a = arms.get(arm, ArmStats())
        lo, hi = wilson(a.converted, a.impressions)
        per_arm[arm] = {"version": exp.version(arm), "users": a.users, "impressions": a.impressions,
                        "converted": a.converted,
                        "rate": None if not a.impressions else round(a.converted / a.impressions, 6),
                        "ci95": [round(lo, 6), round(hi, 6)],
                        "user_rate": None if a.rate is None else round(a.rate, 6)}
    return {**exp.to_json(), "arms": per_arm,
            "difference": None if v.difference is None else round(v.difference, 6),
            "interval": None if v.interval is None else [round(x, 6) for x in v.interval],
            "test": "asymptotic confidence sequence (always valid) on the difference of mean user like-rates",
            "rules": {"decision": v.decision, "reason": v.reason}}


# -- the running experiment, as the recommend function sees it ---------------------------------
class Running:
    """The running experiment of an execution environment, re-read every ``ttl`` seconds (one
    indexed PostgreSQL read), so a start or a stop reaches every environment within seconds."""

    def __init__(self, read: Callable[[], dict[str, Any] | None], ttl: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self._read, self._ttl, self._clock = read, ttl, clock
        self._value: Experiment | None = None
        self._at = -1e18

    def get(self) -> Experiment | None:
        if self._clock() - self._at >= self._ttl:
            try:
                row = self._read()
                self._value = Experiment.from_row(row) if row else None
            except Exception:  # keep the last known state; the read path must not fail on it
                pass
            self._at = self._clock()
        return self._value


def missing(experiment_id: str) -> ApiError:
    return not_found(f"experiment {experiment_id} does not exist (GET /admin/experiments lists them)")


# -- what the admin routes and the scheduled check do -------------------------------------------
def _arms(ch: Any, exp: Experiment, window_seconds: int) -> dict[str, ArmStats]:
    from .admin import telemetry
    from .stores import clickhouse

    rows = telemetry(lambda: clickhouse.arm_users(ch, exp.experiment_id, exp.created_at, window_seconds))
    return {str(arm): ArmStats(int(u), int(n), int(k), float(s1), float(s2)) for arm, u, n, k, s1, s2 in rows}


def start(db: Any, store: Any, body: Any, now: datetime | None = None) -> dict[str, Any]:
    """POST /admin/experiments: 201 with the experiment; 409 while another one runs."""
    from .stores import postgres

    row = new_experiment(body, {v["version"] for v in store.list_versions()}, now)
    created = postgres.insert_experiment(db, **row)
    if created is None:
        running = postgres.running_experiment(db)
        which = f"experiment {running['experiment_id']} ({running['control']} vs {running['candidate']})" \
            if running else "another experiment"
        raise ApiError(409, f"{which} is running; one runs at a time: stop it first "
                            "(POST /admin/experiments/{id}/stop)")
    return Experiment.from_row(created).to_json()


def get(db: Any, ch: Any, experiment_id: str, window_seconds: int, now: datetime | None = None) -> dict[str, Any]:
    """GET /admin/experiments/{id}."""
    from .stores import postgres

    row = postgres.experiment(db, check_id(experiment_id))
    if row is None:
        raise missing(experiment_id)
    exp = Experiment.from_row(row)
    return report(exp, _arms(ch, exp, window_seconds), now or datetime.now(timezone.utc))


def listing(db: Any, ch: Any, window_seconds: int, now: datetime | None = None) -> dict[str, Any]:
    """GET /admin/experiments: the newest first, each with its report."""
    from .stores import postgres

    now = now or datetime.now(timezone.utc)
    items = [report(e, _arms(ch, e, window_seconds), now)
             for e in (Experiment.from_row(r) for r in postgres.experiments(db))]
    return {"items": items}


def end(db: Any, store: Any, exp: Experiment, status: str, decision: str, reason: str, cache_dir: str,
        now: datetime | None = None) -> dict[str, Any]:
    """Serve the winner to everyone, then mark the experiment ended. The pointer moves first
    (verified, as POST /admin/reload does): if that fails, the experiment keeps running and the
    versions keep serving as they were."""
    from . import admin
    from .stores import postgres

    admin.reload(store, exp.candidate if decision == "promote" else exp.control, cache_dir)
    ended = postgres.end_experiment(db, exp.experiment_id, status, decision, reason, now or datetime.now(timezone.utc))
    if ended is None:
        raise ApiError(409, f"experiment {exp.experiment_id} is not running (it ended already)")
    return Experiment.from_row(ended).to_json()


def stop(db: Any, store: Any, experiment_id: str, decision: str, cache_dir: str) -> dict[str, Any]:
    """POST /admin/experiments/{id}/stop: end it by hand with the operator's decision."""
    from .stores import postgres

    row = postgres.experiment(db, check_id(experiment_id))
    if row is None:
        raise missing(experiment_id)
    exp = Experiment.from_row(row)
    if exp.status != "running":
        raise ApiError(409, f"experiment {experiment_id} is not running (it is {exp.status}: {exp.decision})")
    return end(db, store, exp, "stopped", decision, f"stopped by an operator: {decision}", cache_dir)


def check(db: Any, store: Any, ch: Any, window_seconds: int, cache_dir: str,
          now: datetime | None = None) -> dict[str, Any]:
    """The scheduled rule's work: conclude the running experiment when its rules decide."""
    from .stores import postgres

    now = now or datetime.now(timezone.utc)
    row = postgres.running_experiment(db)
    if row is None:
        return {"running": None}
    exp = Experiment.from_row(row)
    v = verdict(exp, *(_arms(ch, exp, window_seconds).get(a, ArmStats()) for a in ARMS), now)
    if v.decision is None:
        return {"running": exp.experiment_id, "decision": None, "reason": v.reason}
    ended = end(db, store, exp, "concluded", v.decision, v.reason, cache_dir, now)
    return {"running": None, "concluded": ended}
