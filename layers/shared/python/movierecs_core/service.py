"""The read side of the API (recommend function): plain functions over injected dependencies.

``Reads`` bundles the environment's model holder, movie catalog and serving-state
connection (PostgreSQL: each user's likes and rated movies, one indexed read per request;
ClickHouse, the history, is not on the request path), so unit tests can pass fakes and the
handler stays a list of routes. The holder is ``movierecs_serving.ModelHolder``, described
here by the ``Models`` protocol: core never imports serving.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import new_items, paging
from .catalog import Catalog
from .controls import Controls
from .errors import from_unavailable, not_found, unavailable
from .events import format_ts
from .experiments import Experiment
from .filters import Filters
from .stores import Unavailable
from .stores.postgres import Postgres, user_hidden, user_history, user_likes
from .user_state import History

# Extra candidates asked from the model, in case a movie is missing from the catalogue.
_MARGIN = 5
# How many reasons an item carries at most.
_REASONS = 3
log = logging.getLogger("movierecs.service")


class Models(Protocol):
    """The environment's model (``movierecs_serving.ModelHolder``)."""

    #: Raised by ``get()`` when no model can be served.
    Unavailable: type[Exception]

    @property
    def version(self) -> str | None: ...

    def get(self) -> Any: ...

    def get_version(self, version: str) -> Any: ...


@dataclass
class Reads:
    """Dependencies of the read endpoints."""

    models: Models
    catalog: Catalog
    state: Postgres
    #: The running experiment (``experiments.Running.get``), None outside experiments.
    experiment: Callable[[], Experiment | None] = field(default=lambda: None)
    #: Share of a page offered to added movies no model knows yet (``new_items.explore``).
    exploration: float = 0.1

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

    def model_for(self, user_id: int) -> tuple[Any, Experiment | None, str | None]:
        """The Recommender for this user, with the experiment and arm it comes from: while an
        experiment runs, the user's sticky arm decides the version. An arm whose version cannot
        be loaded serves the current model outside the experiment (never a wrong arm)."""
        exp = self.experiment()
        if exp is not None:
            arm = exp.arm(user_id)
            try:
                return self.models.get_version(exp.version(arm)), exp, arm
            except self.models.Unavailable as exc:
                log.error("experiment %s: %s arm not servable, serving the current model: %s",
                          exp.experiment_id, arm, exc)
        return self.model(), None, None


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


def _pool(k: int, diversity: float) -> int:
    """How many matching movies the re-ranking chooses ``k`` from: more spread needs a wider
    pool, but a pool far down the ranking would cost too much relevance."""
    return k if diversity <= 0 else min(max(5 * k, 50), 500)


def _diversified(rec: Any, items: list[dict[str, Any]], k: int, diversity: float,
                 shown: tuple[int, ...]) -> list[dict[str, Any]]:
    """``k`` of the matching ``items``: the best-ranked at diversity 0, else the model's MMR pick."""
    if diversity <= 0:
        return items[:k]
    by_id = {i["movie_id"]: i for i in items}
    picked = rec.diversify([(i["movie_id"], i["score"]) for i in items], k, diversity, context=shown)
    return [by_id[m] for m, _ in picked]


def _page(out: dict[str, Any], items: list[dict[str, Any]], k: int, controls: Controls,
          cursor: paging.Cursor) -> dict[str, Any]:
    """The listing fields every page carries: ``items``, ``next_cursor``, ``exhausted`` when filtered."""
    out["items"] = items
    out["next_cursor"] = paging.next_cursor(cursor, [i["movie_id"] for i in items], k)
    if controls.filters.active:
        out["exhausted"] = len(items) < k
    return out


