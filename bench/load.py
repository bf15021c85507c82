"""Load test: many GET /recommendations at a fixed concurrency while a steady stream of likes flows.

Why this shape: the two paths share the machine (2 cores), the functions' executor, Kafka,
ClickHouse and the model; serving must stay correct and error-free while ingest runs, and
every acknowledged like must end up stored exactly once. The mix covers the three serving
strategies: users in the model (personal), new users who have liked something (fold_in)
and users with no signal (popular). GET /health in the same run is the baseline: the same
API Gateway and executor path with no recommendation work.

Traffic goes only to the loopback API URL from `.movierecs/endpoints.json`; the run is
bounded by a request count and a time limit. Errors are counted and shown, never dropped.
"""
from __future__ import annotations

import argparse
import random
import sys
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import requests
from requests.adapters import HTTPAdapter

from bench import harness

KNOWN_USERS = (1, 6040)              # MovieLens 1M user ids: in the model
MOVIES = (1, 3883)                   # MovieLens 1M movie ids (docs/DATA.md)
NEW_USER_BASE = 1_500_000_000        # far above MovieLens; a random block per run, so truly new
KIND_LABEL = {"known": "known user", "new": "new user with likes", "popular": "user with no signal",
              "health": "GET /health (baseline)"}
EXPECTED_STRATEGY = {"known": "personal", "new": "fold_in", "popular": "popular"}


@dataclass
class LoadConfig:
    api: str
    requests: int = 20_000           # GET /recommendations (health probes come on top)
    concurrency: int = 16
    like_rate: float = 50.0          # likes per second during the whole run (issue 14: the broker no longer limits it)
    time_limit: float = 1500.0       # seconds; the run stops there whatever the count
    mix: tuple[float, float, float] = (0.6, 0.2, 0.2)   # known, new-with-likes, popular
    health_share: float = 0.05       # extra GET /health per recommendation request
    new_users: int = 200
    likes_per_new_user: int = 3
    k: int = 10
    seed: int = 7
    progress: bool = True
    request_timeout: float = 30.0


@dataclass
class LoadOutcome:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)            # (kind, error class) -> n
    error_samples: dict[str, str] = field(default_factory=dict)  # error class -> one message
    strategies: Counter = field(default_factory=Counter)        # (kind, strategy) -> n
    like_latencies: list[float] = field(default_factory=list)
    like_errors: Counter = field(default_factory=Counter)
    acked_event_ids: list[str] = field(default_factory=list)
    likes_sent: int = 0
    setup_likes: int = 0
    done: int = 0
    elapsed: float = 0.0
    like_elapsed: float = 0.0
    stopped_by_time: bool = False
    event_prefix: str = ""
    check_error: str = ""                                     # the storage check could not run
    drain: list[tuple[float, int]] = field(default_factory=list)  # (s after the stream stopped, stored)


def _session(pool: int) -> requests.Session:
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=pool, max_retries=0))
    return s


def _classify(resp: requests.Response | None, exc: BaseException | None) -> str:
    if exc is not None:
        return type(exc).__name__
    assert resp is not None
    return f"HTTP {resp.status_code}"


def post_like(session: requests.Session, api: str, user_id: int, movie_id: int, event_id: str,
              timeout: float = 30.0) -> tuple[float, str | None, str]:
    """POST /likes once; returns (ms, error class or None, message)."""
    t0 = time.perf_counter()
    try:
        r = session.post(f"{api}/likes", json={"user_id": user_id, "movie_id": movie_id, "event_id": event_id},
                         timeout=timeout)
    except requests.RequestException as e:
        return (time.perf_counter() - t0) * 1000, type(e).__name__, str(e)[:300]
    ms = (time.perf_counter() - t0) * 1000
    if r.status_code != 202:
        return ms, f"HTTP {r.status_code}", r.text[:300]
    try:
        got = r.json().get("event_id")
    except ValueError:
        return ms, "bad JSON", r.text[:300]
    if got != event_id:
        return ms, "event_id mismatch", f"sent {event_id}, got {got}"
    return ms, None, ""


