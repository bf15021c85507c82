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
class Recommendation:
    user_id: int
    strategy: Strategy
    items: list[tuple[int, float]] = field(default_factory=list)
    model_version: str = ""


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
    ) -> Recommendation:
        """Top-k for ``user_id``; ``liked`` = the user's likes (all of them, or those newer than the model)."""
        k = _check_k(k)
        a = self.artifact
        liked_rows = list(dict.fromkeys(self._rows(liked)))
        excl_rows = self._rows(exclude)
        row = self._user_row.get(int(user_id))
        if row is not None:
            lo, hi = a.seen_indptr[row], a.seen_indptr[row + 1]
            seen_rows = a.seen_indices[lo:hi]
            vec = a.user_factors[row]
            if liked_rows:
                fresh = np.asarray(liked_rows, dtype=np.int32)
                fresh = fresh[~np.isin(fresh, seen_rows)]
                if len(fresh):
                    rows = np.concatenate([seen_rows, fresh])
                    weights = np.concatenate([a.seen_data[lo:hi], np.full(len(fresh), self.like_weight, np.float32)])
                    vec = self.fold_in_vector(rows, weights)
            banned = np.concatenate([seen_rows, np.asarray(liked_rows + excl_rows, dtype=np.int32)])
            return Recommendation(int(user_id), Strategy.PERSONAL, self._top_k(vec, k, banned), self.model_version)
        banned = np.asarray(liked_rows + excl_rows, dtype=np.int64)
        if liked_rows:
            rows = np.asarray(liked_rows, dtype=np.int32)
            vec = self.fold_in_vector(rows, np.full(len(rows), self.like_weight, np.float32))
            return Recommendation(int(user_id), Strategy.FOLD_IN, self._top_k(vec, k, banned), self.model_version)
        return Recommendation(int(user_id), Strategy.POPULAR, self.popular(k, set(banned.tolist())), self.model_version)

    def fold_in_vector(self, item_rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Solve one user's iALS factors from (item row, weight) pairs, as implicit's recalculate_user."""
        Yi = self._Y64[np.asarray(item_rows, dtype=np.int64)]
        c = self.alpha * np.asarray(weights, dtype=np.float64)
        A = self._YtY + self.regularization * self._eye + (Yi.T * (c - 1.0)) @ Yi
        b = c @ Yi
        return np.linalg.solve(A, b).astype(np.float32)

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

    def similar(self, movie_id: int, k: int = 10) -> list[tuple[int, float]]:
        """Movies whose item factors are closest by cosine, the movie itself left out."""
        k = _check_k(k)
        row = self._item_row.get(int(movie_id))
        if row is None:
            raise UnknownItemError(f"movie {movie_id} is not in model {self.model_version}")
        scores = self._Yn @ self._Yn[row]
        return self._top_k(scores, k, {row}, precomputed=True)

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
