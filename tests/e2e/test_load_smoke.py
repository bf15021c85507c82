"""A small version of the load test (bench/load.py) as a correctness check, not a speed check.

Why: the benchmark's claims (zero errors under concurrent reads and a like stream, every
acknowledged like stored once, the right strategy per kind of user) should hold on every
change, not only when someone runs `make bench`. No timing is asserted here.
"""
from __future__ import annotations

import pytest

from bench import harness
from bench.load import LoadConfig, execute

pytestmark = pytest.mark.timeout(300)


def test_small_load_has_no_errors_and_stores_every_like():
    try:
        ep = harness.endpoints()
    except RuntimeError as e:
        pytest.fail(f"{e}")
    cfg = LoadConfig(api=ep["api"], requests=400, concurrency=8, like_rate=10.0, time_limit=180.0,
                     new_users=10, likes_per_new_user=2, progress=False)
    out, stored, missing = execute(cfg, ep["clickhouse"])
    assert out.done > 0
    assert not out.stopped_by_time, "the small load did not finish within its time limit"
    assert not out.errors, f"GET errors under load: {dict(out.errors)}; samples: {out.error_samples}"
    assert not out.like_errors, f"POST /likes errors under load: {dict(out.like_errors)}; samples: {out.error_samples}"
    assert stored is not None, f"could not check ClickHouse: {out.check_error}"
    assert not missing, f"acknowledged likes not stored: {missing[:5]}"
    assert stored["rows"] == stored["unique"] == len(out.acked_event_ids), stored
    served = {(kind, strategy) for (kind, strategy) in out.strategies}
    assert ("known", "personal") in served, f"known users were never served 'personal': {out.strategies}"
    assert ("popular", "popular") in served, f"users with no signal were never served 'popular': {out.strategies}"
    assert ("new", "fold_in") in served, f"new users with likes were never served 'fold_in': {out.strategies}"
