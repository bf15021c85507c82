"""The read side of the API (recommend function): plain functions over injected dependencies.

``Reads`` bundles the environment's model holder, movie catalog and serving-state
connection (PostgreSQL: each user's likes and rated movies, one indexed read per request;
ClickHouse, the history, is not on the request path), so unit tests can pass fakes and the
handler stays a list of routes. The holder is ``movierecs_serving.ModelHolder``, described
here by the ``Models`` protocol: core never imports serving.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .catalog import Catalog
from .errors import from_unavailable, not_found, unavailable
from .events import format_ts
from .filters import Filters
from .stores import Unavailable
from .stores.postgres import Postgres, user_history, user_likes

# Extra candidates asked from the model, in case a movie is missing from the catalogue.
_MARGIN = 5


class Models(Protocol):
    """The environment's model (``movierecs_serving.ModelHolder``)."""

    #: Raised by ``get()`` when no model can be served.
    Unavailable: type[Exception]

    @property
    def version(self) -> str | None: ...

    def get(self) -> Any: ...


@dataclass
class Reads:
    """Dependencies of the read endpoints."""

    models: Models
    catalog: Catalog
    state: Postgres

    def state_query(self, fn: Callable[[Postgres], Any]) -> Any:
        """Run ``fn(state)``; the serving state being unreachable is a 503 with a clear message."""
        try:
            return fn(self.state)
        except Unavailable as exc:
            raise from_unavailable(exc) from exc

    def model(self) -> Any:
        """The Recommender being served; no servable model is a 503."""
        try:
            return self.models.get()
        except self.models.Unavailable as exc:
            raise unavailable(str(exc)) from exc


def health(reads: Reads) -> dict[str, Any]:
    """``{"status": "ok", "model_version"}``; the version is null when no model is loadable."""
    try:
        reads.models.get()
    except reads.models.Unavailable:
        pass
    return {"status": "ok", "model_version": reads.models.version}


def _listed(reads: Reads, ranked: list[tuple[int, float]], k: int, filters: Filters,
            skip: set[int]) -> list[dict[str, Any]]:
    """The first ``k`` ranked movies that are in the catalogue, not in ``skip`` and pass
    ``filters``; the catalogue is asked chunk by chunk, so a rare genre does not look up
    the whole ranking when its matches come early."""
    items: list[dict[str, Any]] = []
    used: set[int] = set()
    chunk = k + _MARGIN if not filters.active else 256
    for start in range(0, len(ranked), chunk):
        part = ranked[start:start + chunk]
        movies = reads.catalog.get_many(m for m, _ in part if m not in skip)
        for movie_id, score in part:
            movie = movies.get(movie_id)
            if movie is None or movie_id in used or movie_id in skip or not filters.matches(movie):
                continue
            used.add(movie_id)
            items.append({**movie.to_json(), "score": round(float(score), 6)})
            if len(items) == k:
                return items
    return items


def _candidates(k: int, filters: Filters, widest: int) -> list[int]:
    """How many ranked candidates to ask the model for, in order: a filter may reject most of
    them, so a filtered listing asks for more, then for every item before saying it is short."""
    if not filters.active:
        return [k + _MARGIN]
    return sorted({min(widest, max(20 * k, 200)), widest})


def recommendations(reads: Reads, user_id: int, k: int, filters: Filters = Filters()) -> dict[str, Any]:
    """Top-k for a user with their likes folded in; never a rated/liked movie, never a repeat;
    only movies passing ``filters`` (``exhausted`` when fewer than k do)."""
    rec = reads.model()
    history = reads.state_query(lambda db: user_history(db, user_id, ratings=not rec.knows_all_ratings))
    seen = history.seen
    for n in _candidates(k, filters, len(rec.artifact.item_ids)):
        r = rec.recommend(user_id, n, liked=history.liked, exclude=history.rated | filters.exclude)
        items = _listed(reads, r.items, k, filters, seen)
        if len(items) == k:
            break
    out = {"user_id": user_id, "k": k, "model_version": r.model_version, "strategy": r.strategy, "items": items}
    if filters.active:
        out["exhausted"] = len(items) < k
    return out


def movie(reads: Reads, movie_id: int) -> dict[str, Any]:
    """One catalogue row; 404 when unknown."""
    m = reads.catalog.get(movie_id)
    if m is None:
        raise not_found(f"movie {movie_id} does not exist")
    return m.to_json()


def similar(reads: Reads, movie_id: int, k: int, filters: Filters = Filters()) -> dict[str, Any]:
    """Movies closest to ``movie_id`` in the model's item space (empty if the model never saw it),
    only those passing ``filters`` (``exhausted`` when fewer than k do)."""
    if reads.catalog.get(movie_id) is None:
        raise not_found(f"movie {movie_id} does not exist")
    rec = reads.model()
    items: list[dict[str, Any]] = []
    if rec.has_item(movie_id):
        for n in _candidates(k, filters, len(rec.artifact.item_ids)):
            items = _listed(reads, rec.similar(movie_id, n), k, filters, {movie_id})
            if len(items) == k:
                break
    out: dict[str, Any] = {"movie_id": movie_id, "model_version": rec.model_version, "items": items}
    if filters.active:
        out["exhausted"] = len(items) < k
    return out


def likes(reads: Reads, user_id: int, limit: int) -> dict[str, Any]:
    """The user's likes, newest first, with titles."""
    rows = reads.state_query(lambda db: user_likes(db, user_id, limit))
    movies = reads.catalog.get_many(m for _, m, _ in rows)
    items = [
        {
            "movie_id": m,
            "title": movies[m].title if m in movies else None,
            "ts": format_ts(ts),
            "event_id": e,
        }
        for e, m, ts in rows
    ]
    return {"user_id": user_id, "items": items}
