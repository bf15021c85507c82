"""PostgreSQL: the DSN, the connections, the schema and every statement on ``movies``,
``users`` and the serving state (``user_events``, ``user_ratings``, ``serving_backfill``).

Two kinds of connection, from one DSN parser:
- ``Postgres(dsn)``: one pg8000 connection per execution environment, reused across
  invocations. A Lambda environment serves one request at a time, so a single connection
  (guarded by a lock for the telemetry thread's sake) is enough; it is re-opened once when a
  query finds it broken (PostgreSQL restarted, idle connection dropped). When the database
  does not answer it raises the neutral ``Unavailable``. Each statement is prepared once
  per connection: the request path's point read costs 0.14 ms prepared against 0.5 ms
  parsed and planned every time.
- ``connect(dsn)``: a plain pg8000 native connection for long work (loading MovieLens).

The schema has one source: ``infra/sql/postgres.sql``; ``create_tables`` applies it to any
schema. Identifiers are checked, values are always bound parameters.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ..user_state import History
from . import Unavailable
from .clickhouse import ident

#: The schema file, in the repository (only tests and the loader's --create-tables use it).
SCHEMA_FILE = Path(__file__).resolve().parents[5] / "infra" / "sql" / "postgres.sql"


def dsn_kwargs(dsn: str) -> dict[str, Any]:
    """pg8000 connect() keyword arguments from a postgresql:// URL."""
    u = urlparse(dsn)
    if u.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a postgresql:// DSN: {dsn!r}")
    kw: dict[str, Any] = {
        "user": unquote(u.username or "postgres"),
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 5432,
        "database": (u.path or "/").lstrip("/") or None,
        "timeout": 5,
    }
    if u.password:
        kw["password"] = unquote(u.password)
    return kw


def connect(dsn: str, timeout: float = 30) -> Any:
    """A pg8000 native connection of one's own (loading); the caller closes it."""
    import pg8000.native

    return pg8000.native.Connection(**(dsn_kwargs(dsn) | {"timeout": timeout}))


def _is_connection_error(exc: Exception) -> bool:
    """SQLSTATE classes 08 (connection exception) and 57 (operator intervention, e.g. shutdown)."""
    info = exc.args[0] if exc.args else None
    code = str(info.get("C", "")) if isinstance(info, dict) else ""
    return code.startswith(("08", "57"))


_MAX_PREPARED = 64


def _down(detail: str) -> Unavailable:
    return Unavailable(f"the movie database is unavailable ({detail}); retry shortly")


class Postgres:
    """A lazily opened, self-healing pg8000 native connection."""

    def __init__(self, dsn: str):
        self._kwargs = dsn_kwargs(dsn)
        self._conn: Any = None
        self._prepared: dict[str, Any] = {}
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        import pg8000.native  # imported on first use, not in the function's init

        try:
            return pg8000.native.Connection(**self._kwargs)
        except Exception as exc:  # network errors come in several types
            raise _down(type(exc).__name__) from exc

    def run(self, sql: str, **params: Any) -> list[Sequence[Any]]:
        """Run one parametrized statement (``:name`` placeholders); one reconnect on failure."""
        from pg8000.exceptions import DatabaseError

        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = self._connect()
                try:
                    return self._statement(sql).run(**params)
                except DatabaseError as exc:
                    if not _is_connection_error(exc):
                        raise  # a real SQL error: the connection is fine
                    self._drop()
                    if attempt == 2:
                        raise _down("restarting") from exc
                except Exception as exc:
                    self._drop()
                    if attempt == 2:
                        raise _down(type(exc).__name__) from exc
        raise AssertionError("unreachable")

    def _statement(self, sql: str) -> Any:
        """The connection's prepared statement for ``sql`` (statements are module constants,
        so the cache stays small; it is emptied if something builds SQL dynamically)."""
        stmt = self._prepared.get(sql)
        if stmt is None:
            if len(self._prepared) >= _MAX_PREPARED:
                self._prepared.clear()
            stmt = self._prepared[sql] = self._conn.prepare(sql)
        return stmt

    def _drop(self) -> None:
        self._prepared.clear()
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:
            pass
        self._conn = None

    def close(self) -> None:
        """Close the connection (tests)."""
        with self._lock:
            self._drop()


