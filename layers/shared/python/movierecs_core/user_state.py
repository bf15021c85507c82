"""A user's serving state: what one request needs to know about one user.

Read per request from PostgreSQL (``stores.postgres.user_history``), written by the
consumer in the same batch as ClickHouse; see docs/DESIGN.md, "The read path".
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class History:
    """A user's signal: liked movies newest first (each once), and every movie they rated."""

    liked: list[int] = field(default_factory=list)
    rated: set[int] = field(default_factory=set)

    @property
    def seen(self) -> set[int]:
        """Movies never to recommend to this user."""
        return self.rated | set(self.liked)
