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
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlparse

from ..user_state import History
from . import Unavailable
from .clickhouse import ident

T = TypeVar("T")

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

    def transaction(self, body: Callable[[Callable[..., list[Sequence[Any]]]], T]) -> T:
        """Run ``body(run)`` inside one transaction (``run(sql, **params)`` runs a statement in
        it) and commit; any error rolls it back. A connection found broken at ``BEGIN`` (the
        database restarted since the last call) is reopened once; after that no reconnect in
        the middle: a broken connection is dropped and raised as ``Unavailable``, and the
        caller retries the whole."""
        from pg8000.exceptions import DatabaseError

        with self._lock:
            self._begin()
            try:
                out = body(lambda sql, **params: self._statement(sql).run(**params))
                self._conn.run("COMMIT")
                return out
            except DatabaseError as exc:
                if _is_connection_error(exc):
                    self._drop()
                    raise _down("restarting") from exc
                self._rollback()
                raise
            except Exception as exc:
                self._drop()
                if isinstance(exc, Unavailable):
                    raise
                raise _down(type(exc).__name__) from exc

    def _begin(self) -> None:
        """``BEGIN`` on the connection, reopening it once if it is broken (nothing ran yet)."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                self._conn.run("BEGIN")
                return
            except Exception as exc:
                self._drop()
                if attempt == 2:
                    raise _down(type(exc).__name__) from exc

    def _rollback(self) -> None:
        try:
            self._conn.run("ROLLBACK")
        except Exception:
            self._drop()

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
    tables = [re.sub(r"(CREATE TABLE IF NOT EXISTS|CREATE INDEX IF NOT EXISTS \w+ ON|ALTER TABLE)\s+(\w+)", rf"\1 {s}.\2",
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
# one row of arrays (one row of arrays decodes faster than a row per movie). Per (user,
# movie) the latest event wins (by ts, then by the order stored): the movies whose latest
# event is a like, newest first; those whose latest is an unlike or not_interested (out of
# the user's signal); those ever marked not_interested (never listed again); the deletion
# time if the user was forgotten; and (when the model does not hold them) the rated movies.
_LATEST = ("SELECT DISTINCT ON (movie_id) movie_id, kind, ts, seq, event_id FROM user_events WHERE user_id = :u "
           "ORDER BY movie_id, ts DESC, seq DESC")
_STATE = f"""WITH latest AS ({_LATEST})
SELECT ARRAY(SELECT movie_id FROM latest WHERE kind = 'like' ORDER BY ts DESC, movie_id),
       ARRAY(SELECT movie_id FROM latest WHERE kind <> 'like' ORDER BY movie_id),
       ARRAY(SELECT DISTINCT movie_id FROM user_events WHERE user_id = :u AND kind = 'not_interested'),
       (SELECT deleted_at FROM deleted_users WHERE user_id = :u),
       ARRAY(SELECT movie_id FROM movies WHERE hidden),
       ARRAY(SELECT movie_id FROM movies WHERE added_at IS NOT NULL AND NOT hidden ORDER BY movie_id)"""
_LIKED_SQL = _STATE
_HISTORY_SQL = f"{_STATE},\n       (SELECT movies FROM user_ratings WHERE user_id = :u)"
_USER_LIKES_SQL = (f"SELECT event_id, movie_id, ts FROM ({_LATEST}) latest WHERE kind = 'like' "
                   "ORDER BY ts DESC, seq DESC LIMIT :n")
# One statement per batch, whatever its size: the columns travel as arrays, in the batch's
# order (``seq`` keeps it).
_INSERT_EVENTS_SQL = """
INSERT INTO user_events (user_id, event_id, movie_id, kind, ts)
SELECT * FROM unnest(CAST(:u AS int[]), CAST(:e AS text[]), CAST(:m AS int[]), CAST(:k AS text[]),
                     CAST(CAST(:t AS text[]) AS timestamptz[]))
