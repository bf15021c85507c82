"""A user's serving state: what one request needs to know about one user.

Read per request from PostgreSQL (``stores.postgres.user_history``), written by the
consumer in the same batch as ClickHouse; see docs/DESIGN.md, "The read path".
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class History:
    """A user's signal: liked movies newest first (each once), and every movie they rated."""

    liked: list[int] = field(default_factory=list)
    rated: set[int] = field(default_factory=set)

    @property
    def seen(self) -> set[int]:
        """Movies never to recommend to this user."""
        return self.rated | set(self.liked)

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[int, datetime | None]]) -> "History":
        """From (movie_id, ts) rows: a like has its ts, a rated movie has None."""
        newest: dict[int, datetime] = {}
        rated: set[int] = set()
        for m, ts in rows:
            movie = int(m)
            if ts is None:
                rated.add(movie)
            elif movie not in newest or ts > newest[movie]:
                newest[movie] = ts
        return cls(liked=sorted(newest, key=newest.__getitem__, reverse=True), rated=rated)
