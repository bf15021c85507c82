"""Load MovieLens into the stack: movies and users into PostgreSQL, ratings into ClickHouse.

Idempotent and resumable: PostgreSQL rows go in with ``INSERT ... ON CONFLICT DO NOTHING`` in
batches; ClickHouse ratings go in per chunk of users, and each chunk first counts what is
already there (complete: skip; empty: insert; partial, after an interrupted run: insert only
the missing (user, movie) pairs). Loading twice changes nothing.
"""
from __future__ import annotations

import re
from typing import Any, Callable
from urllib.parse import unquote, urlparse

import numpy as np
import pandas as pd
from tqdm import tqdm

from movierecs_training.data import MovieLens

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# The table definitions of docs/DESIGN.md. The stack applies infra/sql/*.sql; these copies are
# only used to create throwaway test databases/schemas (tests, --create-tables).
POSTGRES_DDL = [
    "CREATE TABLE IF NOT EXISTS {schema}.movies (movie_id int PRIMARY KEY, title text NOT NULL, year int, genres text[] NOT NULL)",
    "CREATE TABLE IF NOT EXISTS {schema}.users (user_id int PRIMARY KEY, gender text, age int, occupation int, zip text)",
]
CLICKHOUSE_DDL = [
    "CREATE TABLE IF NOT EXISTS {db}.ratings (user_id UInt32, movie_id UInt32, rating UInt8, ts DateTime('UTC')) "
    "ENGINE = ReplacingMergeTree ORDER BY (user_id, movie_id)",
    "CREATE TABLE IF NOT EXISTS {db}.likes (event_id String, user_id UInt32, movie_id UInt32, ts DateTime64(3,'UTC'), "
    "ingested_at DateTime64(3,'UTC')) ENGINE = ReplacingMergeTree ORDER BY (user_id, event_id)",
]


def ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"bad SQL identifier {name!r}")
    return name


def pg_connect(dsn: str):
    """pg8000 native connection from ``postgresql://user[:pw]@host:port/db``."""
    import pg8000.native

    u = urlparse(dsn)
    if u.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URL: {dsn!r}")
    return pg8000.native.Connection(
        user=unquote(u.username or "postgres"), password=unquote(u.password) if u.password else None,
        host=u.hostname or "127.0.0.1", port=u.port or 5432, database=(u.path or "/").lstrip("/") or None, timeout=30,
    )


def ch_client(url: str, **kw: Any):
    """clickhouse-connect client from an ``http://host:port`` URL or a ``chdb:///path`` DSN."""
    import clickhouse_connect

    if url.startswith("chdb:"):
        return clickhouse_connect.get_client(dsn=url, **kw)
    u = urlparse(url)
    return clickhouse_connect.get_client(host=u.hostname or "127.0.0.1", port=u.port or 8123, interface=u.scheme or "http",
                                         username=u.username or "default", password=u.password or "", **kw)


def create_postgres_tables(conn, schema: str = "public") -> None:
    conn.run(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}")
    for stmt in POSTGRES_DDL:
        conn.run(stmt.format(schema=ident(schema)))


def create_clickhouse_tables(client, database: str = "movierecs") -> None:
    client.command(f"CREATE DATABASE IF NOT EXISTS {ident(database)}")
    for stmt in CLICKHOUSE_DDL:
        client.command(stmt.format(db=ident(database)))


def _insert_batched(conn, table: str, cols: list[str], rows: list[tuple], key: str, batch: int, desc: str, progress: bool) -> int:
    inserted = 0
    with tqdm(total=len(rows), desc=desc, unit="row", disable=None if progress else True) as bar:
        for s in range(0, len(rows), batch):
            chunk = rows[s : s + batch]
            params: dict[str, Any] = {}
            values = []
            for i, row in enumerate(chunk):
                names = []
                for c, v in zip(cols, row):
                    params[f"{c}{i}"] = v
                    names.append(f":{c}{i}")
                values.append("(" + ", ".join(names) + ")")
            sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES {', '.join(values)} ON CONFLICT ({key}) DO NOTHING RETURNING {key}"
            res = conn.run(sql, **params)
            inserted += len(res or [])
            bar.update(len(chunk))
    return inserted


