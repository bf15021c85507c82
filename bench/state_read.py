"""The serving state's read with feedback types (issue 12) against the seed's statement.

In process over the stack's PostgreSQL (loopback): ``stores.postgres._HISTORY_SQL`` (liked,
dropped, hidden, tombstone, rated: latest event per (user, movie) wins) and the statement it
replaced (likes grouped by movie, rated), interleaved user by user on the same connection,
for MovieLens users and for users with feedback events.
"""
from __future__ import annotations

import time

from bench import harness

#: The statement before issue 12 (stores.postgres at 6154b43): likes only.
SEED_SQL = ("SELECT ARRAY(SELECT movie_id FROM user_events WHERE user_id = :u AND kind = 'like' "
            "GROUP BY movie_id ORDER BY max(ts) DESC, movie_id), (SELECT movies FROM user_ratings WHERE user_id = :u)")


def run(quick: bool) -> dict:
    from movierecs_core.stores import postgres

    db = postgres.Postgres(harness.endpoints()["postgres"])
    users = [int(r[0]) for r in db.run("SELECT user_id FROM user_events GROUP BY user_id HAVING count(*) >= 3 "
                                       "ORDER BY user_id LIMIT 100")] + list(range(1, 101))
    rounds = 3 if quick else 10
    lat: dict[str, list[float]] = {"with feedback types (issue 12)": [], "seed statement (likes only)": []}
    for sql in (SEED_SQL, postgres._HISTORY_SQL):  # prepare both, warm the cache
        for u in users[:20]:
            db.run(sql, u=u)
    for _ in range(rounds):
        for u in users:
            for name, sql in (("seed statement (likes only)", SEED_SQL),
                              ("with feedback types (issue 12)", postgres._HISTORY_SQL)):
                t0 = time.perf_counter()
                db.run(sql, u=u)
                lat[name].append((time.perf_counter() - t0) * 1000.0)
    db.close()
    return {"figures": [harness.distribution(
        "state_read", "The serving state's point read per request, in process (prepared)", lat,
        baseline="seed statement (likes only)",
        note=f"{len(users)} users ({len(users) - 100} with >= 3 feedback events), {rounds} rounds, interleaved")],
        "params": {"users": len(users), "rounds": rounds}, "notes": ""}


if __name__ == "__main__":
    harness.cli("state_read", run)
