"""The read path (issue 10): GET /recommendations against GET /health and GET /noop of the
same function, interleaved in one run, plus the in-handler time and the likes freshness.

* Latency: rounds of ``n`` calls per route, the routes interleaved round by round, so a
  machine that gets busier during the run slows every route alike. 1 client, then 8.
* In-handler time: the middleware's own ``latency_ms`` of each request (the telemetry rows in
  ClickHouse ``requests``: from the handler's first line to its response, the same span as
  the Powertools ``Latency`` metric), per route, for the requests of this run.
* Freshness: likes at 20/s for one new user, each of a movie the user's list shows at that
  moment (as a user clicks Like on a card); each 202 is timed until the like is visible in
  GET /users/{id}/likes and until its movie has left GET /recommendations (the contract:
  never recommend a liked movie, within 5 s). Both are polled every 50 ms through the
  gateway, so up to ~50 ms of each figure is polling.

Traffic goes only to the loopback URLs of ``.movierecs/endpoints.json``.
"""
from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

import requests

from bench import harness

ROUTES = {
    "GET /recommendations": lambda users: (lambda i: f"/recommendations?user_id={users[i % len(users)]}&k=10"),
    "GET /health": lambda users: (lambda i: "/health"),
    "GET /noop": lambda users: (lambda i: "/noop"),
}
# the telemetry's route names of the same three calls
TELEMETRY_ROUTE = {"GET /recommendations": "GET /recommendations", "GET /health": "GET /health",
                   "GET /noop": "GET /noop"}


def _get_factory(api: str, path: Callable[[int], str]) -> Callable[[], Callable[[int], bool]]:
    def factory() -> Callable[[int], bool]:
        s = requests.Session()
        return lambda i: s.get(api + path(max(i, 0)), timeout=30).status_code == 200
    return factory


def interleaved(api: str, users: list[int], clients: int, rounds: int, per_round: int,
                routes: dict[str, Callable[[list[int]], Callable[[int], str]]] = ROUTES) -> dict[str, Any]:
    """Latencies (ms) and throughput (req/s) per route, routes interleaved round by round."""
    lat: dict[str, list[float]] = {r: [] for r in routes}
    errors = {r: 0 for r in routes}
    busy = {r: 0.0 for r in routes}
    for rnd in range(rounds):
        order = list(routes) if rnd % 2 == 0 else list(reversed(routes))  # no route always goes first
        for route in order:
            t0 = time.perf_counter()
            got, err = harness.concurrent_latency(_get_factory(api, routes[route](users)), per_round, clients)
            busy[route] += time.perf_counter() - t0
            lat[route] += got
            errors[route] += err
    rate = {r: (len(lat[r]) + errors[r]) / busy[r] for r in routes}
    return {"latency": lat, "errors": errors, "rate": rate}


def in_handler(ch: Any, since: datetime, until: datetime) -> dict[str, list[float]]:
    """The middleware's latency_ms of each request of the three routes between the two times."""
    rows = ch.query("SELECT route, latency_ms FROM requests WHERE ts >= {a:DateTime64(3, 'UTC')} "
                    "AND ts < {b:DateTime64(3, 'UTC')} AND function = 'recommend' AND status = 200",
                    parameters={"a": since, "b": until}).result_rows
    out: dict[str, list[float]] = {r: [] for r in ROUTES}
    names = {v: k for k, v in TELEMETRY_ROUTE.items()}
    for route, ms in rows:
        if route in names:
            out[names[route]].append(float(ms))
    return out


def freshness(api: str, n: int, rate: float = 20.0) -> dict[str, list[float] | int]:
    """202 -> visible in GET /users/{id}/likes, and 202 -> gone from GET /recommendations (ms)."""
    user = random.randint(1_000_000_000, 1_999_999_999)
    acked: dict[str, tuple[float, int]] = {}
    in_likes: dict[str, float] = {}
    out_of_list: dict[str, float] = {}
    shown_now: list[int] = []  # the newest list the poller saw
    lock = threading.Lock()
    done = threading.Event()
    deadline = [float("inf")]

    def poll() -> None:
        s = requests.Session()
        while not (done.is_set() and (time.perf_counter() > deadline[0] or len(in_likes) == len(out_of_list) == len(acked))):
            likes = s.get(f"{api}/users/{user}/likes", params={"limit": 1000}, timeout=30)
            recs = s.get(f"{api}/recommendations", params={"user_id": user, "k": 100}, timeout=30)
            now = time.perf_counter()
            ids = {i["event_id"] for i in likes.json().get("items", [])} if likes.status_code == 200 else set()
            shown = [i["movie_id"] for i in recs.json().get("items", [])] if recs.status_code == 200 else None
            with lock:
                if shown is not None:
                    shown_now[:] = shown
                for e, (_, m) in acked.items():
                    if e in ids:
                        in_likes.setdefault(e, now)
                    if shown is not None and m not in shown:
                        out_of_list.setdefault(e, now)
            time.sleep(0.05)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    s = requests.Session()
    failures = 0
    liked: set[int] = set()
    while not shown_now and poller.is_alive():
        time.sleep(0.05)
    t_start = time.perf_counter()
    for i in range(n):
        target = t_start + i / rate
        if (d := target - time.perf_counter()) > 0:
            time.sleep(d)
        with lock:
            m = next((x for x in shown_now if x not in liked), None)
        if m is None:
            failures += 1
            continue
        liked.add(m)
        e = f"bench-read-{uuid.uuid4().hex}"
        r = s.post(api + "/likes", json={"user_id": user, "movie_id": m, "event_id": e}, timeout=30)
        if r.status_code == 202:
            with lock:
                acked[e] = (time.perf_counter(), m)
        else:
            failures += 1
    deadline[0] = time.perf_counter() + 30
    done.set()
    poller.join()
    likes_ms = [(in_likes[e] - t) * 1000 for e, (t, _) in acked.items() if e in in_likes]
    list_ms = [(out_of_list[e] - t) * 1000 for e, (t, _) in acked.items() if e in out_of_list]
    return {"likes": likes_ms, "list": list_ms, "missing": len(acked) - len(likes_ms) + failures,
            "still_shown": len(acked) - len(list_ms)}


