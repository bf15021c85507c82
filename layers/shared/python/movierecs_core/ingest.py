"""POST /likes: validate a like, check the movie exists, produce it, answer once acknowledged."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .catalog import Catalog
from .errors import bad_request, not_found
from .events import InvalidEvent, LikeEvent, like_from_request

MAX_BODY = 4096


@dataclass
class Ingest:
    """Dependencies of POST /likes; ``send(event)`` must return only after the broker's ack."""

    catalog: Catalog
    send: Callable[[LikeEvent], Any]


def accept_like(ingest: Ingest, payload: Any, now: datetime | None = None) -> dict[str, str]:
    """Validate, check the movie, produce; returns the contract's ``{"event_id"}``."""
    try:
        event = like_from_request(payload, now=now)
    except InvalidEvent as exc:
        raise bad_request(str(exc)) from None
    if ingest.catalog.get(event.movie_id) is None:
        raise not_found(f"movie {event.movie_id} does not exist; like a movie from the catalogue")
    ingest.send(event)
    return {"event_id": event.event_id}
