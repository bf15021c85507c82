"""A user's serving state: what one request needs to know about one user.

Read per request from PostgreSQL (``stores.postgres.user_history``), written by the
consumer in the same batch as ClickHouse; see docs/DESIGN.md, "The read path".
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class History:
    """A user's signal: liked movies newest first (each once), and every movie they rated.

    Feedback (issue 12): ``dropped`` are the movies whose latest event is an unlike or a
    not_interested (no longer positive signal: left out of the fold-in, zero confidence),
    ``hidden`` those ever marked not_interested and those the admin hid (never listed to
    this user again), ``deleted_at`` is set when the user was forgotten (served as a new
    user: the model's vector of them is not used), and ``added`` are the movies added
    through the API (not hidden), which a model may not know yet (part 3)."""

    liked: list[int] = field(default_factory=list)
    rated: set[int] = field(default_factory=set)
    dropped: set[int] = field(default_factory=set)
    hidden: set[int] = field(default_factory=set)
    deleted_at: datetime | None = None
    added: list[int] = field(default_factory=list)

    @property
    def forgotten(self) -> bool:
        """True when the user asked to be forgotten (DELETE /users/{id})."""
        return self.deleted_at is not None

    @property
    def seen(self) -> set[int]:
        """Movies never to recommend to this user."""
        return self.rated | set(self.liked) | self.hidden
