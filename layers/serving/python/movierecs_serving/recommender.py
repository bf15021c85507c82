"""Top-k recommendations, fold-in and similar movies from a ModelArtifact, numpy only.

Strategies (the public contract):
  personal  the user is in the model; likes newer than the model are folded into their vector
  fold_in   the user is not in the model but liked movies the model knows: their vector is
            solved from those likes (one iALS least-squares step against the item factors)
  popular   no signal for this user: the training popularity list

Fold-in is implicit's ``recalculate_user``: with confidence ``c = alpha * weight``,
``x = (YtY + reg*I + sum_i (c_i - 1) y_i y_i^T)^-1 sum_i c_i y_i``, solved exactly, with the
model's own ``regularization`` and ``alpha`` from the manifest.
Every answer excludes what the user rated in training, everything passed in ``liked`` and
``exclude``, and never repeats an item.

Two controls work on an answer's items afterwards (issue 11):
  explain    an item's score split into one exact term per history item (Hu, Koren and
             Volinsky 2008, section 5): with ``A = YtY + reg*I + sum_j (c_j - 1) y_j y_j^T``
             the user vector is ``A^-1 sum_j c_j y_j``, so ``score_i = sum_j c_j y_i^T A^-1 y_j``
  diversify  maximal marginal relevance over the unit item factors: trades score for spread
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Iterable

import numpy as np

from movierecs_serving.artifact import ModelArtifact



class Strategy(StrEnum):
    """How an answer was made (the contract's ``strategy``; a str, so JSON shows the value)."""

    PERSONAL = "personal"
    FOLD_IN = "fold_in"
    POPULAR = "popular"


class UnknownItemError(LookupError):
    """The movie id is not in the model (never rated in the training data)."""


@dataclass(frozen=True)
class Basis:
    """A user's history as the model weighs it: item rows and their training weights.

    The user vector ``explain`` decomposes is the one solved from exactly these rows (for a
    model user without new likes that is what the last ALS sweep solved, up to the sweep's
    item update: measured by bench/controls.py)."""

    rows: np.ndarray  # item rows, int
    weights: np.ndarray  # float, aligned with rows


@dataclass(frozen=True)
class Explanation:
    """One item's score under the history-solved vector and its terms, largest first."""

    movie_id: int
    score: float
    terms: list[tuple[int, float]]  # (history movie id, term); the terms add up to ``score``


@dataclass(frozen=True)
class Recommendation:
    user_id: int
    strategy: Strategy
    items: list[tuple[int, float]] = field(default_factory=list)
    model_version: str = ""
    #: What the user vector was solved from; None for the popular strategy.
    basis: Basis | None = None
    #: The user vector the items were scored with; None for the popular strategy.
    vector: np.ndarray | None = None


def _check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


class Recommender:
    """Answers for one loaded artifact; cheap to call (a dot product and a partial sort)."""

    def __init__(self, artifact: ModelArtifact) -> None:
        self.artifact = artifact
        hp = artifact.hyperparameters
        self.alpha = float(hp.get("alpha", 1.0))
        self.regularization = float(hp.get("regularization", 0.01))
        self.like_weight = float(hp.get("like_weight", 1.0))
        self.model_version = artifact.version
        self._Y = artifact.item_factors  # float32 (n_items, f)
        self._Y64 = self._Y.astype(np.float64)
        self._YtY = self._Y64.T @ self._Y64
        self._eye = np.eye(self._Y.shape[1])
        self._user_row = {int(u): i for i, u in enumerate(artifact.user_ids.tolist())}
        self._item_row = {int(m): j for j, m in enumerate(artifact.item_ids.tolist())}
        self._item_ids = artifact.item_ids
        norms = np.linalg.norm(self._Y64, axis=1)
        norms[norms == 0] = 1.0
        self._Yn = (self._Y64 / norms[:, None]).astype(np.float32)

    # -- lookups -----------------------------------------------------------------------
    @property
    def knows_all_ratings(self) -> bool:
        """True when every rating of the training data is among its users' training items, so
        the rated movies of a known user need not be read again (the manifest says so)."""
        return self.artifact.manifest.training.seen_has_all_ratings

    def has_user(self, user_id: int) -> bool:
        return int(user_id) in self._user_row

    def has_item(self, movie_id: int) -> bool:
        return int(movie_id) in self._item_row

    def seen_items(self, user_id: int) -> list[int]:
        """Movie ids the user had in the training data (empty for users not in the model)."""
        row = self._user_row.get(int(user_id))
        if row is None:
            return []
        a = self.artifact
        return self._item_ids[a.seen_indices[a.seen_indptr[row] : a.seen_indptr[row + 1]]].tolist()

    def _rows(self, movie_ids: Iterable[int]) -> list[int]:
        get = self._item_row.get
        return [r for r in (get(int(m)) for m in movie_ids) if r is not None]

    # -- the answers -------------------------------------------------------------------
    def recommend(
        self,
        user_id: int,
        k: int = 10,
        liked: Iterable[int] = (),
        exclude: Iterable[int] = (),
        drop: Iterable[int] = (),
        forget: bool = False,
    ) -> Recommendation:
        """Top-k for ``user_id``; ``liked`` = the user's likes (all of them, or those newer than the model).

        ``drop``: movies taken out of the user's signal since (unliked, not interested): left
        out of the solve with zero confidence, so a model user's vector is solved again without
        them. ``forget``: the user was deleted; the model's vector of them is not used."""
        k = _check_k(k)
        a = self.artifact
        liked_rows = list(dict.fromkeys(self._rows(liked)))
        excl_rows = self._rows(exclude)
        row = None if forget else self._user_row.get(int(user_id))
        if row is not None:
            lo, hi = a.seen_indptr[row], a.seen_indptr[row + 1]
            seen_rows = a.seen_indices[lo:hi]
            vec = a.user_factors[row]
            basis = Basis(seen_rows, a.seen_data[lo:hi])
            drop_rows = self._rows(drop)
            if drop_rows and np.isin(seen_rows, drop_rows).any():
                keep = ~np.isin(seen_rows, drop_rows)
                basis = Basis(seen_rows[keep], basis.weights[keep])
                vec = self.fold_in_vector(basis.rows, basis.weights)
            if liked_rows:
                fresh = np.asarray(liked_rows, dtype=np.int32)
                fresh = fresh[~np.isin(fresh, seen_rows)]
                if len(fresh):
                    basis = Basis(np.concatenate([basis.rows, fresh]),
                                  np.concatenate([basis.weights, np.full(len(fresh), self.like_weight, np.float32)]))
                    vec = self.fold_in_vector(basis.rows, basis.weights)
            banned = np.concatenate([seen_rows, np.asarray(liked_rows + excl_rows, dtype=np.int32)])
            return Recommendation(int(user_id), Strategy.PERSONAL, self._top_k(vec, k, banned), self.model_version, basis,
                                  vec)
        banned = np.asarray(liked_rows + excl_rows, dtype=np.int64)
        if liked_rows:
            rows = np.asarray(liked_rows, dtype=np.int32)
            basis = Basis(rows, np.full(len(rows), self.like_weight, np.float32))
            vec = self.fold_in_vector(basis.rows, basis.weights)
            return Recommendation(int(user_id), Strategy.FOLD_IN, self._top_k(vec, k, banned), self.model_version, basis,
                                  vec)
        return Recommendation(int(user_id), Strategy.POPULAR, self.popular(k, set(banned.tolist())), self.model_version)

    def _system(self, item_rows: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(A, Yi, c)`` of one user's least-squares step: the user vector is ``A^-1 (c @ Yi)``."""
        Yi = self._Y64[np.asarray(item_rows, dtype=np.int64)]
        c = self.alpha * np.asarray(weights, dtype=np.float64)
        A = self._YtY + self.regularization * self._eye + (Yi.T * (c - 1.0)) @ Yi
        return A, Yi, c

    def fold_in_vector(self, item_rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Solve one user's iALS factors from (item row, weight) pairs, as implicit's recalculate_user."""
        A, Yi, c = self._system(item_rows, weights)
        return np.linalg.solve(A, c @ Yi).astype(np.float32)

    def explain(self, basis: Basis, movie_ids: list[int], top: int | None = None) -> list[Explanation]:
        """Each movie's score split into one term per history item: ``c_j y_i^T A^-1 y_j``.

        One solve for all movies (``A^-1 Y_items^T``), then one product with the history; the
        terms of a movie add up to its score under the vector solved from ``basis``. ``top``
        keeps only the largest terms (the score is still their full sum)."""
        rows = [self._item_row.get(int(m)) for m in movie_ids]
        known = [i for i, r in enumerate(rows) if r is not None]
        out = [Explanation(int(m), 0.0, []) for m in movie_ids]
        if not known or not len(basis.rows):
            return out
        A, Yh, c = self._system(basis.rows, basis.weights)
        W = np.linalg.solve(A, self._Y64[[rows[i] for i in known]].T)  # (f, n)
        terms = (Yh @ W) * c[:, None]  # (history, n)
        scores = terms.sum(axis=0)
        hist_ids = self._item_ids[np.asarray(basis.rows, dtype=np.int64)]
        n = len(basis.rows) if top is None else min(top, len(basis.rows))
        for col, i in enumerate(known):
            t = terms[:, col]
            best = np.argpartition(-t, n - 1)[:n] if n < len(t) else np.arange(len(t))
            best = best[np.argsort(-t[best], kind="stable")]
            out[i] = Explanation(int(movie_ids[i]), float(scores[col]),
                                 list(zip(hist_ids[best].tolist(), t[best].tolist())))
        return out

    def diversify(self, items: list[tuple[int, float]], k: int, diversity: float,
                  context: Iterable[int] = ()) -> list[tuple[int, float]]:
        """``k`` of ``items`` (ranked (movie id, score) pairs) by maximal marginal relevance.

        Each pick maximises ``(1 - d) * relevance - d * max cosine to what is already picked``,
        relevance being the score scaled to [0, 1] over ``items``; ``context`` (movies an earlier
        page showed) counts as picked, so a next page keeps spreading. ``d = 0`` is the ranking."""
        k = _check_k(k)
        if diversity <= 0 or len(items) <= 1:
            return items[:k]
        rows = [self._item_row.get(int(m)) for m, _ in items]
        if any(r is None for r in rows):
            raise UnknownItemError("diversify needs items of the model")
        V = self._Yn[np.asarray(rows, dtype=np.int64)].astype(np.float64)
        s = np.asarray([sc for _, sc in items], dtype=np.float64)
        span = s.max() - s.min()
        rel = (s - s.min()) / span if span > 0 else np.ones_like(s)
        ctx = self._rows(context)
        # the highest similarity of each candidate to anything picked so far (or shown before)
        near = (V @ self._Yn[ctx].astype(np.float64).T).max(axis=1) if ctx else np.full(len(items), -np.inf)
        free = np.ones(len(items), dtype=bool)
        picked: list[int] = []
        while len(picked) < min(k, len(items)):
            gain = (1 - diversity) * rel - diversity * np.where(np.isfinite(near), near, -1.0)
            gain[~free] = -np.inf
            i = int(np.argmax(gain))  # ties go to the better-ranked item
            picked.append(i)
            free[i] = False
            near = np.maximum(near, V @ V[i])
        return [items[i] for i in picked]

    def popular(self, k: int, banned: set[int] | None = None) -> list[tuple[int, float]]:
        """The popularity list minus ``banned`` item rows."""
        k = _check_k(k)
        a = self.artifact
        banned = banned or set()
        out: list[tuple[int, float]] = []
        for r, s in zip(a.popular.tolist(), a.popular_scores.tolist()):
            if r in banned:
                continue
            out.append((int(self._item_ids[r]), float(s)))
            if len(out) == k:
                break
        return out

    def similar(self, movie_id: int, k: int = 10, exclude: Iterable[int] = ()) -> list[tuple[int, float]]:
        """Movies whose item factors are closest by cosine, the movie itself and ``exclude`` left out."""
        k = _check_k(k)
        row = self._item_row.get(int(movie_id))
        if row is None:
            raise UnknownItemError(f"movie {movie_id} is not in model {self.model_version}")
        scores = self._Yn @ self._Yn[row]
        return self._top_k(scores, k, {row, *self._rows(exclude)}, precomputed=True)

    def scores(self, vec: np.ndarray) -> np.ndarray:
        return self._Y @ vec

    def _top_k(self, vec: np.ndarray, k: int, banned, precomputed: bool = False) -> list[tuple[int, float]]:
        """Best ``k`` item rows by score, ``banned`` rows (array or set) left out."""
        s = (vec if precomputed else self._Y @ vec).astype(np.float32, copy=True)
        if isinstance(banned, set):
            banned = np.fromiter(banned, dtype=np.int64, count=len(banned))
        if len(banned):
            s[banned] = -np.inf
        n = len(s)
        kk = min(k, n)
        top = np.argpartition(-s, kk - 1)[:kk] if kk < n else np.arange(n)
        top = top[np.argsort(-s[top], kind="stable")]
        top = top[np.isfinite(s[top])]
        return [(int(m), float(v)) for m, v in zip(self._item_ids[top].tolist(), s[top].tolist())]