# -- schema --------------------------------------------------------------------------------
def schema_statements(schema: str = "public", path: Path = SCHEMA_FILE) -> list[str]:
    """``CREATE SCHEMA`` plus the statements of ``infra/sql/postgres.sql``, qualified with ``schema``."""
    text = "\n".join(ln for ln in path.read_text().splitlines() if not ln.lstrip().startswith("--"))
    s = ident(schema)
    tables = [re.sub(r"(CREATE TABLE IF NOT EXISTS|CREATE INDEX IF NOT EXISTS \w+ ON)\s+(\w+)", rf"\1 {s}.\2",
                     t.strip())
              for t in text.split(";") if t.strip()]
    return [f"CREATE SCHEMA IF NOT EXISTS {s}", *tables]


def create_tables(conn: Any, schema: str = "public") -> None:
    """Create ``schema`` and its tables, as the stack does in ``public`` (idempotent)."""
    for stmt in schema_statements(schema):
        conn.run(stmt)


# -- movies and users ------------------------------------------------------------------------
_MOVIES_SQL = "SELECT movie_id, title, year, genres FROM movies WHERE movie_id = ANY(CAST(:ids AS int[]))"


def movies_by_id(db: Postgres, ids: Sequence[int]) -> list[Sequence[Any]]:
    """(movie_id, title, year, genres) rows of the known ids among ``ids``."""
    return db.run(_MOVIES_SQL, ids=list(ids))


def insert_ignoring_conflicts(conn: Any, schema: str, table: str, cols: Sequence[str],
                              rows: Sequence[Sequence[Any]], key: str) -> int:
    """One multi-row ``INSERT ... ON CONFLICT (key) DO NOTHING`` with bound values; rows new."""
    params: dict[str, Any] = {}
    values = []
    for i, row in enumerate(rows):
        names = []
        for c, v in zip(cols, row):
            params[f"{c}{i}"] = v
            names.append(f":{c}{i}")
        values.append("(" + ", ".join(names) + ")")
    sql = (f"INSERT INTO {ident(schema)}.{ident(table)} ({', '.join(map(ident, cols))}) VALUES {', '.join(values)} "
           f"ON CONFLICT ({ident(key)}) DO NOTHING RETURNING {ident(key)}")
    return len(conn.run(sql, **params) or [])


def count_rows(conn: Any, schema: str, table: str) -> int:
    """``count(*)`` of ``schema.table``."""
    return int(conn.run(f"SELECT count(*) FROM {ident(schema)}.{ident(table)}")[0][0])


# -- the serving state: each user's feedback events and rated movies ----------------------
# The request path reads one user in one round trip over the environment's connection, as
# one row: the liked movies newest first, each once, and (when the model does not hold them)
# the rated movies. One row of arrays decodes faster than a row per movie.
_LIKED = ("ARRAY(SELECT movie_id FROM user_events WHERE user_id = :u AND kind = 'like' "
          "GROUP BY movie_id ORDER BY max(ts) DESC, movie_id)")
_LIKED_SQL = f"SELECT {_LIKED}"
_HISTORY_SQL = f"SELECT {_LIKED}, (SELECT movies FROM user_ratings WHERE user_id = :u)"
_USER_LIKES_SQL = ("SELECT event_id, movie_id, ts FROM user_events WHERE user_id = :u AND kind = 'like' "
                   "ORDER BY ts DESC, event_id DESC LIMIT :n")
# One statement per batch, whatever its size: the columns travel as arrays.
_INSERT_EVENTS_SQL = """
INSERT INTO user_events (user_id, event_id, movie_id, kind, ts)
SELECT * FROM unnest(CAST(:u AS int[]), CAST(:e AS text[]), CAST(:m AS int[]), CAST(:k AS text[]),
                     CAST(CAST(:t AS text[]) AS timestamptz[]))
ON CONFLICT (user_id, event_id) DO NOTHING
RETURNING 1
"""
_UPSERT_RATINGS_SQL = """
INSERT INTO user_ratings (user_id, movies)
SELECT u, array_agg(m ORDER BY m) FROM unnest(CAST(:u AS int[]), CAST(:m AS int[])) AS t(u, m) GROUP BY u
ON CONFLICT (user_id) DO UPDATE SET movies = EXCLUDED.movies
"""


def user_history(db: Postgres, user_id: int, ratings: bool = True) -> History:
    """Likes (newest first, each movie once) and, when ``ratings``, the rated movies of ``user_id``."""
    row = db.run(_HISTORY_SQL if ratings else _LIKED_SQL, u=user_id)[0]
    return History(liked=[int(m) for m in row[0]], rated=set(row[1] or ()) if ratings else set())