class LikeStream:
    """A steady stream of likes at `rate`/s on a few threads, until stopped or `limit` sent."""

    def __init__(self, api: str, rate: float, users: Callable[[random.Random], int], prefix: str,
                 outcome: LoadOutcome, seed: int = 11, threads: int | None = None, limit: int | None = None,
                 timeout: float = 30.0):
        self.api, self.rate, self.users, self.prefix, self.out = api, rate, users, prefix, outcome
        self.rnd = random.Random(seed)
        self.limit = limit
        # enough posters for the rate even when one POST takes ~1 s on a loaded machine
        threads = threads or max(4, min(64, int(rate) + 4))
        self.in_flight = threading.BoundedSemaphore(threads)
        self.timeout = timeout
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="likes")
        self.session = _session(threads)
        self.thread = threading.Thread(target=self._loop, name="like-scheduler", daemon=True)
        self.t0 = 0.0

    def _one(self, user_id: int, movie_id: int, event_id: str) -> None:
        ms, err, msg = post_like(self.session, self.api, user_id, movie_id, event_id, self.timeout)
        with self.lock:
            self.out.like_latencies.append(ms)
            if err:
                self.out.like_errors[err] += 1
                self.out.error_samples.setdefault(f"POST /likes {err}", msg)
            else:
                self.out.acked_event_ids.append(event_id)

    def _guarded(self, user_id: int, movie_id: int, event_id: str) -> None:
        try:
            self._one(user_id, movie_id, event_id)
        finally:
            self.in_flight.release()

    def _loop(self) -> None:
        self.t0 = time.perf_counter()
        i = 0
        while not self.stop_event.is_set() and (self.limit is None or i < self.limit):
            due = self.t0 + i / self.rate
            now = time.perf_counter()
            if due > now:
                self.stop_event.wait(due - now)
                continue
            # never queue more than the posters can carry: a late like is sent late, not piled up
            if not self.in_flight.acquire(timeout=0.5):
                continue
            ev = f"{self.prefix}-{i}"
            self.pool.submit(self._guarded, self.users(self.rnd), self.rnd.randint(*MOVIES), ev)
            i += 1
            with self.lock:
                self.out.likes_sent += 1

    def start(self) -> "LikeStream":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join()
        self.out.like_elapsed = time.perf_counter() - self.t0
        self.pool.shutdown(wait=True)  # the few in flight finish (bounded by the request timeout)


def stored_likes(clickhouse_url: str, prefix: str) -> dict[str, int]:
    """How the likes whose event id starts with `prefix` are stored in ClickHouse.

    Returns rows (FINAL), unique event ids (FINAL) and raw rows (before ReplacingMergeTree has
    merged duplicates away: a redelivery shows up there first).
    """
    from movierecs_core.stores import clickhouse

    client = clickhouse.connect(harness._require_loopback(clickhouse_url))
    try:
        p = {"p": prefix}
        rows, uniq = client.query(
            "SELECT count(), uniqExact(event_id) FROM movierecs.likes FINAL WHERE startsWith(event_id, {p:String})",
            parameters=p).result_rows[0]
        raw = client.query("SELECT count() FROM movierecs.likes WHERE startsWith(event_id, {p:String})",
                           parameters=p).result_rows[0][0]
        return {"rows": int(rows), "unique": int(uniq), "raw_rows": int(raw)}
    finally:
        client.close()


def stored_event_ids(clickhouse_url: str, prefix: str) -> set[str]:
    """The distinct stored event ids with this prefix (to name the missing ones)."""
    from movierecs_core.stores import clickhouse

    client = clickhouse.connect(harness._require_loopback(clickhouse_url))
    try:
        res = client.query("SELECT DISTINCT event_id FROM movierecs.likes WHERE startsWith(event_id, {p:String})",
                           parameters={"p": prefix})
        return {r[0] for r in res.result_rows}
    finally:
        client.close()