def _with_reasons(reads: Reads, rec: Any, items: list[dict[str, Any]], basis: Any, history: History) -> None:
    """Give each item its ``reasons``: the history movies whose exact terms add most to its score
    (``share`` = term / score), or ``popular`` when the list is the popularity one."""
    if basis is None:
        for item in items:
            item["reasons"] = [{"kind": "popular", "share": 1.0}]
        return
    explained = rec.explain(basis, [i["movie_id"] for i in items], top=_REASONS)
    top = [[(m, t) for m, t in e.terms if t > 0] if e.score > 0 else [] for e in explained]
    titles = reads.catalog.get_many({m for terms in top for m, _ in terms})
    liked = set(history.liked)
    for item, e, terms in zip(items, explained, top):
        item["reasons"] = [
            {"kind": "liked" if m in liked else "rated", "movie_id": m,
             "title": titles[m].title if m in titles else None, "share": round(t / e.score, 3)}
            for m, t in terms
        ]


def recommendations(reads: Reads, user_id: int, k: int, controls: Controls = Controls()) -> dict[str, Any]:
    """A page of top-k for a user with their likes folded in; never a rated/liked movie, never a
    repeat (across pages too); only movies passing the filters; each with its reasons."""
    rec, exp, arm = reads.model_for(user_id)
    history = reads.state_query(lambda db: user_history(db, user_id, ratings=not rec.knows_all_ratings))
    f = controls.filters
    cursor = paging.resume(controls.cursor, paging.listing("recommendations", user_id, f, controls.diversity),
                           rec.model_version)
    shown = set(cursor.served)
    want = _pool(k, controls.diversity)
    for n in _candidates(want, f, len(rec.artifact.item_ids)):
        r = rec.recommend(user_id, n, liked=history.liked, exclude=history.rated | history.hidden | f.exclude | shown,
                          drop=history.dropped, forget=history.forgotten)
        items = _listed(reads, r.items, want, f, history.seen | shown)
        if len(items) == want:
            break
    items = _diversified(rec, items, k, controls.diversity, cursor.served)
    _with_reasons(reads, rec, items, r.basis, history)
    items = new_items.explore(reads, rec, r, items, k, history.added, history.seen | shown, f, reads.exploration)
    out: dict[str, Any] = {"user_id": user_id, "k": k, "model_version": r.model_version, "strategy": r.strategy}
    if exp is not None:
        out.update(arm=arm, experiment_id=exp.experiment_id)
    return _page(out, items, k, controls, cursor)


def movie(reads: Reads, movie_id: int) -> dict[str, Any]:
    """One catalogue row; 404 when unknown."""
    m = reads.catalog.get(movie_id)
    if m is None:
        raise not_found(f"movie {movie_id} does not exist")
    return m.to_json()


def similar(reads: Reads, movie_id: int, k: int, controls: Controls = Controls(),
            user_id: int | None = None) -> dict[str, Any]:
    """A page of the movies closest to ``movie_id`` in the model's item space (empty if the model
    never saw it), only those passing the filters, never a repeat across pages; given a
    ``user_id``, never a movie that user marked not_interested."""
    seed = reads.catalog.get(movie_id)
    if seed is None:
        raise not_found(f"movie {movie_id} does not exist")
    rec = reads.model()
    hidden, added = reads.state_query(lambda db: user_hidden(db, user_id))
    f = controls.filters
    cursor = paging.resume(controls.cursor, paging.listing("similar", movie_id, f, controls.diversity),
                           rec.model_version)
    shown = set(cursor.served)
    want = _pool(k, controls.diversity)
    items: list[dict[str, Any]] = []
    if rec.has_item(movie_id):
        for n in _candidates(want, f, len(rec.artifact.item_ids)):
            items = _listed(reads, rec.similar(movie_id, n, exclude=f.exclude | shown | hidden), want, f,
                            {movie_id} | shown | hidden)
            if len(items) == want:
                break
    if controls.diversity <= 0:  # added movies join on merit (their content vector; not re-ranked by MMR)
        items = new_items.similar(reads, rec, seed, items, want, added, {movie_id} | shown | hidden, f)
    items = _diversified(rec, items, k, controls.diversity, cursor.served)
    for item in items:
        item["reasons"] = [{"kind": "similar", "movie_id": movie_id, "title": seed.title, "share": 1.0}]
    return _page({"movie_id": movie_id, "model_version": rec.model_version}, items, k, controls, cursor)


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
