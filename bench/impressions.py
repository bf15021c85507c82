"""What recording impressions costs GET /recommendations (issue 13: at most 1 ms at p50).

One run on the stack: the recommend function's ``MOVIERECS_IMPRESSIONS`` is switched on and
off (``update-function-configuration``) block by block, alternating; after each switch the new
execution environment is warmed, then the block is timed at 1 client through the gateway, for
known users. Also the in-process cost of queueing one impression, and whether every list of
the "on" blocks arrived in ClickHouse. The function is left with impressions on.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone

import boto3

from bench import harness
from bench.read_path import _get_factory

FUNCTION = "movierecs-recommend"


def _switch(lam, on: bool) -> None:
    env = lam.get_function_configuration(FunctionName=FUNCTION)["Environment"]["Variables"]
    env["MOVIERECS_IMPRESSIONS"] = "1" if on else "0"
    lam.update_function_configuration(FunctionName=FUNCTION, Environment={"Variables": env})
    deadline = time.monotonic() + 60
    while lam.get_function_configuration(FunctionName=FUNCTION).get("LastUpdateStatus") == "InProgress":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{FUNCTION} did not finish updating in 60 s")
        time.sleep(0.2)


def _record_cost(n: int = 20000) -> list[float]:
    """Microseconds per ``record()`` of a 10-item list (no thread: nothing is sent)."""
    from movierecs_core import impressions

    pub = impressions.Recorder(lambda batch: None, start_thread=False, max_buffer=n + 1)
    body = {"user_id": 42, "model_version": "v", "strategy": "personal", "items": [{"movie_id": m} for m in range(10)]}
    out = []
    for i in range(n):
        t = time.perf_counter()
        pub.record(impressions.of_listing(f"req-{i}", "recommendations", body))
        out.append((time.perf_counter() - t) * 1e6)
    return out


def run(quick: bool) -> dict:
    e = harness.endpoints()
    api = e["api"].rstrip("/")
    m = re.match(r"(https?://[^/]+)", api)
    lam = boto3.client("lambda", endpoint_url=m.group(1), region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    import clickhouse_connect
    from urllib.parse import urlparse

    u = urlparse(e["clickhouse"])
    ch = clickhouse_connect.get_client(host=u.hostname, port=u.port, database="movierecs", compress=False)
    users = list(range(1, 301))
    blocks, per = (2, 60) if quick else (4, 200)
    lat: dict[str, list[float]] = {"impressions off": [], "impressions on": []}
    errors = {k: 0 for k in lat}
    on_requests = 0
    since = datetime.now(timezone.utc)
    try:
        for b in range(2 * blocks):
            on = b % 2 == 1
            _switch(lam, on)
            path = lambda i: f"/recommendations?user_id={users[i % len(users)]}&k=10"  # noqa: E731
            harness.concurrent_latency(_get_factory(api, path), 30, 1)  # a fresh environment: warm it
            got, err = harness.concurrent_latency(_get_factory(api, path), per, 1)
            key = "impressions on" if on else "impressions off"
            lat[key] += got
            errors[key] += err
            if on:
                on_requests += per + 30
    finally:
        _switch(lam, True)
    time.sleep(3)
    stored = ch.query("SELECT count() FROM impressions FINAL WHERE ts >= {t:DateTime64(3, 'UTC')} AND listing = "
                      "'recommendations' AND user_id <= 300", parameters={"t": since}).result_rows[0][0]
    p50 = {k: harness.summarize(v)["p50"] for k, v in lat.items()}
    rec = harness.summarize(_record_cost())
    return {"figures": [
        harness.distribution("impressions_latency", "GET /recommendations with impressions off and on, 1 client, "
                             "blocks alternating in one run", lat, baseline="impressions off", errors=errors),
        harness.scalars("impressions_cost", "What recording impressions costs (target: p50 + at most 1 ms)", {
            "p50 on - off": (round(p50["impressions on"] - p50["impressions off"], 3), "ms"),
            "p50 on / off": (round(p50["impressions on"] / p50["impressions off"], 3), "x"),
            "queueing one impression, p50": (round(rec["p50"], 2), "µs"),
            "queueing one impression, p99": (round(rec["p99"], 2), "µs"),
            "lists served with impressions on": (on_requests, ""),
            "their impressions in ClickHouse": (int(stored), ""),
        }),
    ], "params": {"blocks_each": blocks, "per_block": per, "users": len(users)}}


if __name__ == "__main__":
    harness.cli("impressions", run)