def run(quick: bool) -> dict:
    e = harness.endpoints()
    api = e["api"].rstrip("/")
    from movierecs_core.stores import clickhouse

    ch = clickhouse.connect(e["clickhouse"])
    users = [int(u) for (u,) in ch.query(
        "SELECT user_id FROM ratings GROUP BY user_id ORDER BY cityHash64(user_id) LIMIT 300").result_rows]
    rounds, per1, per8 = (4, 25, 80) if quick else (10, 60, 200)
    for route in ROUTES:  # warm every environment the 8-client pool will use
        harness.concurrent_latency(_get_factory(api, ROUTES[route](users)), 24, 8)
    t0 = datetime.now(timezone.utc)
    one = interleaved(api, users, 1, rounds, per1)
    t1 = datetime.now(timezone.utc)
    eight = interleaved(api, users, 8, rounds, per8)
    t2 = datetime.now(timezone.utc)
    time.sleep(3)  # telemetry rows are flushed in the background
    handler, handler8 = in_handler(ch, t0, t1), in_handler(ch, t1, t2)
    fresh = freshness(api, 60 if quick else 300)
    ch.close()

    p = {c: {r: harness.summarize(v) for r, v in d["latency"].items()} for c, d in (("1", one), ("8", eight))}
    h50 = {r: harness.summarize(v)["p50"] if v else float("nan") for r, v in handler.items()}
    h50_8 = {r: harness.summarize(v)["p50"] if v else float("nan") for r, v in handler8.items()}
    rec, health, noop = "GET /recommendations", "GET /health", "GET /noop"
    figures = [
        harness.distribution("read_path_c1", "Read path, 1 client: GET /recommendations vs /health and /noop (interleaved)",
                             one["latency"], baseline=health, errors=one["errors"]),
        harness.distribution("read_path_c8", "Read path, 8 clients: GET /recommendations vs /health and /noop (interleaved)",
                             eight["latency"], baseline=noop, errors=eight["errors"]),
        harness.distribution("read_path_handler", "In-handler time per request, 1 client (middleware latency_ms, same run)",
                             handler, baseline=noop),
        harness.distribution("read_path_handler_c8", "In-handler time per request, 8 clients (middleware latency_ms, same run)",
                             handler8, baseline=noop),
        harness.scalars("read_path_ratios", "Read path against the targets (same run)", {
            "1 client: /recommendations p50 / /health p50 (target <= 1.25)": (round(p["1"][rec]["p50"] / p["1"][health]["p50"], 2), "x"),
            "1 client: /recommendations p50 / /noop p50": (round(p["1"][rec]["p50"] / p["1"][noop]["p50"], 2), "x"),
            "8 clients: /recommendations req/s / /noop req/s (target >= 0.8)": (round(eight["rate"][rec] / eight["rate"][noop], 2), "x"),
            "8 clients: /recommendations p99 / /noop p99 (target <= 2)": (round(p["8"][rec]["p99"] / p["8"][noop]["p99"], 2), "x"),
            "8 clients: errors": (sum(eight["errors"].values()), ""),
            "8 clients: /recommendations throughput": (round(eight["rate"][rec], 1), "req/s"),
            "8 clients: /noop throughput": (round(eight["rate"][noop], 1), "req/s"),
            "in-handler p50, 1 client, /recommendations minus /noop (target <= 1.5)": (round(h50[rec] - h50[noop], 2), "ms"),
            "in-handler p50, 8 clients, /recommendations minus /noop": (round(h50_8[rec] - h50_8[noop], 2), "ms"),
        }),
        harness.distribution("read_path_freshness", "Like freshness at 20 likes/s: 202 -> visible through the API",
                             {"in GET /users/{id}/likes": fresh["likes"], "gone from GET /recommendations": fresh["list"]},
                             errors={"in GET /users/{id}/likes": fresh["missing"],
                                     "gone from GET /recommendations": fresh["still_shown"]},
                             note="polled every 50 ms through the gateway; the contract allows 5 s"),
    ]
    return {"figures": figures, "params": {"rounds": rounds, "per_round_c1": per1, "per_round_c8": per8,
                                           "users": len(users), "freshness_likes": 60 if quick else 300}}


if __name__ == "__main__":
    harness.cli("read_path", run)
