"""Impressions (issue 13): every list the API served, recorded off the request's critical path.

The path: the recommend function queues an ``Impression`` in memory (microseconds, no I/O);
a background thread produces the queue to the Kafka topic ``impressions`` in batches and
waits for the broker's acknowledgements, keeping the batch and retrying while the broker is
down; the topic's event source mapping invokes the impressions function, which stores each
request's list once in ClickHouse (``movierecs.impressions``, de-duplicated by request id:
a retried batch or a re-sent record changes nothing). Impressions have their own topic so that
they never queue in front of likes and their 5 s freshness.

What can still be lost: the rows of an execution environment that dies before its thread
produced them (about the last 0.1 to 0.2 s of lists), and rows beyond the buffer's
cap while the broker stays down (counted in ``Recorder.dropped`` and logged).
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .consumer import Decoded, decode_records
from .events import InvalidEvent, format_ts, parse_ts
from .stores import clickhouse
from .telemetry import Recorder
from .validation import MAX_ID

log = logging.getLogger("movierecs.impressions")

LISTINGS = ("recommendations", "similar")
ARMS = ("", "control", "candidate")
MAX_ITEMS = 100


@dataclass(frozen=True)
class Impression:
    """One list served: who saw which movies, in order, from which model version and arm."""

    request_id: str
    user_id: int  # 0 for a list without a user (similar movies)
    listing: str  # "recommendations" | "similar"
    model_version: str
    strategy: str  # personal | fold_in | popular | similar
    movie_ids: tuple[int, ...]
    ts: datetime
    source_movie: int = 0  # the movie a similar list is about
    arm: str = ""  # "control" | "candidate" while an experiment runs
    experiment_id: str = ""

    def to_message(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "user_id": self.user_id, "listing": self.listing,
                "source_movie": self.source_movie, "model_version": self.model_version, "arm": self.arm,
                "experiment_id": self.experiment_id, "strategy": self.strategy,
                "movie_ids": list(self.movie_ids), "ts": format_ts(self.ts)}

    def as_tuple(self) -> tuple[bytes, bytes]:
        """The Kafka record the Recorder batches: the user id as key (one user's lists stay
        in order on one partition), the UTF-8 JSON message as value."""
        return str(self.user_id).encode(), json.dumps(self.to_message(), separators=(",", ":")).encode()

    def row(self, now: datetime) -> list[Any]:
        """The ``clickhouse.IMPRESSION_COLUMNS`` row."""
        return [self.ts, self.request_id, self.user_id, self.listing, self.source_movie, self.model_version,
                self.arm, self.experiment_id, self.strategy, list(self.movie_ids), now]


def of_listing(request_id: str, listing: str, body: dict[str, Any], now: datetime | None = None) -> Impression:
    """The impression of one answer of GET /recommendations or GET /movies/{id}/similar."""
    return Impression(
        request_id=request_id,
        user_id=int(body.get("user_id") or 0),
        listing=listing,
        source_movie=int(body.get("movie_id") or 0) if listing == "similar" else 0,
        model_version=str(body.get("model_version") or ""),
        arm=str(body.get("arm") or ""),
        experiment_id=str(body.get("experiment_id") or ""),
        strategy=str(body.get("strategy") or listing),
        movie_ids=tuple(int(i["movie_id"]) for i in body.get("items", [])),
        ts=now or datetime.now(timezone.utc),
    )


def _text(value: dict[str, Any], name: str, allowed: Sequence[str] | None = None, max_len: int = 64) -> str:
    raw = value.get(name, "")
    if not isinstance(raw, str) or len(raw) > max_len or (allowed is not None and raw not in allowed):
        raise InvalidEvent(f"'{name}' is not valid: {json.dumps(raw)[:60]}")
    return raw


def _count(value: dict[str, Any], name: str) -> int:
    raw = value.get(name, 0)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 0 <= raw <= MAX_ID:
        raise InvalidEvent(f"'{name}' must be 0 or a positive integer, got {json.dumps(raw)[:40]}")
    return raw


def from_message(value: object) -> Impression:
    """Validate a decoded Kafka value of the impressions topic."""
    if not isinstance(value, dict):
        raise InvalidEvent("the value is not a JSON object")
    ids = value.get("movie_ids")
    if not isinstance(ids, list) or len(ids) > MAX_ITEMS or not all(
            isinstance(m, int) and not isinstance(m, bool) and 0 < m <= MAX_ID for m in ids):
        raise InvalidEvent(f"'movie_ids' must be a list of at most {MAX_ITEMS} movie ids")
    request_id = _text(value, "request_id")
    if not request_id:
        raise InvalidEvent("'request_id' is required")
    return Impression(
        request_id=request_id, user_id=_count(value, "user_id"), listing=_text(value, "listing", LISTINGS),
        source_movie=_count(value, "source_movie"), model_version=_text(value, "model_version"),
        arm=_text(value, "arm", ARMS), experiment_id=_text(value, "experiment_id"),
        strategy=_text(value, "strategy"), movie_ids=tuple(ids), ts=parse_ts(value.get("ts")),
    )


def decode_event(event: dict[str, Any]) -> Decoded:
    """A Lambda Kafka event of the impressions topic: impressions (first of each request id)
    and dead letters."""
    return decode_records(event, from_message, lambda i: i.request_id, "impression")


def store(ch: Any, decoded: Decoded, now: datetime | None = None) -> dict[str, int]:
    """Insert the impressions ClickHouse lacks and the dead letters; errors propagate (the
    mapping retries the batch)."""
    now = now or datetime.now(timezone.utc)
    have = clickhouse.existing_impressions(ch, (i.request_id for i in decoded.events))
    new = [i for i in decoded.events if i.request_id not in have]
    if new:
        clickhouse.insert_impressions(ch, [i.row(now) for i in new])
    if decoded.dead:
        clickhouse.insert_dead_letters(
            ch, [[now, d.topic, d.partition, d.offset, d.key, d.value, d.reason[:1000]] for d in decoded.dead])
    return {"received": decoded.total, "inserted": len(new), "already_stored": len(decoded.events) - len(new),
            "duplicates_in_batch": decoded.duplicates_in_batch, "dead_letters": len(decoded.dead)}


def publisher(send: Callable[[Sequence[tuple[bytes, bytes]]], None]) -> Recorder:
    """The per-environment queue of impressions, flushed to ``send`` (a batch producer) by a
    background thread at least every 0.1 s (what a killed environment can lose)."""
    return Recorder(send, max_rows=200, max_age=0.1, min_interval=0.1, max_buffer=50000)