ON CONFLICT (user_id, event_id) DO NOTHING
RETURNING 1
"""
# A forgotten user's rows and the consumer's batch are serialized per user by a transaction
# advisory lock (class 12 = issue 12): the consumer holds it shared while it reads the
# tombstones and inserts, DELETE /users holds it exclusively while it writes the tombstone and
# deletes; so no batch that read "not deleted" can insert after the deletion committed.
_LOCK_CLASS = 12
_LOCK_SHARED_SQL = ("SELECT count(*) FROM (SELECT pg_advisory_xact_lock_shared(:c, u) "
                    "FROM unnest(CAST(:u AS int[])) AS t(u)) locked")
_LOCK_SQL = "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(:c, :u)) locked"
_TOMBSTONES_SQL = "SELECT user_id, deleted_at FROM deleted_users WHERE user_id = ANY(CAST(:u AS int[]))"
_TOMBSTONE_SQL = """
INSERT INTO deleted_users (user_id, deleted_at) VALUES (:u, CAST(:t AS timestamptz))
ON CONFLICT (user_id) DO UPDATE SET deleted_at = GREATEST(deleted_users.deleted_at, EXCLUDED.deleted_at)
RETURNING deleted_at
"""
_DELETE_USER_SQL = {
    "user_events": "DELETE FROM user_events WHERE user_id = :u RETURNING 1",
    "user_ratings": "DELETE FROM user_ratings WHERE user_id = :u RETURNING 1",
    "users": "DELETE FROM users WHERE user_id = :u RETURNING 1",
}
_UPSERT_RATINGS_SQL = """
INSERT INTO user_ratings (user_id, movies)
SELECT u, array_agg(m ORDER BY m) FROM unnest(CAST(:u AS int[]), CAST(:m AS int[])) AS t(u, m) GROUP BY u
ON CONFLICT (user_id) DO UPDATE SET movies = EXCLUDED.movies
"""
_COUNT_USER_SQL = """SELECT (SELECT count(*) FROM user_events WHERE user_id = :u),
       (SELECT count(*) FROM user_ratings WHERE user_id = :u),
       (SELECT count(*) FROM users WHERE user_id = :u)"""


def _history(row: Sequence[Any], ratings: bool) -> History:
    return History(liked=[int(m) for m in row[0]], dropped={int(m) for m in row[1]},
                   hidden={int(m) for m in row[2]} | {int(m) for m in row[4]}, deleted_at=row[3],
                   added=[int(m) for m in row[5]], rated=set(row[6] or ()) if ratings else set())


def user_history(db: Postgres, user_id: int, ratings: bool = True) -> History:
    """The serving state of ``user_id``: likes (newest first, each movie once), the movies out
    of their signal and those hidden for good, the deletion time and, when ``ratings``, the
    rated movies."""
    return _history(db.run(_HISTORY_SQL if ratings else _LIKED_SQL, u=user_id)[0], ratings)


_HIDDEN_SQL = """SELECT ARRAY(SELECT DISTINCT movie_id FROM user_events WHERE user_id = :u AND kind = 'not_interested'),
       ARRAY(SELECT movie_id FROM movies WHERE hidden),
       ARRAY(SELECT movie_id FROM movies WHERE added_at IS NOT NULL AND NOT hidden ORDER BY movie_id)"""


def user_hidden(db: Postgres, user_id: int | None) -> tuple[set[int], list[int]]:
    """(movies never to list to ``user_id``: their not_interested ones and every movie the admin
    hid; the movies added through the API and not hidden). ``user_id`` None: no user."""
    row = db.run(_HIDDEN_SQL, u=user_id or 0)[0]
    return {int(m) for m in row[0]} | {int(m) for m in row[1]}, [int(m) for m in row[2]]


# -- the catalogue's admin side (POST /admin/movies, PATCH /admin/movies/{id}) ----------------
_MOVIE_LOCK_SQL = "SELECT count(*) FROM (SELECT pg_advisory_xact_lock(:c, 0)) locked"
_ADD_MOVIE_SQL = """
INSERT INTO movies (movie_id, title, year, genres, added_at)
SELECT COALESCE(max(movie_id), 0) + 1, :t, CAST(:y AS int), CAST(:g AS text[]), now() FROM movies
RETURNING movie_id, title, year, genres, added_at, hidden
"""
_SET_HIDDEN_SQL = ("UPDATE movies SET hidden = :h WHERE movie_id = :m "
                   "RETURNING movie_id, title, year, genres, added_at, hidden")


def add_movie(db: Postgres, title: str, year: int | None, genres: Sequence[str]) -> Sequence[Any]:
    """Insert a movie with the next free id (one at a time, under a lock); its row."""

    def body(run: Callable[..., list[Sequence[Any]]]) -> Sequence[Any]:
        run(_MOVIE_LOCK_SQL, c=_LOCK_CLASS + 1)
        return run(_ADD_MOVIE_SQL, t=title, y=year, g=list(genres))[0]

    return db.transaction(body)


def set_movie_hidden(db: Postgres, movie_id: int, hidden: bool) -> Sequence[Any] | None:
    """Hide or show a movie; its row, or None for an unknown id."""
    rows = db.run(_SET_HIDDEN_SQL, h=hidden, m=movie_id)
    return rows[0] if rows else None


def user_likes(db: Postgres, user_id: int, limit: int) -> list[tuple[str, int, datetime]]:
    """The user's liked movies, newest first, ``limit`` at most: (event_id, movie_id, ts) of the
    like that is each movie's latest event (an unliked movie is not listed)."""
    return [(str(e), int(m), ts) for e, m, ts in db.run(_USER_LIKES_SQL, u=user_id, n=limit)]


