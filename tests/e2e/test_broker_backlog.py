"""The feedback loop with a grown topic and a broker restart, sized for CI (issue 14).

60,000 likes are produced to ``interactions`` exactly as like-ingest produces them (one send
and one broker acknowledgement each, four producer processes), with the broker restarted by
the stack's own code half-way. Then: every acknowledged like is stored once, the mapping's
lag is zero in GET /admin/stats, and a like through POST /likes is visible in
GET /users/{id}/likes within the contract's 5 s. The likes belong to synthetic users far
above MovieLens' ids and are deleted from ClickHouse at the end.
"""
from __future__ import annotations

import time
import uuid

import pytest

from bench.load import stored_likes
from bench.soak import PROBE_USER_BASE, delete_soak_likes, movie_ids, produce_likes

pytestmark = pytest.mark.timeout(600)

N_LIKES = 60_000
FRESHNESS_S = 5.0  # the contract


def _restart_broker() -> float:
    """Stop the stack's broker (SIGTERM: a controlled shutdown) and start it again; seconds taken."""
    from movierecs_stack.services import BY_NAME
    from movierecs_stack.stack import Stack

    stack = Stack.create()
    t0 = time.monotonic()
    assert stack.stop_service("kafka"), "the broker did not stop"
    stack.ensure(BY_NAME["kafka"])
    assert stack.pids.running("kafka") is not None
    return time.monotonic() - t0


def test_sixty_thousand_likes_and_a_broker_restart(endpoints, api, http, admin_key):
    movies = movie_ids(endpoints["postgres"])
    prefix = f"e2e-backlog-{uuid.uuid4().hex[:8]}"
    try:
        acked = produce_likes(endpoints["kafka"], "interactions", f"{prefix}-a", N_LIKES // 2, movies)
        restart_s = _restart_broker()
        acked += produce_likes(endpoints["kafka"], "interactions", f"{prefix}-b", N_LIKES // 2, movies)
        assert acked == N_LIKES
        print(f"\n{acked:,} likes acknowledged; broker restarted in {restart_s:.1f}s")

        deadline = time.monotonic() + 180
        got = stored_likes(endpoints["clickhouse"], prefix)
        while got["unique"] < acked and time.monotonic() < deadline:
            time.sleep(1.0)
            got = stored_likes(endpoints["clickhouse"], prefix)
        assert got["unique"] == acked, f"{acked - got['unique']} acknowledged likes not stored: {got}"
        assert got["rows"] == got["unique"], f"a like stored twice (after FINAL): {got}"

        stats = http.get(f"{api}/admin/stats", params={"minutes": 5}, headers={"x-api-key": admin_key}, timeout=30)
        assert stats.status_code == 200, stats.text
        lag = stats.json()["consumer_lag"]
        assert lag["group"] == "movierecs-consumer" and len(lag["partitions"]) == 3, lag
        assert lag["total"] == 0, f"the mapping is behind after everything was stored: {lag}"

        user, movie = PROBE_USER_BASE + int(uuid.uuid4().int % 1_000_000), movies[len(movies) // 2]
        r = http.post(f"{api}/likes", json={"user_id": user, "movie_id": movie}, timeout=30)
        assert r.status_code == 202, r.text
        t0 = time.monotonic()
        seen = None
        while time.monotonic() - t0 < 30:
            items = http.get(f"{api}/users/{user}/likes", timeout=30).json()["items"]
            if any(i["movie_id"] == movie for i in items):
                seen = time.monotonic() - t0
                break
            time.sleep(0.05)
        assert seen is not None, "the like through the API never became visible"
        print(f"a like through the API visible after {seen:.2f}s")
        assert seen <= FRESHNESS_S, f"visible after {seen:.2f}s, the contract says {FRESHNESS_S:g}s"
    finally:
        delete_soak_likes(endpoints["clickhouse"], prefix)
