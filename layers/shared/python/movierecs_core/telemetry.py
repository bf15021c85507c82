"""Request telemetry into ClickHouse ``movierecs.requests``, off the response path.

``record()`` only appends to an in-memory buffer. A daemon thread inserts the buffer in one
batch when it holds more than ``max_rows`` rows or its oldest row is older than ``max_age``
seconds, and never more than one insert per ``min_interval`` per environment. When ClickHouse
is down rows are kept (up to ``max_buffer``, oldest dropped and counted) and retried.
Figures are real measurements of the handled request; nothing is synthesized.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from .stores.clickhouse import insert_requests

log = logging.getLogger("movierecs.telemetry")


@dataclass(frozen=True)
class RequestRow:
    """One handled request."""

    ts: datetime
    function: str
    route: str
    status: int
    latency_ms: float
    model_version: str
    request_id: str

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.ts, self.function, self.route, self.status, float(self.latency_ms), self.model_version, self.request_id)


InsertFn = Callable[[Sequence[tuple[Any, ...]]], None]


class Row(Protocol):
    """What a Recorder buffers: anything that turns into one tuple of its batch."""

    def as_tuple(self) -> tuple[Any, ...]: ...


class Recorder:
    """Buffers rows and flushes them in a background thread (request telemetry into
    ClickHouse; impressions into Kafka, ``movierecs_core.impressions``)."""

    def __init__(
        self,
        insert: InsertFn,
        max_rows: int = 200,
        max_age: float = 1.0,
        min_interval: float = 1.0,
        max_buffer: int = 20000,
        clock: Callable[[], float] = time.monotonic,
        start_thread: bool = True,
    ):
        self._insert = insert
        self.max_rows = max_rows
        self.max_age = max_age
        self.min_interval = min_interval
        self.max_buffer = max_buffer
        self._clock = clock
        self._rows: list[tuple[Any, ...]] = []
        self._oldest: float | None = None
        self._last_insert = -1e9
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.dropped = 0
        self.inserted = 0
        self.failures = 0
        self._thread: threading.Thread | None = None
        if start_thread:
            self._thread = threading.Thread(target=self._run, name="telemetry-flush", daemon=True)
            self._thread.start()

    def record(self, row: Row) -> None:
        """Queue one row (O(1), no I/O)."""
        with self._lock:
            if not self._rows:
                self._oldest = self._clock()
            self._rows.append(row.as_tuple())
            if len(self._rows) > self.max_buffer:
                over = len(self._rows) - self.max_buffer
                del self._rows[:over]
                self.dropped += over
            full = len(self._rows) > self.max_rows
        if full:
            self._wake.set()

    def due(self) -> bool:
        """Whether a flush should happen now."""
        with self._lock:
            if not self._rows:
                return False
            now = self._clock()
            if now - self._last_insert < self.min_interval:
                return False
            return len(self._rows) > self.max_rows or (self._oldest is not None and now - self._oldest >= self.max_age)

    def flush(self, force: bool = False) -> int:
        """Insert the buffered rows in one batch; returns the number inserted (0 on failure)."""
        with self._lock:
            if not self._rows:
                return 0
            if not force and self._clock() - self._last_insert < self.min_interval:
                return 0
            batch, self._rows = self._rows, []
            oldest, self._oldest = self._oldest, None
            self._last_insert = self._clock()
        try:
            self._insert(batch)
        except Exception as exc:  # keep the rows for the next attempt
            self.failures += 1
            log.warning("telemetry insert of %d rows failed (%s); will retry", len(batch), type(exc).__name__)
            with self._lock:
                self._rows[:0] = batch
                self._oldest = oldest if self._oldest is None else min(oldest or self._oldest, self._oldest)
                if len(self._rows) > self.max_buffer:
                    over = len(self._rows) - self.max_buffer
                    del self._rows[:over]
                    self.dropped += over
            return 0
        self.inserted += len(batch)
        return len(batch)

    def pending(self) -> int:
        with self._lock:
            return len(self._rows)

    def _run(self) -> None:
        while True:
            self._wake.wait(timeout=min(self.max_age, self.min_interval) / 2)
            self._wake.clear()
            try:
                if self.due():
                    self.flush()
            except Exception:  # never let the thread die
                log.exception("telemetry flush crashed")


def clickhouse_insert(get_client: Callable[[], Any]) -> InsertFn:
    """An InsertFn writing to ``requests`` with a client obtained at flush time."""

    def insert(rows: Sequence[tuple[Any, ...]]) -> None:
        insert_requests(get_client(), rows)

    return insert


def now_utc() -> datetime:
    return datetime.now(timezone.utc)
