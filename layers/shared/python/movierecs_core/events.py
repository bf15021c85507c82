"""The feedback event (a like, an unlike, a "not interested"): request validation, the Kafka
message (contract) and its decoding.

One definition shared by the producer (like_ingest: POST /likes and POST /feedback) and the
consumer, so what is written to the topic is exactly what the consumer accepts. An unknown
``type`` is refused on both sides, never taken for a like (issue 12).
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from .validation import MAX_ID

EVENT_ID_MAX = 64
_EVENT_ID_RE = re.compile(r"^[\x21-\x7e]{1,64}$")  # printable ASCII, no spaces
# Accept events from the MovieLens era to a little in the future (clock skew).
_MIN_TS = datetime(1995, 1, 1, tzinfo=timezone.utc)
_MAX_SKEW = timedelta(days=1)


#: The feedback types (the Kafka message's ``type``, PostgreSQL ``user_events.kind``,
#: ClickHouse ``likes.type``): the latest like/unlike of a (user, movie) decides whether it is
#: liked; a ``not_interested`` keeps the movie out of the user's lists for good.
LIKE, UNLIKE, NOT_INTERESTED = "like", "unlike", "not_interested"
TYPES: tuple[str, ...] = (LIKE, UNLIKE, NOT_INTERESTED)


class InvalidEvent(ValueError):
    """A feedback event that cannot be accepted; the message says which field and why."""


@dataclass(frozen=True)
class FeedbackEvent:
    """One piece of feedback: a user liked (unliked, was not interested in) a movie at ``ts``
    (UTC); ``event_id`` is the idempotency key."""

    event_id: str
    user_id: int
    movie_id: int
    ts: datetime
    type: str = LIKE

    def to_message(self) -> dict[str, Any]:
        """The contract's Kafka value as a dict."""
        return {
            "event_id": self.event_id,
            "user_id": self.user_id,
            "movie_id": self.movie_id,
            "type": self.type,
            "ts": format_ts(self.ts),
        }

    def to_bytes(self) -> bytes:
        """The Kafka value: UTF-8 JSON."""
        return json.dumps(self.to_message(), separators=(",", ":")).encode()

    def key_bytes(self) -> bytes:
        """The Kafka key: the user id as text (keeps one user's events in order on one partition)."""
        return str(self.user_id).encode()


#: The seed's name for the event, kept for callers that only ever produce likes.
LikeEvent = FeedbackEvent


def format_ts(ts: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a Z, e.g. 2026-11-27T23:10:00.123Z."""
    return ts.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


def parse_ts(raw: object, field: str = "ts") -> datetime:
    """An ISO-8601 timestamp (``Z`` or offset; naive means UTC) as an aware UTC datetime."""
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidEvent(f"'{field}' must be an ISO-8601 timestamp string such as 2026-11-27T12:00:00Z")
    text = raw.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEvent(
            f"'{field}' is not a valid ISO-8601 timestamp: '{raw[:40]}' (example: 2026-11-27T12:00:00Z)"
        ) from None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=timezone.utc)
    ts = ts.astimezone(timezone.utc)
    if ts < _MIN_TS or ts > datetime.now(timezone.utc) + _MAX_SKEW:
        raise InvalidEvent(f"'{field}' {format_ts(ts)} is out of range (1995 to now)")
    return ts


def _id(payload: dict[str, Any], name: str) -> int:
    raw = payload.get(name)
    if raw is None:
        raise InvalidEvent(f"'{name}' is required: give a positive integer")
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidEvent(f"'{name}' must be a positive integer (a JSON number), got {json.dumps(raw)[:40]}")
    if raw < 1 or raw > MAX_ID:
        raise InvalidEvent(f"'{name}' must be a positive integer between 1 and {MAX_ID}, got {raw}")
    return raw


def _event_id(payload: dict[str, Any], generate: bool) -> str:
    raw = payload.get("event_id")
    if raw is None:
        if generate:
            return uuid.uuid4().hex
        raise InvalidEvent("'event_id' is required")
    if not isinstance(raw, str):
        raise InvalidEvent("'event_id' must be a string of 1 to 64 printable characters")
    if len(raw) > EVENT_ID_MAX:
        raise InvalidEvent(f"'event_id' is {len(raw)} characters long; at most {EVENT_ID_MAX} are allowed")
    if not _EVENT_ID_RE.match(raw):
        raise InvalidEvent("'event_id' must be 1 to 64 printable ASCII characters without spaces")
    return raw


def _type(raw: object, allowed: tuple[str, ...]) -> str:
    if not isinstance(raw, str) or raw not in allowed:
        raise InvalidEvent(f"'type' must be one of {', '.join(allowed)}, got {json.dumps(raw)[:40]}")
    return raw


def feedback_from_request(payload: object, now: datetime | None = None,
                          types: tuple[str, ...] = TYPES, default: str | None = None) -> FeedbackEvent:
    """Validate a POST /feedback (or /likes) body, already JSON-decoded; fills event_id and ts.

    ``types`` are the types this route accepts, ``default`` the type when the body has none
    (None: ``type`` is required)."""
    if not isinstance(payload, dict):
        raise InvalidEvent("the body must be a JSON object such as {\"user_id\": 1, \"movie_id\": 2}")
    user_id = _id(payload, "user_id")
    movie_id = _id(payload, "movie_id")
    raw_type = payload.get("type", default)
    if raw_type is None:
        raise InvalidEvent(f"'type' is required: one of {', '.join(types)}")
    kind = _type(raw_type, types)
    event_id = _event_id(payload, generate=True)
    ts = parse_ts(payload["ts"]) if payload.get("ts") is not None else (now or datetime.now(timezone.utc))
    return FeedbackEvent(event_id=event_id, user_id=user_id, movie_id=movie_id, ts=ts, type=kind)


def like_from_request(payload: object, now: datetime | None = None) -> FeedbackEvent:
    """Validate a POST /likes body: the like shorthand; a ``type`` other than "like" is a 400
    (POST /feedback takes the other types), never a silent like."""
    if isinstance(payload, dict) and "type" in payload and payload["type"] != LIKE:
        raw = payload["type"]
        if isinstance(raw, str) and raw in TYPES:
            raise InvalidEvent(f"POST /likes records likes only; send type '{raw}' to POST /feedback")
        raise InvalidEvent(f"'type' must be 'like' here (or left out), got {json.dumps(raw)[:40]}; POST /feedback "
                           f"takes one of {', '.join(TYPES)}")
    return feedback_from_request(payload, now=now, types=(LIKE,), default=LIKE)


def feedback_from_message(value: object) -> FeedbackEvent:
    """Validate a decoded Kafka value (the consumer's side): every field required, a known type."""
    if not isinstance(value, dict):
        raise InvalidEvent("the value is not a JSON object")
    kind = _type(value.get("type"), TYPES)
    return FeedbackEvent(
        event_id=_event_id(value, generate=False),
        user_id=_id(value, "user_id"),
        movie_id=_id(value, "movie_id"),
        ts=parse_ts(value.get("ts")),
        type=kind,
    )


#: The seed's name (every type is accepted now).
like_from_message = feedback_from_message
