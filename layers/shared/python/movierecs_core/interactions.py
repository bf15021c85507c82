"""What a user did, read from ClickHouse: likes (table ``likes``) and ratings (``ratings``).

The recommendation path needs, in one round trip, every movie the user must not be shown
(rated or liked) and the liked movies to fold in; the likes page needs the newest likes.
``likes`` may briefly hold a duplicate event before ReplacingMergeTree merges, so reads
de-duplicate by event id.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

_HISTORY_SQL = """
SELECT 'like' AS src, movie_id, toDateTime64(max(ts), 3, 'UTC') AS t
FROM likes WHERE user_id = {u:UInt32} GROUP BY movie_id
UNION ALL
SELECT 'rating' AS src, movie_id, toDateTime64(max(ts), 3, 'UTC') AS t
FROM ratings WHERE user_id = {u:UInt32} GROUP BY movie_id
"""

_LIKES_SQL = """
SELECT event_id, movie_id, ts FROM likes
WHERE user_id = {u:UInt32}
ORDER BY ts DESC, event_id DESC
LIMIT 1 BY event_id
LIMIT {n:UInt32}
"""


@dataclass
class History:
    """A user's signal: liked movies newest first, and every movie rated or liked."""

    liked: list[int] = field(default_factory=list)
    rated: set[int] = field(default_factory=set)

    @property
    def seen(self) -> set[int]:
        """Movies never to recommend to this user."""
        return self.rated | set(self.liked)


def _utc(ts: Any) -> datetime:
    if isinstance(ts, datetime):
        return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
    raise TypeError(f"unexpected timestamp {ts!r}")


def user_history(ch: Any, user_id: int) -> History:
    """Likes (newest first) and ratings of ``user_id``."""
    rows = ch.query(_HISTORY_SQL, parameters={"u": user_id}).result_rows
    likes = sorted(((_utc(t), int(m)) for src, m, t in rows if src == "like"), reverse=True)
    return History(liked=[m for _, m in likes], rated={int(m) for src, m, _ in rows if src == "rating"})


def user_likes(ch: Any, user_id: int, limit: int) -> list[tuple[str, int, datetime]]:
    """The newest ``limit`` like events of ``user_id``: (event_id, movie_id, ts)."""
    rows = ch.query(_LIKES_SQL, parameters={"u": user_id, "n": limit}).result_rows
    return [(str(e), int(m), _utc(t)) for e, m, t in rows]
