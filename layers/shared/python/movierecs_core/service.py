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


def recommendations(reads: Reads, user_id: int, k: int) -> dict[str, Any]:
    """Top-k for a user with their likes folded in; never a rated/liked movie, never a repeat."""
    rec = reads.model()
    history = reads.state_query(lambda db: user_history(db, user_id, ratings=not rec.knows_all_ratings))
    seen = history.seen
    r = rec.recommend(user_id, k + _MARGIN, liked=history.liked, exclude=history.rated)
    candidates = [(m, s) for m, s in r.items if m not in seen]
    movies = reads.catalog.get_many(m for m, _ in candidates)
    items: list[dict[str, Any]] = []
    used: set[int] = set()
    for movie_id, score in candidates:
        movie = movies.get(movie_id)
        if movie is None or movie_id in used:
            continue
        used.add(movie_id)
        items.append({**movie.to_json(), "score": round(float(score), 6)})
        if len(items) == k:
            break
    return {"user_id": user_id, "k": k, "model_version": r.model_version, "strategy": r.strategy, "items": items}


def movie(reads: Reads, movie_id: int) -> dict[str, Any]:
    """One catalogue row; 404 when unknown."""
    m = reads.catalog.get(movie_id)
    if m is None:
        raise not_found(f"movie {movie_id} does not exist")
    return m.to_json()


def similar(reads: Reads, movie_id: int, k: int) -> dict[str, Any]:
    """Movies closest to ``movie_id`` in the model's item space (empty if the model never saw it)."""
    if reads.catalog.get(movie_id) is None:
        raise not_found(f"movie {movie_id} does not exist")
    rec = reads.model()
    if not rec.has_item(movie_id):
        return {"movie_id": movie_id, "model_version": rec.model_version, "items": []}
    pairs = rec.similar(movie_id, k + _MARGIN)
    movies = reads.catalog.get_many(m for m, _ in pairs)
    items = [{**movies[m].to_json(), "score": round(float(s), 6)} for m, s in pairs if m in movies and m != movie_id]
    return {"movie_id": movie_id, "model_version": rec.model_version, "items": items[:k]}


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
