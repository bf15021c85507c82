"""Fill the serving state (PostgreSQL ``user_ratings`` and ``user_events``) from ClickHouse.

Why: the request path reads each user from PostgreSQL (docs/DESIGN.md, "The read path"),
but the MovieLens ratings, and on an existing stack every like stored before the consumer
wrote there too, live only in ClickHouse. ``make up`` runs this after loading data. Each step
records itself in ``serving_backfill``, so the next ``make up`` does nothing; the ratings
step runs again only when ClickHouse holds a different number of ratings (a new load).
Every write is idempotent (likes: ``ON CONFLICT DO NOTHING``; ratings: a user's row is set
to exactly their ratings), so ``--force``, an interrupted run or the consumer writing the
same likes at the same time cannot count anything twice.
"""
from __future__ import annotations

from typing import Any, Callable

from movierecs_core.stores import clickhouse, postgres
from movierecs_training.progress import bar as progress_bar

USERS_PER_CHUNK = 500
LIKES_PER_PAGE = 20_000


def backfill_ratings(ch: Any, db: Any, *, force: bool = False, progress: bool = True) -> int | None:
    """Each user's rated movies into ``user_ratings``; rows copied, or None when already done."""
    total = clickhouse.count_ratings(ch)
    done = postgres.backfill_done(db, "ratings")
    if done is not None and done[0] == total and not force:
        return None
    lo, hi = clickhouse.user_id_range(ch)
    copied = 0
    with progress_bar(total, "serving state: ratings", "row", progress) as bar:
        for start in range(lo, hi + 1, USERS_PER_CHUNK):
            pairs = clickhouse.rated_between(ch, start, min(start + USERS_PER_CHUNK - 1, hi))
            postgres.upsert_user_ratings(db, pairs)
            copied += len(pairs)
            bar.update(len(pairs))
    postgres.mark_backfill_done(db, "ratings", copied)
    return copied


def backfill_likes(ch: Any, db: Any, *, force: bool = False, progress: bool = True) -> int | None:
    """Every feedback event (each with its type) into ``user_events``; rows new there, or None
    when already done. Forgotten users have no events left in ClickHouse to copy."""
    if postgres.backfill_done(db, "likes") is not None and not force:
        return None
    after: tuple[int, str] = (0, "")
    new = seen = 0
    with progress_bar(clickhouse.count_like_events(ch), "serving state: likes", "like", progress) as bar:
        while page := clickhouse.like_events_after(ch, after, LIKES_PER_PAGE):
            new += postgres.insert_user_events(db, [(u, e, m, k, ts) for u, e, m, ts, k in page])
            seen += len(page)
            after = (page[-1][0], page[-1][1])
            bar.update(len(page))
    postgres.mark_backfill_done(db, "likes", seen)
    return new


def backfill(clickhouse_url: str, postgres_dsn: str, *, force: bool = False, progress: bool = True,
             log: Callable[[str], None] = print) -> dict[str, int | None]:
    """Both steps; a step that was already done is reported as None."""
    ch = clickhouse.connect(clickhouse_url)
    db = postgres.connect(postgres_dsn, timeout=300)
    try:
        out = {"ratings": backfill_ratings(ch, db, force=force, progress=progress),
               "likes": backfill_likes(ch, db, force=force, progress=progress)}
    finally:
        db.close()
        ch.close()
    for step, n in out.items():
        log(f"serving state: {step} " + ("already filled (nothing to do)" if n is None else f"filled ({n:,} rows new or updated)"))
    return out
