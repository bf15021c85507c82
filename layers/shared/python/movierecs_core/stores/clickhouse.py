"""ClickHouse: the URL, the clients, the schema and every statement on ``ratings``, ``likes``,
``dead_letters`` and ``requests``.

Two kinds of client, from one URL parser:
- ``get_client(url)``: the execution environment's shared client (created once, reused),
  uncompressed because the endpoint is on loopback, with short timeouts so a request fails
  in seconds; ``reset_client`` after a failure.
- ``connect(url)``: a client of one's own for long work (loading, training extracts), with
  clickhouse-connect's long default timeouts; the caller closes it.

``CLICKHOUSE_URL`` may carry user, password and database (default ``movierecs``); a
``chdb:///path`` DSN opens an in-process chDB (unit tests). Statements name their tables
with the database only where a caller may choose it (loads into a throwaway database);
identifiers are checked, values are always bound parameters.

The schema has one source: ``infra/sql/clickhouse.sql`` (applied by the stack; mounted by
compose.yaml); ``create_tables`` applies the same file to any database.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from . import Shared, Unavailable

DATABASE = "movierecs"
#: The schema file, in the repository (not shipped in the Lambda layer: only tests and the
#: loader's --create-tables use it).
SCHEMA_FILE = Path(__file__).resolve().parents[5] / "infra" / "sql" / "clickhouse.sql"

#: The columns of ``likes``, which holds every feedback event (``type``: like, unlike, not_interested).
LIKE_COLUMNS = ["event_id", "user_id", "movie_id", "ts", "ingested_at", "type"]
DEAD_LETTER_COLUMNS = ["ts", "topic", "partition", "offset", "key", "value", "reason"]
REQUEST_COLUMNS = ["ts", "function", "route", "status", "latency_ms", "model_version", "request_id"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- URL and clients ---------------------------------------------------------------------
def ident(name: str) -> str:
    """``name`` if it is a plain SQL identifier (database, schema); ValueError otherwise."""
    if not _IDENT.match(name):
        raise ValueError(f"bad SQL identifier {name!r}")
    return name


def client_kwargs(url: str) -> dict[str, Any]:
    """clickhouse_connect.get_client() keyword arguments from an http(s):// URL (or chdb: DSN)."""
    if url.startswith("chdb:"):
        return {"dsn": url}
    u = urlparse(url)
    if u.scheme not in ("http", "https"):
        raise ValueError(f"CLICKHOUSE_URL must be http(s)://host:port, got {url!r}")
    kw: dict[str, Any] = {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or (8443 if u.scheme == "https" else 8123),
        "secure": u.scheme == "https",
        "database": (u.path or "/").strip("/") or DATABASE,
        "compress": False,
        "connect_timeout": 3,
        "send_receive_timeout": 10,
        "autogenerate_session_id": False,
    }
    if u.username:
        kw["username"] = unquote(u.username)
    if u.password:
        kw["password"] = unquote(u.password)
    return kw


def database_of(url: str) -> str:
    """The database a URL names (``movierecs`` when it names none, and for a chdb: DSN)."""
    return client_kwargs(url).get("database", DATABASE)


def unavailable(exc: BaseException) -> Unavailable:
    """The neutral error for a ClickHouse failure (the message the API shows)."""
    return Unavailable(f"the interactions store (ClickHouse) is unavailable ({type(exc).__name__}); retry shortly")


def _make(url: str) -> Any:
    import clickhouse_connect  # ~0.1 s: imported on first use, not in the function's init

    kwargs = client_kwargs(url)  # a bad URL is a ValueError, not an outage
    try:
        return clickhouse_connect.get_client(**kwargs)
    except Exception as exc:
        raise unavailable(exc) from exc


_clients: Shared[Any] = Shared(_make, lambda c: c.close())


def get_client(url: str) -> Any:
    """The shared client for ``url`` (created on first use; creation does a round trip)."""
    return _clients.get(url)


def reset_client(url: str) -> None:
    """Forget the client (after a connection failure, the next call makes a new one)."""
    _clients.reset(url)