def serving_event_ids(postgres_dsn: str, prefix: str) -> list[str]:
    """Event ids with this prefix in the serving state (PostgreSQL ``user_events``), one per row:
    the primary key (user_id, event_id) allows one row per event, so a repeat would show as a
    second user or never; compare with :func:`stored_event_ids` for agreement."""
    from movierecs_core.stores import postgres

    conn = postgres.connect(harness._require_loopback(postgres_dsn))
    try:
        return [r[0] for r in conn.run("SELECT event_id FROM user_events WHERE starts_with(event_id, :p)", p=prefix)]
    finally:
        conn.close()


def wait_stored(clickhouse_url: str, prefix: str, expected: int, timeout: float = 60.0,
                series: list[tuple[float, int]] | None = None) -> dict[str, int]:
    """Poll until `expected` unique likes with `prefix` are stored (or the timeout); last counts.

    `series`, if given, receives (seconds since the wait began, unique stored) per poll: the
    consumer's drain curve.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout
    while True:
        got = stored_likes(clickhouse_url, prefix)
        if series is not None:
            series.append((round(time.monotonic() - t0, 2), got["unique"]))
        if got["unique"] >= expected or time.monotonic() > deadline:
            got["waited_s"] = round(time.monotonic() - t0, 1)
            return got
        time.sleep(1.0)


def run_load(cfg: LoadConfig) -> LoadOutcome:
    """Set up new users with likes, then run the GET mix and the like stream together."""
    harness._require_loopback(cfg.api)
    api = cfg.api.rstrip("/")
    rnd = random.Random(cfg.seed)
    out = LoadOutcome(event_prefix=f"load-{uuid.uuid4().hex[:10]}")
    block = NEW_USER_BASE + random.Random().randrange(0, 500_000_000)
    new_users = [block + i for i in range(cfg.new_users)]
    no_signal_base = block + cfg.new_users + 1_000_000

    # 1. new users get a few likes (they become fold_in users); counted like the stream's likes
    setup_session = _session(8)
    setup = [(u, rnd.randint(*MOVIES), f"{out.event_prefix}-setup-{u}-{j}")
             for u in new_users for j in range(cfg.likes_per_new_user)]

    def do_setup(item: tuple[int, int, str]) -> None:
        ms, err, msg = post_like(setup_session, api, *item, timeout=cfg.request_timeout)
        if err:
            out.like_errors[err] += 1
            out.error_samples.setdefault(f"POST /likes {err}", msg)
        else:
            out.acked_event_ids.append(item[2])

    with ThreadPoolExecutor(max_workers=8) as ex:
        list(ex.map(do_setup, setup))
    out.setup_likes = len(setup)
    out.likes_sent += len(setup)
    time.sleep(5.0)  # the contract's visibility bound: a like is visible within 5 s

    # 2. the request plan: deterministic mix, GET /health interleaved as the baseline
    kinds = rnd.choices(["known", "new", "popular"], weights=cfg.mix, k=cfg.requests)
    plan: list[tuple[str, int]] = []
    for i, kind in enumerate(kinds):
        if kind == "known":
            uid = rnd.randint(*KNOWN_USERS)
        elif kind == "new":
            uid = rnd.choice(new_users)
        else:
            uid = no_signal_base + i  # never liked anything
        plan.append((kind, uid))
        if cfg.health_share > 0 and rnd.random() < cfg.health_share:
            plan.append(("health", 0))

    def stream_user(r: random.Random) -> int:  # likes go to known and new users, never to no-signal ones
        return r.choice(new_users) if r.random() < 0.3 else r.randint(*KNOWN_USERS)

    stream = LikeStream(api, cfg.like_rate, stream_user, out.event_prefix, out, timeout=cfg.request_timeout)

    lock = threading.Lock()
    next_i = [0]
    deadline = time.perf_counter() + cfg.time_limit
    bar = None
    if cfg.progress:
        from tqdm import tqdm
        bar = tqdm(total=len(plan), desc="load", unit="req", mininterval=1.0, file=sys.stderr)

    def worker() -> None:
        s = _session(1)
        lat_local: dict[str, list[float]] = defaultdict(list)
        while True:
            with lock:
                i = next_i[0]
                if i >= len(plan):
                    return _flush(lat_local)
                if time.perf_counter() > deadline:
                    out.stopped_by_time = True
                    return _flush(lat_local)
                next_i[0] += 1
            kind, uid = plan[i]
            url = f"{api}/health" if kind == "health" else f"{api}/recommendations"
            params = None if kind == "health" else {"user_id": uid, "k": cfg.k}
            resp, exc = None, None
            t0 = time.perf_counter()
            try:
                resp = s.get(url, params=params, timeout=cfg.request_timeout)
            except requests.RequestException as e:
                exc = e
            ms = (time.perf_counter() - t0) * 1000
            ok = resp is not None and resp.status_code == 200
            strategy = None
            if ok and kind != "health":
                try:
                    body = resp.json()
                    strategy = body.get("strategy")
                    items = body.get("items") or []
                    if len({it.get("movie_id") for it in items}) != len(items):
                        ok, exc = False, ValueError("repeated movie in items")
                except ValueError as e:
                    ok, exc = False, e
            with lock:
                out.done += 1
                if ok:
                    lat_local[kind].append(ms)
                    if strategy is not None:
                        out.strategies[(kind, strategy)] += 1
                else:
                    cls = _classify(resp, exc)
                    out.errors[(kind, cls)] += 1
                    out.error_samples.setdefault(f"GET {cls}", (resp.text[:300] if resp is not None else str(exc)[:300]))
                if bar is not None:
                    bar.update(1)

    def _flush(lat_local: dict[str, list[float]]) -> None:
        for k, v in lat_local.items():
            out.latencies[k].extend(v)

    stream.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, name=f"get-{n}", daemon=True) for n in range(cfg.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.elapsed = time.perf_counter() - t0
    stream.stop()
    if bar is not None:
        bar.close()
    return out


def figures(cfg: LoadConfig, out: LoadOutcome, stored: dict[str, int] | None, missing: list[str]) -> list[dict]:
    """Turn an outcome into report figures (latency by kind, summary, errors, strategies)."""
    series: dict[str, list[float]] = {}
    errs: dict[str, int] = {}
    all_get: list[float] = []
    for kind in ("known", "new", "popular"):
        series[f"{KIND_LABEL[kind]}"] = out.latencies.get(kind, [])
        all_get += out.latencies.get(kind, [])
    series["all GET /recommendations"] = all_get
    series[KIND_LABEL["health"]] = out.latencies.get("health", [])
    for (kind, _cls), n in out.errors.items():
        errs[KIND_LABEL[kind]] = errs.get(KIND_LABEL[kind], 0) + n
        if kind != "health":
            errs["all GET /recommendations"] = errs.get("all GET /recommendations", 0) + n
    get_errors = sum(n for (k, _), n in out.errors.items() if k != "health")
    get_done = len(all_get) + get_errors
    s = harness.summarize(all_get)
    acked = len(out.acked_event_ids)
    summary = {
        "GET /recommendations completed": (get_done, "requests"),
        "GET /recommendations errors": (get_errors, "requests"),
        "GET /health errors": (sum(n for (k, _), n in out.errors.items() if k == "health"), "requests"),
        "throughput (all GETs incl. health)": (round(out.done / out.elapsed, 1) if out.elapsed else 0.0, "req/s"),
        "throughput (GET /recommendations)": (round(get_done / out.elapsed, 1) if out.elapsed else 0.0, "req/s"),
        "p50 GET /recommendations": (round(s.get("p50", float("nan")), 2), "ms"),
        "p99 GET /recommendations": (round(s.get("p99", float("nan")), 2), "ms"),
        "wall time": (round(out.elapsed, 1), "s"),
        "stopped by the time limit": ("yes" if out.stopped_by_time else "no", ""),
        "likes sent (setup + stream)": (out.likes_sent, "likes"),
        "like stream rate achieved": (round((out.likes_sent - out.setup_likes) / out.like_elapsed, 1)
                                      if out.like_elapsed else 0.0, "likes/s"),
        "likes acknowledged (202)": (acked, "likes"),
        "like errors": (sum(out.like_errors.values()), "likes"),
    }
    if out.drain:
        (t_a, n_a), (t_b, n_b) = out.drain[0], out.drain[-1]
        summary["likes stored when the stream stopped"] = (n_a, "likes")
        summary["waited for the rest"] = (t_b, "s")
        summary["every acknowledged like stored within 5 s of the stream's end"] = (
            "yes" if n_b >= acked and t_b <= 5.0 else "no", "")
        summary["consumer drain rate after the stream"] = (round((n_b - n_a) / (t_b - t_a), 1) if t_b > t_a else 0.0,
                                                          "likes/s")
    if stored is not None:
        summary["likes stored (FINAL rows)"] = (stored["rows"], "likes")
        summary["likes stored (unique event ids)"] = (stored["unique"], "likes")
        summary["acknowledged but not stored"] = (len(missing), "likes")
        summary["raw rows before dedupe (redeliveries show here)"] = (stored["raw_rows"], "rows")
    else:
        summary["likes stored"] = (f"not checked: {out.check_error or 'no ClickHouse URL'}", "")
    err_rows = [[f"GET /recommendations ({KIND_LABEL[k]})" if k != "health" else "GET /health", cls, n,
                 out.error_samples.get(f"GET {cls}", "")[:160]] for (k, cls), n in sorted(out.errors.items())]
    err_rows += [["POST /likes", cls, n, out.error_samples.get(f"POST /likes {cls}", "")[:160]]
                 for cls, n in sorted(out.like_errors.items())]
    if missing:
        err_rows.append(["likes stored", "acknowledged, not in ClickHouse", len(missing), ", ".join(missing[:5])])
    if not err_rows:
        err_rows = [["(none)", "", 0, ""]]
    strat_rows = [[KIND_LABEL[k], EXPECTED_STRATEGY[k], st, n] for (k, st), n in sorted(out.strategies.items())]
    drain_fig = (harness.xy("like_drain", "Acknowledged likes stored in ClickHouse after the like stream stopped",
                            "seconds after the stream stopped", [t for t, _ in out.drain],
                            {"stored (unique event ids)": [n for _, n in out.drain],
                             "acknowledged": [acked for _ in out.drain]}, unit="likes", baseline="acknowledged",
                            note="The gap between the lines is the consumer's backlog: acknowledged by Kafka, "
                                 "not yet in ClickHouse. The wait is bounded; what is still missing at the end is "
                                 "counted in the summary.")
                 if len(out.drain) >= 2 else harness.unavailable("like_drain", "Likes stored after the stream stopped",
                                                                  "stored immediately (or ClickHouse not checked)"))
    return [
        harness.distribution(
            "load_latency", f"GET /recommendations under load: concurrency {cfg.concurrency}, "
            f"{cfg.like_rate:g} likes/s flowing", series, unit="ms", baseline=KIND_LABEL["health"], errors=errs,
            note=(f"{cfg.requests:,} GET /recommendations (mix known/new-with-likes/no-signal = "
                  f"{'/'.join(f'{m:g}' for m in cfg.mix)}, k={cfg.k}) from {cfg.concurrency} threads with keep-alive, "
                  f"plus GET /health on the same path as the baseline; failed requests are counted as errors, "
                  f"not as latencies.")),
        harness.distribution("like_latency", f"POST /likes under the same load ({cfg.like_rate:g}/s target)",
                             {"POST /likes": out.like_latencies}, unit="ms",
                             errors={"POST /likes": sum(out.like_errors.values())}),
        harness.scalars("load_summary", "Load test summary", summary),
        harness.table("load_errors", "Errors during the load test", ["what", "error", "count", "sample"], err_rows),
        harness.table("load_strategies", "Strategy served per kind of user", ["user", "expected", "served", "count"],
                      strat_rows),
        drain_fig,
    ]


def execute(cfg: LoadConfig, clickhouse_url: str | None, drain_timeout: float = 180.0
            ) -> tuple[LoadOutcome, dict | None, list[str]]:
    """Run the load, then wait (bounded) for every acknowledged like to be stored and check it."""
    out = run_load(cfg)
    stored, missing = None, []
    if clickhouse_url:
        try:
            stored = wait_stored(clickhouse_url, out.event_prefix, len(out.acked_event_ids), timeout=drain_timeout,
                                 series=out.drain)
            if stored["unique"] < len(out.acked_event_ids):
                have = stored_event_ids(clickhouse_url, out.event_prefix)
                missing = sorted(set(out.acked_event_ids) - have)
        except Exception as e:  # noqa: BLE001 - reported in the summary, not hidden
            out.check_error = f"{type(e).__name__}: {e}"[:300]
    return out, stored, missing


def measure(cfg: LoadConfig, clickhouse_url: str | None, drain_timeout: float) -> dict:
    """Run the load and return the protocol's result dict (figures, params, notes)."""
    out, stored, missing = execute(cfg, clickhouse_url, drain_timeout=drain_timeout)
    get_errors = sum(out.errors.values())
    notes = (f"Errors: {get_errors} GET, {sum(out.like_errors.values())} POST /likes, "
             f"{len(missing)} acknowledged likes missing from ClickHouse after a {drain_timeout:.0f} s wait. "
             f"Zero of each is expected.")
    params = {"requests": cfg.requests, "concurrency": cfg.concurrency, "like_rate": cfg.like_rate,
              "time_limit_s": cfg.time_limit, "mix_known_new_popular": list(cfg.mix), "k": cfg.k,
              "new_users": cfg.new_users, "event_prefix": out.event_prefix, "api": cfg.api}
    return {"figures": figures(cfg, out, stored, missing), "params": params, "notes": notes}


