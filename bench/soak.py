"""Soak: does the feedback loop hold while the topic grows to a million likes?

Why this shape (issue 14): the old broker's cost grew with its log, so a loop that was fast
at 2,000 likes took minutes at 57,000. Here producer processes write likes to the topic
exactly as like-ingest does (the contract's message, keyed by user id, one send and one
broker acknowledgement per like, so one batch each) while a probe sends one like through
POST /likes every few seconds and times 202 -> visible in GET /users/{id}/likes. Every
``--every`` likes a row records: probe freshness p50/p99, the consumer's drain rate (likes
stored per second in the window), produce latency, the mapping's lag, the broker's disk and
the RSS of every stack service. At the end: likes acknowledged = likes stored, each once.

The likes go to synthetic users far above MovieLens' ids (``SOAK_USER_BASE``), so they never
touch a real user's list; ``--cleanup`` (the default) deletes them from ClickHouse at the
end, so later trainings do not learn from them. Traffic goes only to the loopback URLs of
``.movierecs/endpoints.json``; the run is bounded by a count and a time limit.

    python -m bench.soak --likes 1000000 --time-limit 3600     # the full soak
    python -m bench.soak --quick                                # 20,000 likes, about a minute
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import random
import statistics
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from bench import harness
from bench.load import stored_likes

SOAK_USER_BASE = 1_800_000_000   # synthetic users, far above MovieLens' 6,040 and the load bench's block
SOAK_USERS = 100_000
PROBE_USER_BASE = 1_900_000_000
TARGET_FRESHNESS_P99_S = 5.0
TARGET_DRAIN_RATIO = 0.8


# --------------------------------------------------------------------------- producing
def like_message(event_id: str, user_id: int, movie_id: int) -> tuple[bytes, bytes]:
    """(key, value) exactly as like-ingest writes them (movierecs_core.events.LikeEvent)."""
    from movierecs_core.events import LikeEvent

    ev = LikeEvent(event_id=event_id, user_id=user_id, movie_id=movie_id, ts=datetime.now(timezone.utc))
    return ev.key_bytes(), ev.to_bytes()


def _producer_proc(bootstrap: str, topic: str, prefix: str, worker: int, workers: int, n: int,
                   movies: list[int], acked: Any, lat_q: Any, stop: Any) -> None:
    """One producer process: likes worker, worker+workers, ... each sent and acknowledged alone."""
    from movierecs_core.stores.kafka import get_producer

    prod = get_producer(bootstrap)  # the like-ingest function's producer settings
    rnd = random.Random(worker)
    lat: list[float] = []
    for i in range(worker, n, workers):
        if stop.is_set():
            break
        key, value = like_message(f"{prefix}-{i}", SOAK_USER_BASE + rnd.randrange(SOAK_USERS), rnd.choice(movies))
        t0 = time.perf_counter()
        while True:
            try:
                prod.send(topic, key=key, value=value).get(timeout=10)
                break
            except Exception:  # noqa: BLE001 - not acknowledged: send it again (the event id dedupes)
                if stop.is_set():
                    return
                time.sleep(0.5)
        lat.append((time.perf_counter() - t0) * 1000)
        with acked.get_lock():
            acked.value += 1
        if len(lat) >= 200:
            lat_q.put(lat)
            lat = []
    if lat:
        lat_q.put(lat)
    prod.flush(timeout=10)


@dataclass
class Producers:
    """``workers`` processes producing ``n`` likes with ids ``<prefix>-0 .. n-1``."""

    bootstrap: str
    topic: str
    prefix: str
    n: int
    movies: list[int]
    workers: int = 4
    ctx: Any = field(default_factory=lambda: mp.get_context("spawn"))

    def __post_init__(self) -> None:
        self.acked = self.ctx.Value("q", 0)
        self.lat_q = self.ctx.Queue()
        self.stop_event = self.ctx.Event()
        self.procs = [self.ctx.Process(target=_producer_proc, daemon=True,
                                       args=(self.bootstrap, self.topic, self.prefix, w, self.workers, self.n,
                                             self.movies, self.acked, self.lat_q, self.stop_event))
                      for w in range(self.workers)]
        self.latencies: list[float] = []

    def start(self) -> "Producers":
        for p in self.procs:
            p.start()
        return self

    def count(self) -> int:
        return int(self.acked.value)

    def drain_latencies(self) -> list[float]:
        """Produce latencies (ms) reported since the last call."""
        got: list[float] = []
        while True:
            try:
                got.extend(self.lat_q.get_nowait())
            except Exception:  # noqa: BLE001 - queue.Empty
                break
        self.latencies.extend(got)
        return got

    def alive(self) -> bool:
        return any(p.is_alive() for p in self.procs)

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            self.drain_latencies()  # a child exits only once its queued items are read
            for p in self.procs:
                p.join(0.1)
        for p in self.procs:
            if p.is_alive():
                p.terminate()


def produce_likes(bootstrap: str, topic: str, prefix: str, n: int, movies: list[int], workers: int = 4) -> int:
    """Produce ``n`` likes as like-ingest does and wait until every one is acknowledged."""
    prods = Producers(bootstrap, topic, prefix, n, movies, workers).start()
    try:
        while prods.alive() and prods.count() < n:
            prods.drain_latencies()  # a child exits only once its queued items are read
            time.sleep(0.2)
    finally:
        prods.stop()
    return prods.count()


# --------------------------------------------------------------------------- the probe
@dataclass
class Probe:
    """One like through the API every ``interval`` s; the time from 202 to visible."""

    api: str
    movies: list[int]
    interval: float = 3.0
    visible_timeout: float = 60.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (time sent, seconds to visible)
    failures: list[str] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="probe", daemon=True)
        self.session = requests.Session()
        self.base = PROBE_USER_BASE + random.Random().randrange(10_000_000)
        self.lock = threading.Lock()

    def one(self, i: int) -> float | None:
        user, movie = self.base + i, self.movies[i % len(self.movies)]
        ev = f"soak-probe-{uuid.uuid4().hex[:12]}"
        r = self.session.post(f"{self.api}/likes", json={"user_id": user, "movie_id": movie, "event_id": ev},
                              timeout=30)
        if r.status_code != 202:
            self.failures.append(f"POST /likes {r.status_code}: {r.text[:200]}")
            return None
        t0 = time.perf_counter()
        self.acked.append(ev)
        deadline = t0 + self.visible_timeout
        while time.perf_counter() < deadline:
            got = self.session.get(f"{self.api}/users/{user}/likes", params={"limit": 5}, timeout=30)
            if got.status_code == 200 and any(it.get("movie_id") == movie for it in got.json().get("items", [])):
                return time.perf_counter() - t0
            time.sleep(0.05)
        self.failures.append(f"like {ev} not visible after {self.visible_timeout:.0f} s")
        return self.visible_timeout

    def _loop(self) -> None:
        i = 0
        while not self.stop_event.is_set():
            t = time.time()
            try:
                s = self.one(i)
                if s is not None:
                    with self.lock:
                        self.samples.append((t, s))
            except requests.RequestException as e:
                self.failures.append(f"{type(e).__name__}: {e}")
            i += 1
            self.stop_event.wait(max(0.0, self.interval - (time.time() - t)))

    def since(self, t: float) -> list[float]:
        with self.lock:
            return [s for at, s in self.samples if at >= t]

    def start(self) -> "Probe":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.thread.join(timeout=90)


# --------------------------------------------------------------------------- what the stack uses
def service_rss_mb() -> dict[str, float]:
    """RSS (MB) of every service the stack recorded, its child processes included."""
    from movierecs_stack import procs
    from movierecs_stack.config import Layout

    store = procs.PidStore(Layout().pids)
    cmap = procs.children_map()
    out = {}
    for name in store.names():
        t = store.running(name)
        if t is not None:
            out[name] = round(procs.rss_bytes([t.pid, *procs.descendants(t.pid, cmap)]) / 2**20, 1)
    return out


def dir_mb(path: Path) -> float:
    # allocated blocks, not apparent size: Kafka preallocates sparse 10 MB index files
    return round(sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file()) / 2**20, 1)


def movie_ids(postgres_dsn: str) -> list[int]:
    import pg8000.native
    from urllib.parse import urlsplit

    u = urlsplit(postgres_dsn)
    harness._require_loopback(f"http://{u.hostname}:{u.port}")
    conn = pg8000.native.Connection(u.username or "movierecs", host=u.hostname, port=u.port or 5432,
                                    database=u.path.lstrip("/"))
    try:
        return [r[0] for r in conn.run("SELECT movie_id FROM movies ORDER BY movie_id")]
    finally:
        conn.close()


def delete_soak_likes(clickhouse_url: str, prefix: str) -> None:
    import clickhouse_connect
    from urllib.parse import urlparse

    u = urlparse(harness._require_loopback(clickhouse_url))
    client = clickhouse_connect.get_client(host=u.hostname, port=u.port or 8123)
    try:
        client.command("ALTER TABLE movierecs.likes DELETE WHERE startsWith(event_id, {p:String})",
                       parameters={"p": prefix}, settings={"mutations_sync": 1})
    finally:
        client.close()


# --------------------------------------------------------------------------- the run
def soak(likes: int, every: int, workers: int, probe_interval: float, time_limit: float,
         cleanup: bool = True, progress: bool = True) -> dict:
    from movierecs_core.config import Settings
    from movierecs_core.stores.kafka import consumer_lag
    from movierecs_stack.config import KAFKA_TOPIC, Layout

    group = Settings().kafka_consumer_group

    ep = harness.endpoints()
    api, boot = ep["api"].rstrip("/"), ep["kafka"]
    movies = movie_ids(ep["postgres"])
    prefix = f"soak-{uuid.uuid4().hex[:8]}"
    kafka_dir = Layout().data / "kafka"
    rows: list[dict] = []
    probe = Probe(api, movies, interval=probe_interval).start()
    time.sleep(min(5.0, probe_interval * 2))  # a baseline freshness before the flood
    prods = Producers(boot, KAFKA_TOPIC, prefix, likes, movies, workers).start()
    t0 = time.monotonic()
    mark_t, mark_stored, mark_wall = t0, 0, time.time()
    next_mark = every
    stopped_by_time = False
    window_lat: list[float] = []
    try:
        while True:
            time.sleep(1.0)
            # drain the latency queue every second: a child process cannot exit while what it
            # put in a multiprocessing queue is unread
            window_lat += prods.drain_latencies()
            produced = prods.count()
            done = not prods.alive() or produced >= likes
            if time.monotonic() - t0 > time_limit:
                stopped_by_time = True
                prods.stop()
                done = True
            if produced >= next_mark or done:
                now = time.monotonic()
                stored = stored_likes(ep["clickhouse"], prefix)["unique"]
                lat, window_lat = window_lat + prods.drain_latencies(), []
                fresh = probe.since(mark_wall)
                lag = consumer_lag(boot, group, KAFKA_TOPIC)
                row = {
                    "likes_produced": produced, "seconds": round(now - t0, 1),
                    "produce_rate_per_s": round((produced - (rows[-1]["likes_produced"] if rows else 0))
                                                / max(1e-9, now - mark_t), 1),
                    "drain_rate_per_s": round((stored - mark_stored) / max(1e-9, now - mark_t), 1),
                    "stored": stored, "lag": sum(r["lag"] for r in lag),
                    "probe_n": len(fresh),
                    "probe_p50_s": round(harness.percentile(sorted(fresh), 50), 3) if fresh else None,
                    "probe_p99_s": round(harness.percentile(sorted(fresh), 99), 3) if fresh else None,
                    "produce_p50_ms": round(harness.percentile(sorted(lat), 50), 2) if lat else None,
                    "produce_p99_ms": round(harness.percentile(sorted(lat), 99), 2) if lat else None,
                    "broker_disk_mb": dir_mb(kafka_dir), "rss_mb": service_rss_mb(),
                }
                rows.append(row)
                if progress:
                    print(f"[soak] {produced:>9,} likes  {row['produce_rate_per_s']:>7,.0f}/s in, "
                          f"{row['drain_rate_per_s']:>7,.0f}/s stored, lag {row['lag']:>6,}, probe p50/p99 "
                          f"{row['probe_p50_s']}/{row['probe_p99_s']} s, disk {row['broker_disk_mb']} MB",
                          file=sys.stderr, flush=True)
                mark_t, mark_stored, mark_wall = now, stored, time.time()
                while next_mark <= produced:
                    next_mark += every
            if done:
                break
        acked = prods.count()
        # the end: every acknowledged like stored, each once, and how long the tail took
        t_end = time.monotonic()
        final = stored_likes(ep["clickhouse"], prefix)
        while final["unique"] < acked and time.monotonic() - t_end < 300:
            time.sleep(1.0)
            final = stored_likes(ep["clickhouse"], prefix)
        tail_s = time.monotonic() - t_end
    finally:
        prods.stop()
        probe.stop()
    result = {"prefix": prefix, "likes_target": likes, "likes_acknowledged": acked, "stored": final,
              "tail_s": round(tail_s, 1), "rows": rows, "stopped_by_time": stopped_by_time,
              "workers": workers, "probe_interval_s": probe_interval, "probe_failures": probe.failures[:20],
              "probe_samples": len(probe.samples), "elapsed_s": round(time.monotonic() - t0, 1)}
    if cleanup:
        delete_soak_likes(ep["clickhouse"], prefix)
        result["cleaned_up"] = True
    return result


def figures(res: dict) -> list[dict]:
    rows = res["rows"]
    full = [r for r in rows if r["probe_p99_s"] is not None]
    worst_p99 = max((r["probe_p99_s"] for r in full), default=float("nan"))
    first, last = (rows[0], rows[-2] if len(rows) > 2 else rows[-1]) if rows else ({}, {})
    drain_ratio = (last.get("drain_rate_per_s", 0) / first["drain_rate_per_s"]) if first.get("drain_rate_per_s") else float("nan")
    st = res["stored"]
    services = sorted({k for r in rows for k in r["rss_mb"]})
    return [
        harness.scalars("soak_targets", f"Soak: {res['likes_acknowledged']:,} likes into the topic (issue 14)", {
            "likes acknowledged by the broker": (res["likes_acknowledged"], ""),
            "likes stored (unique event ids)": (st["unique"], ""),
            "stored rows after FINAL (each once: = unique)": (st["rows"], ""),
            "acknowledged = stored, each once": ("yes" if st["unique"] == res["likes_acknowledged"] == st["rows"] else "no", ""),
            "probe freshness p99, worst window": (worst_p99, "s"),
            f"p99 <= {TARGET_FRESHNESS_P99_S:g} s in every window": ("yes" if worst_p99 <= TARGET_FRESHNESS_P99_S else "no", ""),
            "drain rate, last full window / first": (round(drain_ratio, 2), "x"),
            f"drain ratio >= {TARGET_DRAIN_RATIO}": ("yes" if drain_ratio >= TARGET_DRAIN_RATIO else "no", ""),
            "broker disk at the end": (rows[-1]["broker_disk_mb"] if rows else float("nan"), "MB"),
            "last like stored after the producers stopped": (res["tail_s"], "s"),
            "run time": (res["elapsed_s"], "s"),
        }, note=(f"{res['workers']} producer processes, one send + one broker ack per like (as like-ingest); "
                 f"a probe like through POST /likes every {res['probe_interval_s']:g} s, timed 202 -> visible "
                 f"in GET /users/{{id}}/likes ({res['probe_samples']} probes, {len(res['probe_failures'])} failures)."
                 + (" Stopped by the time limit." if res["stopped_by_time"] else ""))),
        harness.table("soak_windows", "Per window of likes produced", [
            "likes produced", "s", "produced/s", "stored/s", "lag", "probes", "probe p50 s", "probe p99 s",
            "produce p50 ms", "produce p99 ms", "broker disk MB", *[f"RSS {s} MB" for s in services]],
            [[r["likes_produced"], r["seconds"], r["produce_rate_per_s"], r["drain_rate_per_s"], r["lag"],
              r["probe_n"], r["probe_p50_s"], r["probe_p99_s"], r["produce_p50_ms"], r["produce_p99_ms"],
              r["broker_disk_mb"], *[r["rss_mb"].get(s) for s in services]] for r in rows]),
        harness.xy("soak_freshness", "Probe freshness (202 -> visible) as the topic grows", "likes produced",
                   [r["likes_produced"] for r in full],
                   {"p50": [r["probe_p50_s"] for r in full], "p99": [r["probe_p99_s"] for r in full],
                    "target p99": [TARGET_FRESHNESS_P99_S] * len(full)}, unit="s", baseline="target p99"),
        harness.xy("soak_rates", "Produce and drain rate as the topic grows", "likes produced",
                   [r["likes_produced"] for r in rows],
                   {"produced/s": [r["produce_rate_per_s"] for r in rows],
                    "stored/s": [r["drain_rate_per_s"] for r in rows]}, unit="likes/s", baseline="produced/s"),
    ]


def run(quick: bool) -> dict:
    """quick: 20,000 likes in windows of 5,000; full: 1,000,000 in windows of 50,000, at most an hour."""
    cfg = dict(likes=20_000, every=5_000, workers=4, probe_interval=2.0, time_limit=600.0) if quick else \
        dict(likes=1_000_000, every=50_000, workers=4, probe_interval=3.0, time_limit=3600.0)
    res = soak(**cfg)
    return {"figures": figures(res), "params": {**cfg, **{k: v for k, v in res.items() if k != "rows"}},
            "notes": "Synthetic users far above MovieLens; their likes are deleted from ClickHouse after the run."}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--likes", type=int, default=1_000_000, help="likes to produce (default 1,000,000)")
    ap.add_argument("--every", type=int, default=50_000, help="likes per report row (default 50,000)")
    ap.add_argument("--workers", type=int, default=4, help="producer processes (default 4)")
    ap.add_argument("--probe-interval", type=float, default=3.0, help="seconds between probe likes (default 3)")
    ap.add_argument("--time-limit", type=float, default=3600.0, help="stop producing after this many seconds")
    ap.add_argument("--keep", action="store_true", help="keep the soak's likes in ClickHouse afterwards")
    ap.add_argument("--quick", action="store_true", help="20,000 likes (a smoke run)")
    a = ap.parse_args(argv)
    for name in ("likes", "every", "workers"):
        if getattr(a, name) <= 0:
            ap.error(f"--{name} must be a positive number")
    if a.probe_interval <= 0 or a.time_limit <= 0:
        ap.error("--probe-interval and --time-limit must be positive")
    if a.quick:
        a.likes, a.every = 20_000, 5_000
    cfg = dict(likes=a.likes, every=a.every, workers=a.workers, probe_interval=a.probe_interval,
               time_limit=a.time_limit)
    started = harness.utc_now()
    t0 = time.monotonic()
    res = soak(**cfg, cleanup=not a.keep)
    env = harness.envelope("soak", status="ok", command="python -m bench.soak " + " ".join(argv or sys.argv[1:]),
                           started_at=started, duration_s=time.monotonic() - t0, quick=a.quick,
                           result={"figures": figures(res),
                                   "params": {**cfg, **{k: v for k, v in res.items() if k != "rows"}}})
    path = harness.write_json(harness.RESULTS_DIR / "soak.json", env)
    print(f"[soak] acknowledged {res['likes_acknowledged']:,}, stored {res['stored']}; result: {path}")
    return 0 if res["stored"]["unique"] >= res["likes_acknowledged"] else 1


if __name__ == "__main__":
    sys.exit(main())
