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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from . import Shared, Unavailable

DATABASE = "movierecs"
#: The schema file, in the repository (not shipped in the Lambda layer: only tests and the
#: loader's --create-tables use it).
SCHEMA_FILE = Path(__file__).resolve().parents[5] / "infra" / "sql" / "clickhouse.sql"

LIKE_COLUMNS = ["event_id", "user_id", "movie_id", "ts", "ingested_at"]
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


# -- likes and ratings: what a user did ---------------------------------------------------
# The recommendation path needs, in one round trip, every movie the user must not be shown
# (rated or liked) and the liked movies to fold in; the likes page needs the newest likes.
# ``likes`` may briefly hold a duplicate event before ReplacingMergeTree merges, so reads
# de-duplicate by event id. A model trained on every rating already knows each user's rated
# movies: then only ``likes`` is read, which halves the query (about 2 ms instead of 4 on the
# chDB endpoint). The queries are plain row reads; the grouping happens here, which chDB
# answers faster than GROUP BY plus UNION.
_LIKED_SQL = "SELECT 1 AS is_like, movie_id, ts FROM likes WHERE user_id = {u:UInt32}"
_HISTORY_SQL = _LIKED_SQL + " UNION ALL SELECT 0, movie_id, ts FROM ratings WHERE user_id = {u:UInt32}"
_USER_LIKES_SQL = """
SELECT event_id, movie_id, ts FROM likes
WHERE user_id = {u:UInt32}
ORDER BY ts DESC, event_id DESC
LIMIT 1 BY event_id
LIMIT {n:UInt32}
"""


@dataclass
class History:
    """A user's signal: liked movies newest first, and every movie rated or liked."""

    liked: list[int] = field(default_factory=list)
    rated: set[int] = field(default_factory=set)

    @property
    def seen(self) -> set[int]:
        """Movies never to recommend to this user."""
        return self.rated | set(self.liked)


def _utc(ts: Any) -> datetime:
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    raise TypeError(f"unexpected timestamp {ts!r}")


def user_history(ch: Any, user_id: int, ratings: bool = True) -> History:
    """Likes (newest first, each movie once) and, when ``ratings``, the rated movies of ``user_id``."""
    rows = ch.query(_HISTORY_SQL if ratings else _LIKED_SQL, parameters={"u": user_id}).result_rows
    newest: dict[int, datetime] = {}
    rated: set[int] = set()
    for is_like, m, t in rows:
        movie = int(m)
        if not is_like:
            rated.add(movie)
        elif movie not in newest or _utc(t) > newest[movie]:
            newest[movie] = _utc(t)
    liked = sorted(newest, key=lambda m: newest[m], reverse=True)
    return History(liked=liked, rated=rated)


def user_likes(ch: Any, user_id: int, limit: int) -> list[tuple[str, int, datetime]]:
    """The newest ``limit`` like events of ``user_id``: (event_id, movie_id, ts)."""
    rows = ch.query(_USER_LIKES_SQL, parameters={"u": user_id, "n": limit}).result_rows
    return [(str(e), int(m), _utc(t)) for e, m, t in rows]


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
WHERE ts >= {since:DateTime64(3, 'UTC')}
GROUP BY t ORDER BY t
"""


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


def read_latest_likes(ch: Any, database: str = DATABASE) -> Any:
    """One row per liked (user_id, movie_id) with its newest ts, as a DataFrame."""
    return ch.query_df(
        f"SELECT user_id, movie_id, max(ts) AS ts FROM {ident(database)}.likes FINAL GROUP BY user_id, movie_id")


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
