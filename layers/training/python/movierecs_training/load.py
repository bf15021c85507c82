"""Load MovieLens into the stack: movies and users into PostgreSQL, ratings into ClickHouse.

Idempotent and resumable: PostgreSQL rows go in with ``INSERT ... ON CONFLICT DO NOTHING`` in
batches; ClickHouse ratings go in per chunk of users, and each chunk first counts what is
already there (complete: skip; empty: insert; partial, after an interrupted run: insert only
the missing (user, movie) pairs). Loading twice changes nothing.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from movierecs_core.stores import clickhouse, postgres
from movierecs_training.data import MovieLens
from movierecs_training.progress import bar as progress_bar

# The loader's SQL lives with its store (movierecs_core.stores), as does the schema
# (infra/sql/*.sql: applied by the stack, and by ``load_all(create_tables=True)``).


def _insert_batched(conn, schema: str, table: str, cols: list[str], rows: list[tuple], key: str, batch: int,
                    progress: bool) -> int:
    inserted = 0
    with progress_bar(len(rows), table, "row", progress) as bar:
        for s in range(0, len(rows), batch):
            chunk = rows[s : s + batch]
            inserted += postgres.insert_ignoring_conflicts(conn, schema, table, cols, chunk, key)
            bar.update(len(chunk))
    return inserted


def load_postgres(conn, ml: MovieLens, schema: str = "public", batch: int = 1000, progress: bool = True) -> dict[str, int]:
    """Movies and users; returns how many rows were new."""
    movies = [
        (int(m), str(t), None if pd.isna(y) else int(y), list(g))
        for m, t, y, g in zip(ml.movies["movie_id"], ml.movies["title"], ml.movies["year"], ml.movies["genres"])
    ]
    users = [
        (int(u), str(g), int(a), int(o), str(z))
        for u, g, a, o, z in zip(ml.users["user_id"], ml.users["gender"], ml.users["age"], ml.users["occupation"], ml.users["zip"])
    ]
    return {
        "movies_inserted": _insert_batched(conn, schema, "movies", ["movie_id", "title", "year", "genres"], movies,
                                           "movie_id", batch, progress),
        "users_inserted": _insert_batched(conn, schema, "users", ["user_id", "gender", "age", "occupation", "zip"], users,
                                          "user_id", batch, progress),
    }


def postgres_counts(conn, schema: str = "public") -> dict[str, int]:
    return {t: postgres.count_rows(conn, schema, t) for t in ("movies", "users")}


def _ratings_frame(r: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": r["user_id"].to_numpy(np.uint32), "movie_id": r["movie_id"].to_numpy(np.uint32),
        "rating": r["rating"].to_numpy(np.uint8), "ts": r["ts"].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[s]"),
    })


def load_clickhouse(client, ratings: pd.DataFrame, database: str = "movierecs", chunk_rows: int = 100_000,
                    progress: bool = True, log: Callable[[str], None] | None = None) -> dict[str, int]:
    """Ratings into ``<database>.ratings``, chunked by user id ranges; returns rows inserted/skipped."""
    r = ratings.sort_values(["user_id", "movie_id"], kind="stable").drop_duplicates(["user_id", "movie_id"], keep="last")
    users = r["user_id"].to_numpy()
    bounds = [0]
    # chunk boundaries on user changes, about chunk_rows rows each
    for s in range(chunk_rows, len(r), chunk_rows):
        while s < len(r) and users[s] == users[s - 1]:
            s += 1
        if s < len(r) and s > bounds[-1]:
            bounds.append(s)
    bounds.append(len(r))
    inserted = skipped = 0
    with progress_bar(len(r), "ratings", "row", progress) as bar:
        for a, b in zip(bounds[:-1], bounds[1:]):
            part = r.iloc[a:b]
            lo, hi = int(users[a]), int(users[b - 1])
            have = clickhouse.count_rating_pairs_between(client, database, lo, hi)
            if have >= len(part):
                skipped += len(part)
            else:
                if have > 0:  # an interrupted earlier run: add only what is missing
                    ex = clickhouse.rating_pairs_between(client, database, lo, hi)
                    key = part["user_id"].astype(np.int64) * 1_000_000_000 + part["movie_id"].astype(np.int64)
                    exkey = ex["user_id"].astype(np.int64) * 1_000_000_000 + ex["movie_id"].astype(np.int64)
                    part = part[~key.isin(set(exkey.tolist()))]
                if len(part):
                    clickhouse.insert_ratings(client, database, _ratings_frame(part))
                inserted += len(part)
                skipped += (b - a) - len(part)
            bar.update(b - a)
    return {"ratings_inserted": inserted, "ratings_skipped": skipped}


def clickhouse_counts(client, database: str = "movierecs") -> dict[str, int]:
    return {"ratings": clickhouse.count_ratings(client, database)}


def load_all(ml: MovieLens, postgres_dsn: str, clickhouse_url: str, *, schema: str = "public", database: str = "movierecs",
             create_tables: bool = False, progress: bool = True) -> dict[str, Any]:
    """Everything, idempotently; returns inserted counts and the final counts."""
    conn = postgres.connect(postgres_dsn)
    try:
        if create_tables:
            postgres.create_tables(conn, schema)
        out: dict[str, Any] = load_postgres(conn, ml, schema, progress=progress)
        out["postgres"] = postgres_counts(conn, schema)
    finally:
        conn.close()
    client = clickhouse.connect(clickhouse_url)
    try:
        if create_tables:
            clickhouse.create_tables(client, database)
        out.update(load_clickhouse(client, ml.ratings, database, progress=progress))
        out["clickhouse"] = clickhouse_counts(client, database)
    finally:
        client.close()
    return out
