"""DELETE /users/{user_id} (admin): forget a user (issue 12, part 2).

In this order, so that no step can be undone by another part of the system:
1. PostgreSQL, one transaction under the user's exclusive lock: the tombstone
   (``deleted_users``: the deletion time) and every serving-state row of the user
   (``user_events``, ``user_ratings``, ``users``). From the commit on the user is served as a
   new user (``History.forgotten``: the model's vector of them is not used) and their likes
   are empty; the consumer, which inserts under the same lock, refuses every event produced
   at or before the deletion time.
2. ClickHouse, the history: the user's ratings, feedback events (``likes``, every type) and
   dead letters (keyed by the user id), synchronously. The next training reads no row of the
   user, so the next model version's id map lacks them.

The Kafka topic is not rewritten: records produced before the deletion stay in it until the
topic's retention removes them (docs/API.md, "Forgetting a user"); the tombstone keeps the
consumer from storing them again. A DELETE is idempotent: sending it again deletes whatever
a failed attempt left, and the tombstone keeps the latest deletion time.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .errors import unavailable
from .events import format_ts
from .stores import Unavailable, clickhouse, postgres


def forget_user(db: Any, ch: Any, user_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Forget ``user_id`` in both stores; the answer says when and how many rows each table held."""
    now = now or datetime.now(timezone.utc)
    serving = postgres.forget_user(db, user_id, now)
    try:
        history = clickhouse.delete_user(ch, user_id)
    except Unavailable as exc:
        raise unavailable(f"user {user_id} is forgotten by the serving state (served as new from now on), but the "
                          f"history store did not answer ({exc}); send the DELETE again to finish") from exc
    except Exception as exc:
        raise unavailable(f"user {user_id} is forgotten by the serving state (served as new from now on), but "
                          f"deleting the history failed ({type(exc).__name__}); send the DELETE again to finish") from exc
    return {
        "user_id": user_id,
        "deleted_at": format_ts(serving["deleted_at"]),
        "deleted": {"postgres": serving["rows"], "clickhouse": history},
    }