def run(quick: bool) -> dict:
    """Benchmark protocol entry (see bench/harness.py)."""
    ep = harness.endpoints()
    cfg = LoadConfig(api=ep["api"])
    if quick:
        cfg.requests, cfg.like_rate, cfg.time_limit, cfg.new_users = 2_000, 20.0, 180.0, 40
    return measure(cfg, ep.get("clickhouse"), drain_timeout=90.0 if quick else 180.0)


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0] +
                                 " Writes bench/results/load.json (same as `python -m bench --only load`).")
    ap.add_argument("--quick", action="store_true", help="2,000 requests, 20 likes/s")
    ap.add_argument("--requests", type=int, help="GET /recommendations to send (default 20000)")
    ap.add_argument("--concurrency", type=int, help="parallel clients (default 16)")
    ap.add_argument("--like-rate", type=float, help="likes per second during the run (default 50)")
    ap.add_argument("--time-limit", type=float, help="stop after this many seconds (default 1500)")
    args = ap.parse_args()
    ep = harness.endpoints()
    cfg = LoadConfig(api=ep["api"])
    if args.quick:
        cfg.requests, cfg.like_rate, cfg.time_limit, cfg.new_users = 2_000, 20.0, 180.0, 40
    for name in ("requests", "concurrency", "like_rate", "time_limit"):
        v = getattr(args, name)
        if v is not None:
            if v <= 0:
                ap.error(f"--{name.replace('_', '-')} must be positive")
            setattr(cfg, name, v)
    command = "python -m bench.load " + " ".join(sys.argv[1:])
    started = harness.utc_now()
    t0 = time.perf_counter()
    try:
        res = measure(cfg, ep.get("clickhouse"), drain_timeout=90.0 if args.quick else 180.0)
        env = harness.envelope("load", status="ok", command=command.strip(), started_at=started,
                               duration_s=time.perf_counter() - t0, quick=args.quick, result=res)
    except Exception as e:  # noqa: BLE001
        env = harness.envelope("load", status="failed", command=command.strip(), started_at=started,
                               duration_s=time.perf_counter() - t0, quick=args.quick, error=f"{type(e).__name__}: {e}")
    harness.write_json(harness.RESULTS_DIR / "load.json", env)
    for f in env["figures"]:
        if f["id"] == "load_summary":
            for k, v in f["values"].items():
                print(f"  {k:50s} {v['value']} {v['unit']}")
    if env["error"]:
        print(env["error"], file=sys.stderr)
    return 0 if env["status"] == "ok" else 1


if __name__ == "__main__":
    sys.exit(main())