def load_postgres(conn, ml: MovieLens, schema: str = "public", batch: int = 1000, progress: bool = True) -> dict[str, int]:
    """Movies and users; returns how many rows were new."""
    s = ident(schema)
    movies = [
        (int(m), str(t), None if pd.isna(y) else int(y), list(g))
        for m, t, y, g in zip(ml.movies["movie_id"], ml.movies["title"], ml.movies["year"], ml.movies["genres"])
    ]
    users = [
        (int(u), str(g), int(a), int(o), str(z))
        for u, g, a, o, z in zip(ml.users["user_id"], ml.users["gender"], ml.users["age"], ml.users["occupation"], ml.users["zip"])
    ]
    return {
        "movies_inserted": _insert_batched(conn, f"{s}.movies", ["movie_id", "title", "year", "genres"], movies, "movie_id", batch, "movies", progress),
        "users_inserted": _insert_batched(conn, f"{s}.users", ["user_id", "gender", "age", "occupation", "zip"], users, "user_id", batch, "users", progress),
    }


def postgres_counts(conn, schema: str = "public") -> dict[str, int]:
    s = ident(schema)
    return {t: int(conn.run(f"SELECT count(*) FROM {s}.{t}")[0][0]) for t in ("movies", "users")}


def _ratings_frame(r: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "user_id": r["user_id"].to_numpy(np.uint32), "movie_id": r["movie_id"].to_numpy(np.uint32),
        "rating": r["rating"].to_numpy(np.uint8), "ts": r["ts"].dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[s]"),
    })


def load_clickhouse(client, ratings: pd.DataFrame, database: str = "movierecs", chunk_rows: int = 100_000,
                    progress: bool = True, log: Callable[[str], None] | None = None) -> dict[str, int]:
    """Ratings into ``<database>.ratings``, chunked by user id ranges; returns rows inserted/skipped."""
    db = ident(database)
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
    with tqdm(total=len(r), desc="ratings", unit="row", disable=None if progress else True) as bar:
        for a, b in zip(bounds[:-1], bounds[1:]):
            part = r.iloc[a:b]
            lo, hi = int(users[a]), int(users[b - 1])
            have = int(client.command(
                f"SELECT count() FROM (SELECT DISTINCT user_id, movie_id FROM {db}.ratings WHERE user_id BETWEEN {{lo:UInt32}} AND {{hi:UInt32}})",
                parameters={"lo": lo, "hi": hi}))
            if have >= len(part):
                skipped += len(part)
            else:
                if have > 0:  # an interrupted earlier run: add only what is missing
                    ex = client.query_df(f"SELECT DISTINCT user_id, movie_id FROM {db}.ratings WHERE user_id BETWEEN {{lo:UInt32}} AND {{hi:UInt32}}",
                                         parameters={"lo": lo, "hi": hi})
                    key = part["user_id"].astype(np.int64) * 1_000_000_000 + part["movie_id"].astype(np.int64)
                    exkey = ex["user_id"].astype(np.int64) * 1_000_000_000 + ex["movie_id"].astype(np.int64)
                    part = part[~key.isin(set(exkey.tolist()))]
                if len(part):
                    client.insert_df(f"{db}.ratings", _ratings_frame(part))
                inserted += len(part)
                skipped += (b - a) - len(part)
            bar.update(b - a)
    return {"ratings_inserted": inserted, "ratings_skipped": skipped}


def clickhouse_counts(client, database: str = "movierecs") -> dict[str, int]:
    db = ident(database)
    return {"ratings": int(client.command(f"SELECT count() FROM (SELECT DISTINCT user_id, movie_id FROM {db}.ratings)"))}


def load_all(ml: MovieLens, postgres_dsn: str, clickhouse_url: str, *, schema: str = "public", database: str = "movierecs",
             create_tables: bool = False, progress: bool = True) -> dict[str, Any]:
    """Everything, idempotently; returns inserted counts and the final counts."""
    conn = pg_connect(postgres_dsn)
    try:
        if create_tables:
            create_postgres_tables(conn, schema)
        out: dict[str, Any] = load_postgres(conn, ml, schema, progress=progress)
        out["postgres"] = postgres_counts(conn, schema)
    finally:
        conn.close()
    client = ch_client(clickhouse_url)
    try:
        if create_tables:
            create_clickhouse_tables(client, database)
        out.update(load_clickhouse(client, ml.ratings, database, progress=progress))
        out["clickhouse"] = clickhouse_counts(client, database)
    finally:
        client.close()
    return out
