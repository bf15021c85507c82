"""One module per store (ClickHouse, PostgreSQL, Kafka, AWS): its URL parsing, its client
factory and every statement the project runs on it.

Why one home per store: a second factory for the same store drifts (one read the database
from the URL, another ignored it), and a table's SQL spread over several modules is hard to
change. A client that cannot reach its store raises ``Unavailable``, which says nothing about
HTTP: the web layer (``movierecs_core.web``, and the read/admin logic that answers for it)
alone turns it into a 503; the consumer lets it propagate so the batch is retried.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Unavailable(Exception):
    """A store did not answer (down, restarting, timed out); retrying later may work.

    The message names the store and says what was (not) done, for the client to read.
    """


class Shared(Generic[T]):
    """One client per address for the whole execution environment, built on first use.

    Why: a Lambda environment serves invocation after invocation; a client built once keeps
    its connection (a ClickHouse client costs a round trip to build, a Kafka producer a
    metadata exchange). ``make`` builds one (and may raise ``Unavailable``), ``close`` ends
    one that ``reset`` dropped after a failure, so the next call builds it afresh.
    """

    def __init__(self, make: Callable[[str], T], close: Callable[[T], None]) -> None:
        self._make, self._close = make, close
        self._lock = threading.Lock()
        self._made: dict[str, T] = {}

    def __contains__(self, address: object) -> bool:
        return address in self._made

    def get(self, address: str) -> T:
        with self._lock:
            made = self._made.get(address)
            if made is None:
                made = self._made[address] = self._make(address)
            return made

    def reset(self, address: str) -> None:
        with self._lock:
            made = self._made.pop(address, None)
        if made is not None:
            try:
                self._close(made)
            except Exception:
                pass


__all__ = ["Shared", "Unavailable"]
