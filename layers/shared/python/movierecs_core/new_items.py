"""Movies added through POST /admin/movies before any model knows them (issue 12, part 3).

Such a movie has no item factors until a training takes its interactions in. Until then it
gets a vector from its content: the mean of the mean item vector of each of its genres
(computed once per model version and environment from the model's items and their
catalogue genres). With that vector it
- joins GET /movies/{id}/similar on merit (cosine against the unit item vectors, merged into
  the model's ranking), and has a similar list of its own;
- is offered in GET /recommendations to a user whose taste matches it: at most a share of the
  page's slots (``EXPLORATION_SHARE``, default 0.1, 0 disables), taken by the best-scored
  added movies whose score beats the user's score of the average movie (``vector . mean(Y)``),
  i.e. whose genres appeal to the user more than the catalogue as a whole does.

Everything here works on what the read side already has (the model, the catalogue, the
user's state); the request path makes no extra round trip for it.
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from .filters import Filters

_lock = threading.Lock()
_cache: dict[str, Any] = {"version": None}


def _space(reads: Any, rec: Any) -> dict[str, Any]:
    """Genre mean vectors, unit item vectors and the mean item vector of ``rec``'s model (cached)."""
    with _lock:
        if _cache["version"] == rec.model_version:
            return _cache
    ids = [int(m) for m in rec.artifact.item_ids.tolist()]
    Y = np.asarray(rec.artifact.item_factors, dtype=np.float64)
    movies = reads.catalog.get_many(ids)
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for row, movie_id in enumerate(ids):
        m = movies.get(movie_id)
        for g in (m.genres if m else ()):
            sums[g] = sums.get(g, 0.0) + Y[row]
            counts[g] = counts.get(g, 0) + 1
    norms = np.linalg.norm(Y, axis=1)
    norms[norms == 0] = 1.0
    space = {"version": rec.model_version, "genre": {g: sums[g] / counts[g] for g in sums},
             "unit": Y / norms[:, None], "mean": Y.mean(axis=0), "ids": np.asarray(ids)}
    with _lock:
        _cache.clear()
        _cache.update(space)
    return space


def content_vector(space: dict[str, Any], genres: tuple[str, ...]) -> np.ndarray | None:
    """The mean of the genre mean vectors of ``genres``; None when none of them is known."""
    vs = [space["genre"][g] for g in genres if g in space["genre"]]
    return np.mean(vs, axis=0) if vs else None


def _cold(reads: Any, rec: Any, added: list[int], skip: set[int], filters: Filters) -> dict[int, tuple[Any, np.ndarray]]:
    """The added movies the model does not know, not in ``skip``, passing ``filters``: (movie, vector)."""
    ids = [m for m in added if m not in skip and not rec.has_item(m)]
    if not ids:
        return {}
    space = _space(reads, rec)
    out = {}
    for movie_id, movie in reads.catalog.get_many(ids).items():
        v = content_vector(space, movie.genres)
        if v is not None and filters.matches(movie):
            out[movie_id] = (movie, v)
    return out


def explore(reads: Any, rec: Any, r: Any, items: list[dict[str, Any]], k: int, added: list[int], skip: set[int],
            filters: Filters, share: float) -> list[dict[str, Any]]:
    """``items`` (a page of ``k``) with up to ``round(k * share)`` (at least 1 when share > 0)
    of its last slots given to matching added movies, best score first (a short page gets
    them added instead); unchanged when there is no user vector (popular), no share, or no
    match."""
    if share <= 0 or getattr(r, "vector", None) is None or not added:
        return items
    cold = _cold(reads, rec, added, skip | {i["movie_id"] for i in items}, filters)
    if not cold:
        return items
    vec = np.asarray(r.vector, dtype=np.float64)
    bar = float(vec @ _space(reads, rec)["mean"])
    scored = sorted(((float(vec @ v), m) for m, (_, v) in cold.items()), key=lambda x: (-x[0], x[1]))
    picked = [(s, m) for s, m in scored if s > bar][:max(1, round(k * share))]
    if not picked:
        return items
    keep = items if len(items) + len(picked) <= k else items[:max(0, k - len(picked))]
    new = [{**cold[m][0].to_json(), "score": round(s, 6), "reasons": [{"kind": "new", "share": 1.0}]}
           for s, m in picked]
    return keep + new


def similar(reads: Any, rec: Any, seed: Any, items: list[dict[str, Any]], want: int, added: list[int],
            skip: set[int], filters: Filters) -> list[dict[str, Any]]:
    """The similar list of ``seed`` with the added movies merged in by cosine; for a seed the
    model does not know (an added movie), its whole list from its content vector."""
    space = _space(reads, rec)
    if rec.has_item(seed.movie_id):
        row = int(np.flatnonzero(space["ids"] == seed.movie_id)[0])
        anchor = space["unit"][row]
    else:
        v = content_vector(space, seed.genres)
        if v is None:
            return items
        anchor = v / (np.linalg.norm(v) or 1.0)
        scores = space["unit"] @ anchor
        order = np.argsort(-scores, kind="stable")
        ranked = [(int(space["ids"][j]), float(scores[j])) for j in order[: want + len(skip) + 50]]
        movies = reads.catalog.get_many(m for m, _ in ranked if m not in skip)
        items = [{**movies[m].to_json(), "score": round(s, 6)} for m, s in ranked
                 if m in movies and m not in skip and filters.matches(movies[m])][:want]
    cold = _cold(reads, rec, added, skip | {seed.movie_id} | {i["movie_id"] for i in items}, filters)
    if not cold:
        return items
    extra = [{**movie.to_json(), "score": round(float(anchor @ (v / (np.linalg.norm(v) or 1.0))), 6)}
             for movie, v in cold.values()]
    return sorted(items + extra, key=lambda i: -i["score"])[:want]