def connect(url: str) -> Any:
    """A client of one's own for long work (loading, extracts); the caller closes it."""
    import clickhouse_connect

    kw = client_kwargs(url)
    for short in ("connect_timeout", "send_receive_timeout"):
        kw.pop(short, None)  # clickhouse-connect's defaults (10 s, 300 s) suit bulk reads and writes
    return clickhouse_connect.get_client(**kw)


# -- schema --------------------------------------------------------------------------------
def schema_statements(database: str = DATABASE, path: Path = SCHEMA_FILE) -> list[str]:
    """The statements of ``infra/sql/clickhouse.sql``, for ``database`` instead of movierecs."""
    text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("--"))
    db = ident(database)
    return [re.sub(rf"\b{DATABASE}\b", db, s.strip()) for s in text.split(";") if s.strip()]


def create_tables(ch: Any, database: str = DATABASE) -> None:
    """Create ``database`` and its tables, as the stack does for ``movierecs`` (idempotent)."""
    for stmt in schema_statements(database):
        ch.command(stmt)


# -- likes and ratings in order: the serving state's backfill ------------------------------
# The request path reads a user's likes and ratings from PostgreSQL (stores.postgres); these
# read them out of ClickHouse, the history, to fill that state once (``movierecs_training
# backfill``). Keyset pages (by user_id, event_id) keep each read small and resumable.
_LIKES_PAGE_SQL = """
SELECT user_id, event_id, any(movie_id), any(ts), any(type) FROM likes
WHERE (user_id, event_id) > ({u:UInt32}, {e:String})
GROUP BY user_id, event_id
ORDER BY user_id, event_id
LIMIT {n:UInt32}
"""
_RATED_SQL = ("SELECT DISTINCT user_id, movie_id FROM ratings "
              "WHERE user_id BETWEEN {lo:UInt32} AND {hi:UInt32} ORDER BY user_id, movie_id")


def count_like_events(ch: Any) -> int:
    """Distinct (user_id, event_id) feedback events stored (every type)."""
    return int(ch.command("SELECT count() FROM (SELECT DISTINCT user_id, event_id FROM likes)"))


def like_events_after(ch: Any, after: tuple[int, str], n: int) -> list[tuple[int, str, int, datetime, str]]:
    """The next ``n`` feedback events after (user_id, event_id), in that order:
    (user, event, movie, ts, type)."""
    rows = ch.query(_LIKES_PAGE_SQL, parameters={"u": after[0], "e": after[1], "n": n}).result_rows
    return [(int(u), str(e), int(m), _utc(t), str(k)) for u, e, m, t, k in rows]


def rated_between(ch: Any, lo: int, hi: int) -> list[tuple[int, int]]:
    """(user_id, movie_id) of every rating of users ``lo``..``hi``."""
    return [(int(u), int(m)) for u, m in ch.query(_RATED_SQL, parameters={"lo": lo, "hi": hi}).result_rows]


def user_id_range(ch: Any) -> tuple[int, int]:
    """(min, max) user_id of the ratings, (0, -1) when there are none."""
    lo, hi, n = ch.query("SELECT min(user_id), max(user_id), count() FROM ratings").result_rows[0]
    return (int(lo), int(hi)) if int(n) else (0, -1)


def _utc(ts: Any) -> datetime:
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    raise TypeError(f"unexpected timestamp {ts!r}")


# -- likes and dead letters: the consumer's writes ----------------------------------------
_EXISTING_SQL = (
    "SELECT DISTINCT user_id, event_id FROM likes "
    "WHERE user_id IN {users:Array(UInt32)} AND event_id IN {ids:Array(String)}"
)


