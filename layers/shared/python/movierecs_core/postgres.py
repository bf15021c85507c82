"""One pg8000 connection per execution environment, reused across invocations.

A Lambda environment serves one request at a time, so a single connection (guarded by a
lock for the telemetry thread's sake) is enough; it is re-opened once when a query finds it
broken (PostgreSQL restarted, idle connection dropped).
"""
from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import pg8000.native

from .errors import unavailable


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


class Postgres:
    """A lazily opened, self-healing pg8000 native connection."""

    def __init__(self, dsn: str):
        self._kwargs = dsn_kwargs(dsn)
        self._conn: pg8000.native.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> pg8000.native.Connection:
        try:
            return pg8000.native.Connection(**self._kwargs)
        except Exception as exc:  # network errors come in several types
            raise unavailable(f"the movie database is unavailable ({type(exc).__name__}); retry shortly") from exc

    def run(self, sql: str, **params: Any) -> list[Sequence[Any]]:
        """Run one parametrized statement (``:name`` placeholders); one reconnect on failure."""
        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = self._connect()
                try:
                    return self._conn.run(sql, **params)
                except pg8000.native.DatabaseError:
                    raise  # a real SQL error: the connection is fine
                except Exception as exc:
                    try:
                        self._conn.close()
                    except Exception:
                        pass
                    self._conn = None
                    if attempt == 2:
                        raise unavailable(
                            f"the movie database is unavailable ({type(exc).__name__}); retry shortly"
                        ) from exc
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (tests)."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