def insert_user_events(db: Any, rows: Sequence[tuple[int, str, int, str, datetime]]) -> int:
    """Insert (user_id, event_id, movie_id, kind, ts) rows in one statement; how many were new.

    ``db`` is a ``Postgres`` or a pg8000 native connection (both have ``run``). No tombstone
    check: the consumer uses ``insert_feedback``."""
    if not rows:
        return 0
    return len(_insert(db.run, rows))


def _insert(run: Callable[..., list[Sequence[Any]]], rows: Sequence[tuple[int, str, int, str, datetime]]) -> list:
    cols = list(zip(*rows))
    return run(_INSERT_EVENTS_SQL, u=list(cols[0]), e=list(cols[1]), m=list(cols[2]), k=list(cols[3]),
               t=[ts.isoformat() for ts in cols[4]]) or []


def tombstones(db: Postgres, user_ids: Sequence[int]) -> dict[int, datetime]:
    """The deletion time of each forgotten user among ``user_ids``."""
    if not user_ids:
        return {}
    return {int(u): t for u, t in db.run(_TOMBSTONES_SQL, u=sorted(set(user_ids)))}


def insert_feedback(db: Postgres, rows: Sequence[tuple[int, str, int, str, datetime]],
                    produced: Sequence[datetime]) -> tuple[int, list[int]]:
    """Insert the batch's events, except those of forgotten users produced at or before the
    deletion (``produced[i]`` is when row i was produced); one transaction under the users'
    shared locks. Returns (rows new, indexes of the rows refused as forgotten)."""
    if not rows:
        return 0, []
    users = sorted({r[0] for r in rows})

    def body(run: Callable[..., list[Sequence[Any]]]) -> tuple[int, list[int]]:
        run(_LOCK_SHARED_SQL, c=_LOCK_CLASS, u=users)
        dead = {int(u): t for u, t in run(_TOMBSTONES_SQL, u=users)}
        refused = [i for i, r in enumerate(rows) if r[0] in dead and produced[i] <= dead[r[0]]]
        keep = [r for i, r in enumerate(rows) if i not in set(refused)]
        return (len(_insert(run, keep)) if keep else 0), refused

    return db.transaction(body)


def forget_user(db: Postgres, user_id: int, deleted_at: datetime) -> dict[str, Any]:
    """Write the tombstone and delete every serving-state row of ``user_id`` in one transaction
    (under the user's exclusive lock); returns the deletion time kept and the rows deleted."""

    def body(run: Callable[..., list[Sequence[Any]]]) -> dict[str, Any]:
        run(_LOCK_SQL, c=_LOCK_CLASS, u=user_id)
        kept = run(_TOMBSTONE_SQL, u=user_id, t=deleted_at.isoformat())[0][0]
        deleted = {table: len(run(sql, u=user_id) or []) for table, sql in _DELETE_USER_SQL.items()}
        return {"deleted_at": kept, "rows": deleted}

    return db.transaction(body)


_DELETION_MINUTES_SQL = ("SELECT date_trunc('minute', deleted_at) AS t, count(*) FROM deleted_users "
                         "WHERE deleted_at >= CAST(:since AS timestamptz) GROUP BY t ORDER BY t")


def deletion_minutes(db: Any, since: datetime) -> list[Sequence[Any]]:
    """(minute, users forgotten) per minute since ``since`` (each user's latest deletion)."""
    return db.run(_DELETION_MINUTES_SQL, since=since.isoformat())


def count_user_rows(db: Any, user_id: int) -> dict[str, int]:
    """Rows ``user_id`` has in user_events, user_ratings and users (tests, the deletion's answer)."""
    e, r, u = db.run(_COUNT_USER_SQL, u=user_id)[0]
    return {"user_events": int(e), "user_ratings": int(r), "users": int(u)}


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