def user_likes(db: Postgres, user_id: int, limit: int) -> list[tuple[str, int, datetime]]:
    """The newest ``limit`` like events of ``user_id``: (event_id, movie_id, ts)."""
    return [(str(e), int(m), ts) for e, m, ts in db.run(_USER_LIKES_SQL, u=user_id, n=limit)]


def insert_user_events(db: Any, rows: Sequence[tuple[int, str, int, str, datetime]]) -> int:
    """Insert (user_id, event_id, movie_id, kind, ts) rows in one statement; how many were new.

    ``db`` is a ``Postgres`` or a pg8000 native connection (both have ``run``)."""
    if not rows:
        return 0
    cols = list(zip(*rows))
    return len(db.run(_INSERT_EVENTS_SQL, u=list(cols[0]), e=list(cols[1]), m=list(cols[2]), k=list(cols[3]),
                      t=[ts.isoformat() for ts in cols[4]]) or [])


def upsert_user_ratings(db: Any, pairs: Sequence[tuple[int, int]]) -> None:
    """Set the rated movies of every user in ``pairs`` ((user_id, movie_id)) to exactly those."""
    if pairs:
        users, movies = zip(*pairs)
        db.run(_UPSERT_RATINGS_SQL, u=list(users), m=list(movies))


def backfill_done(db: Any, step: str) -> tuple[int, datetime] | None:
    """(rows, when) of a finished backfill step, or None."""
    rows = db.run("SELECT rows, done_at FROM serving_backfill WHERE step = :s", s=step)
    return (int(rows[0][0]), rows[0][1]) if rows else None


def mark_backfill_done(db: Any, step: str, rows: int) -> None:
    """Record that backfill ``step`` finished with ``rows`` rows."""
    db.run("INSERT INTO serving_backfill (step, rows, done_at) VALUES (:s, :n, now()) "
           "ON CONFLICT (step) DO UPDATE SET rows = EXCLUDED.rows, done_at = EXCLUDED.done_at", s=step, n=rows)


# -- experiments (issue 13): at most one running, enforced by a partial unique index ------
EXPERIMENT_COLUMNS = ("experiment_id", "control", "candidate", "share", "min_impressions", "max_hours", "alpha",
                      "status", "decision", "reason", "created_at", "ended_at")
_EXP = ", ".join(EXPERIMENT_COLUMNS)
_INSERT_EXPERIMENT_SQL = f"""
INSERT INTO experiments ({_EXP})
VALUES (:experiment_id, :control, :candidate, :share, :min_impressions, :max_hours, :alpha, 'running', NULL, NULL,
        :created_at, NULL)
ON CONFLICT DO NOTHING
RETURNING {_EXP}
"""
_RUNNING_EXPERIMENT_SQL = f"SELECT {_EXP} FROM experiments WHERE status = 'running'"
_EXPERIMENTS_SQL = f"SELECT {_EXP} FROM experiments ORDER BY created_at DESC LIMIT :n"
_EXPERIMENT_SQL = f"SELECT {_EXP} FROM experiments WHERE experiment_id = :id"
_END_EXPERIMENT_SQL = f"""
UPDATE experiments SET status = :status, decision = :decision, reason = :reason, ended_at = :ended_at
WHERE experiment_id = :id AND status = 'running'
RETURNING {_EXP}
"""


def _experiment(rows: list[Sequence[Any]]) -> dict[str, Any] | None:
    return dict(zip(EXPERIMENT_COLUMNS, rows[0])) if rows else None


def insert_experiment(db: Postgres, **values: Any) -> dict[str, Any] | None:
    """Start an experiment; None when another one is running (nothing written)."""
    return _experiment(db.run(_INSERT_EXPERIMENT_SQL, **values))


def running_experiment(db: Postgres) -> dict[str, Any] | None:
    """The running experiment, if any."""
    return _experiment(db.run(_RUNNING_EXPERIMENT_SQL))


def experiments(db: Postgres, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` experiments."""
    return [dict(zip(EXPERIMENT_COLUMNS, r)) for r in db.run(_EXPERIMENTS_SQL, n=limit)]


def experiment(db: Postgres, experiment_id: str) -> dict[str, Any] | None:
    return _experiment(db.run(_EXPERIMENT_SQL, id=experiment_id))


def end_experiment(db: Postgres, experiment_id: str, status: str, decision: str, reason: str,
                   ended_at: datetime) -> dict[str, Any] | None:
    """Mark a running experiment ended; None when it was not running (someone ended it first)."""
    return _experiment(db.run(_END_EXPERIMENT_SQL, id=experiment_id, status=status, decision=decision,
                              reason=reason, ended_at=ended_at))
