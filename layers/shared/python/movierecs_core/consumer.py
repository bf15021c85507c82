"""The Kafka -> ClickHouse + PostgreSQL step: decode a Lambda Kafka event, validate,
de-duplicate, insert into the history (ClickHouse) and the serving state (PostgreSQL).

Every feedback type (like, unlike, not_interested) is stored the same way, with its type
(ClickHouse ``likes.type``, PostgreSQL ``user_events.kind``); the readers decide what the
latest event of a (user, movie) means.

Why this shape:
- one batched insert per invocation (row-at-a-time inserts manage ~150 rows/s here, a batch
  ~1M rows/s);
- idempotent: event ids already stored are skipped (one parametrized lookup per batch), and
  the table's ReplacingMergeTree by (user_id, event_id) is the backstop;
- a record that cannot be decoded or validated is a *dead letter* (written with its reason),
  never a reason to fail the batch;
- the serving state gets every valid like of the batch, not only those ClickHouse lacked:
  when PostgreSQL failed after ClickHouse succeeded, the retried batch finds the likes in
  ClickHouse and still writes them to PostgreSQL (``ON CONFLICT DO NOTHING`` keeps it once),
  so the two stores agree after any retry;
- any ClickHouse or PostgreSQL error propagates, so the event source mapping retries the
  whole batch and commits no offset: nothing is lost while either store is down;
- a forgotten user (DELETE /users/{id}) is never brought back by a message produced before
  the deletion (a replayed or late record): its record timestamp is compared with the
  user's tombstone before ClickHouse, and again in PostgreSQL's transaction under the user's
  lock; an event the second check refuses (the deletion ran between the two) is deleted
  from ClickHouse again. The topic itself still holds such records until retention.
"""
from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools.utilities.kafka import ConsumerRecords, SchemaConfig

from .events import FeedbackEvent, InvalidEvent, feedback_from_message
from .stores import clickhouse, postgres

_MAX_DEAD_VALUE = 8192


@dataclass(frozen=True)
class DeadLetter:
    """A record that was not stored as a like, and why."""

    topic: str
    partition: int
    offset: int
    key: str
    value: str
    reason: str


@dataclass
class Decoded:
    """A batch split into valid events (the first occurrence of each id) and dead letters;
    ``produced[i]`` is when ``events[i]`` was produced (the record's timestamp)."""

    events: list[Any] = field(default_factory=list)
    produced: list[datetime] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates_in_batch: int = 0
    total: int = 0

    @property
    def likes(self) -> list[FeedbackEvent]:
        """The events of a batch of the interactions topic."""
        return self.events


@dataclass
class Stored:
    """What one invocation did."""

    received: int
    inserted: int
    already_stored: int
    duplicates_in_batch: int
    dead_letters: int
    serving_inserted: int = 0
    forgotten: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _b64_text(raw: Any) -> str:
    """Best-effort text of a base64 field, for dead letters."""
    if raw is None:
        return ""
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8", errors="replace")[:_MAX_DEAD_VALUE]
    except (binascii.Error, ValueError, TypeError):
        return str(raw)[:_MAX_DEAD_VALUE]


def decode_records(event: dict[str, Any], parse: Callable[[Any], Any], ident: Callable[[Any], Hashable],
                   kind: str) -> Decoded:
    """Decode every record of a Lambda Kafka event (self-managed or MSK) with Powertools:
    ``parse`` validates a value (``InvalidEvent`` makes it a dead letter), ``ident`` names the
    duplicates within the batch. Shared by the interactions and the impressions topics."""
    out = Decoded()
    seen: set[Hashable] = set()
    records = ConsumerRecords(event, schema_config=SchemaConfig(value_schema_type="JSON"))
    for record in records.records:
        out.total += 1
        raw = dict(record.raw_event)
        topic = str(raw.get("topic", ""))
        partition = int(raw.get("partition", 0) or 0)
        offset = int(raw.get("offset", 0) or 0)
        key = _b64_text(raw.get("key"))

        def dead(reason: str) -> None:
            out.dead.append(DeadLetter(topic, partition, offset, key, _b64_text(raw.get("value")), reason))

        if raw.get("value") is None:
            dead("the record has no value")
            continue
        try:
            value = record.value
        except Exception as exc:  # Powertools raises its own deserialization errors
            dead(f"undecodable value: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        try:
            parsed = parse(value)
        except InvalidEvent as exc:
            dead(f"invalid {kind}: {exc}")
            continue
        if ident(parsed) in seen:
            out.duplicates_in_batch += 1
            continue
        seen.add(ident(parsed))
        out.events.append(parsed)
        out.produced.append(_produced(raw.get("timestamp"), parsed))
    return out


def decode_event(event: dict[str, Any]) -> Decoded:
    """A Lambda Kafka event of the interactions topic: feedback events and dead letters."""
    return decode_records(event, feedback_from_message, lambda e: (e.user_id, e.event_id), "event")


def _produced(timestamp_ms: Any, event: Any) -> datetime:
    """When the record was produced: its Kafka timestamp (ms), else the event's own ts."""
    try:
        ms = int(timestamp_ms)
    except (TypeError, ValueError):
        return event.ts
    return datetime.fromtimestamp(ms / 1000, timezone.utc) if ms > 0 else event.ts


def existing_ids(ch: Any, likes: Iterable[FeedbackEvent]) -> set[tuple[int, str]]:
    """(user_id, event_id) pairs of ``likes`` that are already stored."""
    return clickhouse.existing_like_ids(ch, ((like.user_id, like.event_id) for like in likes))


def store(ch: Any, db: Any, decoded: Decoded, now: datetime | None = None) -> Stored:
    """Insert the new events and the dead letters into ClickHouse (one insert each), then every
    event of the batch into the serving state (one transaction, idempotent); events of
    forgotten users produced before their deletion are stored nowhere; errors propagate."""
    now = now or datetime.now(timezone.utc)
    stored = existing_ids(ch, decoded.likes)
    dead_at = postgres.tombstones(db, [e.user_id for e in decoded.likes])
    live = [i for i, e in enumerate(decoded.likes)
            if not (e.user_id in dead_at and decoded.produced[i] <= dead_at[e.user_id])]
    events = [decoded.likes[i] for i in live]
    new = [e for e in events if (e.user_id, e.event_id) not in stored]
    if new:
        clickhouse.insert_likes(ch, [[e.event_id, e.user_id, e.movie_id, e.ts, now, e.type] for e in new])
    if decoded.dead:
        clickhouse.insert_dead_letters(
            ch, [[now, d.topic, d.partition, d.offset, d.key, d.value, d.reason[:1000]] for d in decoded.dead])
    serving, refused = postgres.insert_feedback(
        db, [(e.user_id, e.event_id, e.movie_id, e.type, e.ts) for e in events], [decoded.produced[i] for i in live])
    late: dict[int, list[str]] = {}
    for i in refused:  # forgotten between the two checks: take them out of the history again
        late.setdefault(events[i].user_id, []).append(events[i].event_id)
    for user_id, ids in late.items():
        clickhouse.delete_events(ch, user_id, ids)
    return Stored(
        received=decoded.total,
        inserted=len(new),
        already_stored=len(events) - len(new),
        duplicates_in_batch=decoded.duplicates_in_batch,
        dead_letters=len(decoded.dead),
        serving_inserted=serving,
        forgotten=len(decoded.likes) - len(live) + len(refused),
    )
