"""POST /likes and POST /feedback: validate the event, check the movie exists, produce it,
answer once acknowledged.

POST /likes is the like shorthand (a ``type`` other than "like" is a 400); POST /feedback
takes every type of ``events.TYPES``. Both produce the same message to the same topic, keyed
by the user id, so one user's events stay in order.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .catalog import Catalog
from .errors import bad_request, not_found
from .events import FeedbackEvent, InvalidEvent, feedback_from_request, like_from_request

MAX_BODY = 4096


@dataclass
class Ingest:
    """Dependencies of the ingest routes; ``send(event)`` must return only after the broker's ack."""

    catalog: Catalog
    send: Callable[[FeedbackEvent], Any]


def _accept(ingest: Ingest, parse: Callable[[], FeedbackEvent]) -> dict[str, str]:
    try:
        event = parse()
    except InvalidEvent as exc:
        raise bad_request(str(exc)) from None
    if ingest.catalog.get(event.movie_id) is None:
        raise not_found(f"movie {event.movie_id} does not exist; give a movie from the catalogue")
    ingest.send(event)
    return {"event_id": event.event_id}


def accept_like(ingest: Ingest, payload: Any, now: datetime | None = None) -> dict[str, str]:
    """POST /likes: validate, check the movie, produce; returns the contract's ``{"event_id"}``."""
    return _accept(ingest, lambda: like_from_request(payload, now=now))


def accept_feedback(ingest: Ingest, payload: Any, now: datetime | None = None) -> dict[str, str]:
    """POST /feedback: the same for any feedback type (``type`` required)."""
    return _accept(ingest, lambda: feedback_from_request(payload, now=now))
