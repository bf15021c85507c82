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


def _is_connection_error(exc: Exception) -> bool:
    """SQLSTATE classes 08 (connection exception) and 57 (operator intervention, e.g. shutdown)."""
    info = exc.args[0] if exc.args else None
    code = str(info.get("C", "")) if isinstance(info, dict) else ""
    return code.startswith(("08", "57"))


class Postgres:
    """A lazily opened, self-healing pg8000 native connection."""

    def __init__(self, dsn: str):
        self._kwargs = dsn_kwargs(dsn)
        self._conn: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        import pg8000.native  # imported on first use, not in the function's init

        try:
            return pg8000.native.Connection(**self._kwargs)
        except Exception as exc:  # network errors come in several types
            raise unavailable(f"the movie database is unavailable ({type(exc).__name__}); retry shortly") from exc

    def run(self, sql: str, **params: Any) -> list[Sequence[Any]]:
        """Run one parametrized statement (``:name`` placeholders); one reconnect on failure."""
        from pg8000.exceptions import DatabaseError

        with self._lock:
            for attempt in (1, 2):
                if self._conn is None:
                    self._conn = self._connect()
                try:
                    return self._conn.run(sql, **params)
                except DatabaseError as exc:
                    if not _is_connection_error(exc):
                        raise  # a real SQL error: the connection is fine
                    self._drop()
                    if attempt == 2:
                        raise unavailable("the movie database is unavailable (restarting); retry shortly") from exc
                except Exception as exc:
                    self._drop()
                    if attempt == 2:
                        raise unavailable(
                            f"the movie database is unavailable ({type(exc).__name__}); retry shortly"
                        ) from exc
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.close()
        except Exception:
            pass
        self._conn = None

    def close(self) -> None:
        """Close the connection (tests)."""
        with self._lock:
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
