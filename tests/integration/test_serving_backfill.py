"""The serving state's backfill against the running stack's ClickHouse and PostgreSQL.

`make up` runs it once; these check what a second run and ``--force`` do, and that a like
ClickHouse holds but the serving state lacks (a stack from before the read path moved to
PostgreSQL) is copied, once.
"""
from __future__ import annotations

import random
import subprocess
import sys
import uuid
from datetime import datetime, timezone

from movierecs_core.stores import clickhouse, postgres


def _backfill(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "movierecs_training", "backfill", *args],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_a_second_run_does_nothing_and_force_copies_what_only_clickhouse_has(endpoints):
    assert "likes already filled (nothing to do)" in _backfill()  # `make up` already filled it
    ch = clickhouse.connect(endpoints["clickhouse"])
    db = postgres.connect(endpoints["postgres"])
    try:
        user = random.randint(1_900_000_000, 2_000_000_000)
        event = f"backfill-{uuid.uuid4().hex}"
        now = datetime.now(timezone.utc)
        clickhouse.insert_likes(ch, [[event, user, 1, now, now, "like"]])  # written to ClickHouse only
        assert postgres.user_history(db, user, ratings=False).liked == []
        out = _backfill("--force")
        assert "ratings filled" in out and "likes filled" in out
        assert postgres.user_history(db, user, ratings=False).liked == [1]
        _backfill("--force")  # idempotent: nothing doubles
        rows = db.run("SELECT count(*) FROM user_events WHERE user_id = :u", u=user)
        assert rows[0][0] == 1
        # every like event ClickHouse holds is in the serving state (the consumer keeps them in step)
        have = db.run("SELECT count(*) FROM user_events WHERE kind = 'like'")[0][0]
        assert have >= clickhouse.count_like_events(ch)
        # each user's rated movies match ClickHouse's ratings
        assert postgres.user_history(db, 1).rated == {m for _, m in clickhouse.rated_between(ch, 1, 1)}
    finally:
        db.close()
        ch.close()
