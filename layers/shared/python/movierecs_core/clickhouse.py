"""The ClickHouse client of an execution environment (clickhouse-connect over HTTP).

Created once and reused; uncompressed because the endpoint is on loopback (compression only
costs CPU there). ``CLICKHOUSE_URL`` may carry user/password/database.
"""
from __future__ import annotations

import threading
from typing import Any
from urllib.parse import unquote, urlparse

_lock = threading.Lock()
_clients: dict[str, Any] = {}


def client_kwargs(url: str) -> dict[str, Any]:
    """clickhouse_connect.get_client() keyword arguments from an http(s):// URL."""
    u = urlparse(url)
    if u.scheme not in ("http", "https"):
        raise ValueError(f"CLICKHOUSE_URL must be http(s)://host:port, got {url!r}")
    kw: dict[str, Any] = {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or (8443 if u.scheme == "https" else 8123),
        "secure": u.scheme == "https",
        "database": (u.path or "/").strip("/") or "movierecs",
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


def get_client(url: str) -> Any:
    """The shared client for ``url`` (created on first use; creation does a round trip)."""
    with _lock:
        c = _clients.get(url)
        if c is None:
            import clickhouse_connect  # ~0.1 s: imported on first use, not in the function's init

            c = clickhouse_connect.get_client(**client_kwargs(url))
            _clients[url] = c
        return c


def reset_client(url: str) -> None:
    """Forget the client (after a connection failure, the next call makes a new one)."""
    with _lock:
        c = _clients.pop(url, None)
    if c is not None:
        try:
            c.close()
        except Exception:
            pass