def existing_like_ids(ch: Any, pairs: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """The (user_id, event_id) pairs among ``pairs`` already stored (one parametrized lookup)."""
    pairs = list(pairs)
    if not pairs:
        return set()
    users = sorted({u for u, _ in pairs})
    ids = sorted({e for _, e in pairs})
    rows = ch.query(_EXISTING_SQL, parameters={"users": users, "ids": ids}).result_rows
    return {(int(u), str(e)) for u, e in rows}


def insert_likes(ch: Any, rows: Sequence[Sequence[Any]]) -> None:
    """One batched insert of ``LIKE_COLUMNS`` rows."""
    ch.insert("likes", [list(r) for r in rows], column_names=LIKE_COLUMNS)


def insert_dead_letters(ch: Any, rows: Sequence[Sequence[Any]]) -> None:
    """One batched insert of ``DEAD_LETTER_COLUMNS`` rows."""
    ch.insert("dead_letters", [list(r) for r in rows], column_names=DEAD_LETTER_COLUMNS)


# -- requests: telemetry and the admin's per-minute series --------------------------------
_REQUEST_MINUTES_SQL = """
SELECT toStartOfMinute(ts) AS t, count() AS n, countIf(status >= 500) AS e,
       quantile(0.5)(latency_ms) AS p50, quantile(0.95)(latency_ms) AS p95
FROM requests
WHERE ts >= {since:DateTime64(3, 'UTC')}
GROUP BY t ORDER BY t
"""
_LIKE_MINUTES_SQL = """
SELECT toStartOfMinute(ts) AS t, uniqExact(event_id) AS n
FROM likes
WHERE ts >= {since:DateTime64(3, 'UTC')} AND type = 'like'
GROUP BY t ORDER BY t
"""


_FEEDBACK_MINUTES_SQL = """
SELECT toStartOfMinute(ts) AS t, type, uniqExact(event_id) AS n
FROM likes
WHERE ts >= {since:DateTime64(3, 'UTC')}
GROUP BY t, type ORDER BY t
"""


def feedback_minutes(ch: Any, since: datetime) -> list[Sequence[Any]]:
    """(minute, type, distinct events) per minute and feedback type since ``since``."""
    return ch.query(_FEEDBACK_MINUTES_SQL, parameters={"since": since}).result_rows


def insert_requests(ch: Any, rows: Sequence[Sequence[Any]]) -> None:
    """One batched insert of ``REQUEST_COLUMNS`` rows."""
    ch.insert("requests", list(rows), column_names=REQUEST_COLUMNS)


def request_minutes(ch: Any, since: datetime) -> list[Sequence[Any]]:
    """(minute, requests, 5xx, p50 ms, p95 ms) per minute since ``since``."""
    return ch.query(_REQUEST_MINUTES_SQL, parameters={"since": since}).result_rows


def like_minutes(ch: Any, since: datetime) -> list[Sequence[Any]]:
    """(minute, distinct like events) per minute since ``since``."""
    return ch.query(_LIKE_MINUTES_SQL, parameters={"since": since}).result_rows


# -- ratings and likes in bulk: loading and training ----------------------------------------
def read_ratings(ch: Any, database: str = DATABASE) -> Any:
    """Every rating (user_id, movie_id, rating, ts) as a DataFrame (merged: FINAL)."""
    return ch.query_df(f"SELECT user_id, movie_id, rating, ts FROM {ident(database)}.ratings FINAL")


# The state of each (user, movie) with feedback: the latest like/unlike/not_interested wins
# (by ts, then by when it was stored); ``ts`` is that latest event's.
_FEEDBACK_STATE_SQL = """
SELECT user_id, movie_id, last, latest AS ts FROM (
    SELECT user_id, movie_id, argMax(type, (ts, ingested_at)) AS last, max(ts) AS latest
    FROM {db}.likes FINAL GROUP BY user_id, movie_id)
"""


def read_feedback_state(ch: Any, database: str = DATABASE) -> Any:
    """One row per (user_id, movie_id) with feedback: its latest type (``last``) and ts, as a DataFrame."""
    return ch.query_df(_FEEDBACK_STATE_SQL.format(db=ident(database)))


def read_latest_likes(ch: Any, database: str = DATABASE) -> Any:
    """One row per (user_id, movie_id) whose latest feedback is a like, with its ts, as a DataFrame."""
    return ch.query_df(f"SELECT user_id, movie_id, ts FROM ({_FEEDBACK_STATE_SQL.format(db=ident(database))}) "
                       "WHERE last = 'like'")


# -- forgetting a user (DELETE /users/{id}) ---------------------------------------------------
# Mutations run synchronously (mutations_sync = 2: on every replica), so when the call
# returns no row of the user is left to read; dead letters are keyed by the user id as text.
_DELETE_USER_SQL = {
    "ratings": "ALTER TABLE {db}.ratings DELETE WHERE user_id = {{u:UInt32}} SETTINGS mutations_sync = 2",
    "likes": "ALTER TABLE {db}.likes DELETE WHERE user_id = {{u:UInt32}} SETTINGS mutations_sync = 2",
    "dead_letters": "ALTER TABLE {db}.dead_letters DELETE WHERE key = {{k:String}} SETTINGS mutations_sync = 2",
}
_COUNT_USER_SQL = {
    "ratings": "SELECT count() FROM {db}.ratings WHERE user_id = {{u:UInt32}}",
    "likes": "SELECT count() FROM {db}.likes WHERE user_id = {{u:UInt32}}",
    "dead_letters": "SELECT count() FROM {db}.dead_letters WHERE key = {{k:String}}",
}


def count_user_rows(ch: Any, user_id: int, database: str = DATABASE) -> dict[str, int]:
    """How many rows each table holds for ``user_id`` (ratings, likes = every feedback event, dead letters)."""
    params = {"u": user_id, "k": str(user_id)}
    return {t: int(ch.command(sql.format(db=ident(database)), parameters=params)) for t, sql in _COUNT_USER_SQL.items()}


def delete_user(ch: Any, user_id: int, database: str = DATABASE) -> dict[str, int]:
    """Delete every row of ``user_id``; returns how many each table held before."""
    before = count_user_rows(ch, user_id, database)
    params = {"u": user_id, "k": str(user_id)}
    for table, sql in _DELETE_USER_SQL.items():
        if before[table]:
            ch.command(sql.format(db=ident(database)), parameters=params)
    return before


def delete_events(ch: Any, user_id: int, event_ids: Sequence[str], database: str = DATABASE) -> None:
    """Delete the given feedback events of ``user_id`` (the consumer's clean-up after a deletion raced it)."""
    if event_ids:
        ch.command(f"ALTER TABLE {ident(database)}.likes DELETE WHERE user_id = {{u:UInt32}} "
                   "AND event_id IN {ids:Array(String)} SETTINGS mutations_sync = 2",
                   parameters={"u": user_id, "ids": list(event_ids)})


def _pairs_between_sql(database: str) -> str:
    return (f"SELECT DISTINCT user_id, movie_id FROM {ident(database)}.ratings "
            "WHERE user_id BETWEEN {lo:UInt32} AND {hi:UInt32}")


def count_rating_pairs_between(ch: Any, database: str, lo: int, hi: int) -> int:
    """How many distinct (user, movie) ratings users ``lo``..``hi`` have."""
    return int(ch.command(f"SELECT count() FROM ({_pairs_between_sql(database)})", parameters={"lo": lo, "hi": hi}))


def rating_pairs_between(ch: Any, database: str, lo: int, hi: int) -> Any:
    """The distinct (user_id, movie_id) ratings of users ``lo``..``hi``, as a DataFrame."""
    return ch.query_df(_pairs_between_sql(database), parameters={"lo": lo, "hi": hi})


def insert_ratings(ch: Any, database: str, frame: Any) -> None:
    """Insert a DataFrame of (user_id UInt32, movie_id UInt32, rating UInt8, ts) rows."""
    ch.insert_df(f"{ident(database)}.ratings", frame)


def count_ratings(ch: Any, database: str = DATABASE) -> int:
    """Distinct (user, movie) ratings stored."""
    return int(ch.command(f"SELECT count() FROM (SELECT DISTINCT user_id, movie_id FROM {ident(database)}.ratings)"))


# -- impressions: every list served, and the like-rate of each model version --------------
IMPRESSION_COLUMNS = ["ts", "request_id", "user_id", "listing", "source_movie", "model_version", "arm",
                      "experiment_id", "strategy", "movie_ids", "ingested_at"]
_EXISTING_IMPRESSIONS_SQL = "SELECT request_id FROM impressions WHERE request_id IN {ids:Array(String)}"


def existing_impressions(ch: Any, request_ids: Iterable[str]) -> set[str]:
    """The request ids among ``request_ids`` whose impression is already stored."""
    ids = sorted(set(request_ids))
    if not ids:
        return set()
    return {str(r) for r, in ch.query(_EXISTING_IMPRESSIONS_SQL, parameters={"ids": ids}).result_rows}


def insert_impressions(ch: Any, rows: Sequence[Sequence[Any]]) -> None:
    """One batched insert of ``IMPRESSION_COLUMNS`` rows."""
    ch.insert("impressions", [list(r) for r in rows], column_names=IMPRESSION_COLUMNS)


# A like credits the newest impression of that user that showed the movie at most
# ``window`` seconds before it; an impression converts when at least one like credits it.
_SERVED_CTE = """
WITH served AS (
    SELECT * FROM impressions FINAL
    WHERE ts >= {since:DateTime64(3, 'UTC')} AND user_id > 0 {experiment_filter}
),
credited AS (
    SELECT l.event_id, argMax(s.request_id, s.ts) AS request_id
    FROM (SELECT DISTINCT event_id, user_id, movie_id, ts FROM likes WHERE ts >= {since:DateTime64(3, 'UTC')}) AS l
    INNER JOIN (SELECT request_id, user_id, ts, arrayJoin(movie_ids) AS movie_id FROM served) AS s
        ON l.user_id = s.user_id AND l.movie_id = s.movie_id
    WHERE s.ts <= l.ts AND l.ts < s.ts + toIntervalSecond({window:UInt32})
    GROUP BY l.event_id
),
judged AS (
    SELECT i.*, c.n AS liked
    FROM served AS i
    LEFT JOIN (SELECT request_id, count() AS n FROM credited GROUP BY request_id) AS c ON i.request_id = c.request_id
)
"""
_LIKE_RATE_SQL = _SERVED_CTE + """
SELECT model_version, arm, strategy, toStartOfHour(ts) AS hour,
       count() AS impressions, countIf(liked > 0) AS converted, sum(liked) AS likes
FROM judged
GROUP BY model_version, arm, strategy, hour
ORDER BY hour, model_version, arm, strategy
"""
# Per arm, over users (the unit of assignment): users, impressions, converted impressions,
# and the sum and sum of squares of each user's own like-rate (for the sequential test).
_ARM_USERS_SQL = _SERVED_CTE + """
SELECT arm, count() AS users, sum(n) AS impressions, sum(k) AS converted, sum(k / n) AS s1, sum((k / n) * (k / n)) AS s2
FROM (SELECT user_id, any(arm) AS arm, count() AS n, countIf(liked > 0) AS k FROM judged GROUP BY user_id)
GROUP BY arm ORDER BY arm
"""


def _served(sql: str, since: datetime, window_seconds: int, experiment_id: str | None) -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {"since": since, "window": int(window_seconds)}
    flt = ""
    if experiment_id is not None:  # a fixed clause; the id itself travels as a parameter
        flt, params["experiment"] = "AND experiment_id = {experiment:String}", experiment_id
    return sql.replace("{experiment_filter}", flt), params


def like_rates(ch: Any, since: datetime, window_seconds: int, experiment_id: str | None = None) -> list[Sequence[Any]]:
    """(version, arm, strategy, hour, impressions, converted, likes) of the user lists served
    since ``since`` (only those of one experiment when ``experiment_id`` is given)."""
    sql, params = _served(_LIKE_RATE_SQL, since, window_seconds, experiment_id)
    return ch.query(sql, parameters=params).result_rows


def arm_users(ch: Any, experiment_id: str, since: datetime, window_seconds: int) -> list[Sequence[Any]]:
    """(arm, users, impressions, converted, sum of user rates, sum of their squares) of one experiment."""
    sql, params = _served(_ARM_USERS_SQL, since, window_seconds, experiment_id)
    return ch.query(sql, parameters=params).result_rows
