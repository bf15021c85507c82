"""Training: interactions -> rectools iALS (known users) + PopularModel (cold users) -> artifact.

Interactions are MovieLens ratings plus likes from ClickHouse. Weighting (docs/MODEL.md):
``rating`` (default, chosen by the search) keeps every rating as a positive of weight r/4,
``binary`` counts every rating as weight 1, ``positive`` keeps only ratings >= 4. A like is a
positive of weight ``like_weight`` (1.0 = a 4-star rating); a (user, movie) pair seen twice
keeps the larger weight.
iALS confidence is ``alpha * weight`` (implicit's convention), which the serving fold-in reuses.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from movierecs_serving.artifact import write_artifact
from movierecs_serving.manifest import TrainingData
from movierecs_training.params import Params, Weighting

COLUMNS = ["user_id", "movie_id", "weight", "ts", "source"]


def ratings_to_interactions(ratings: pd.DataFrame, weighting: Weighting | str = Weighting.BINARY) -> pd.DataFrame:
    """MovieLens ratings (user_id, movie_id, rating, ts) -> interaction rows with weights."""
    r = ratings
    if weighting == Weighting.POSITIVE:
        r = r[r["rating"] >= 4]
        w = np.ones(len(r), np.float32)
    elif weighting == Weighting.RATING:
        w = (r["rating"].to_numpy(np.float32) / 4.0).astype(np.float32)
    elif weighting == Weighting.BINARY:
        w = np.ones(len(r), np.float32)
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    return pd.DataFrame(
        {"user_id": r["user_id"].to_numpy(np.int64), "movie_id": r["movie_id"].to_numpy(np.int64), "weight": w,
         "ts": _utc(r["ts"]), "source": "rating"}
    )


def likes_to_interactions(likes: pd.DataFrame, like_weight: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_id": likes["user_id"].to_numpy(np.int64), "movie_id": likes["movie_id"].to_numpy(np.int64),
         "weight": np.full(len(likes), like_weight, np.float32), "ts": _utc(likes["ts"]), "source": "like"}
    )


def _utc(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s, utc=True)
    return s.dt.tz_convert("UTC").astype("datetime64[ms, UTC]").reset_index(drop=True)


def combine(*frames: pd.DataFrame) -> pd.DataFrame:
    """Concatenate interaction frames and keep one row per (user, movie): max weight, latest ts."""
    df = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else pd.DataFrame(columns=COLUMNS)
    if df.empty:
        return df
    df = df.sort_values(["user_id", "movie_id", "weight", "ts"])
    g = df.groupby(["user_id", "movie_id"], sort=False)
    out = g.agg(weight=("weight", "max"), ts=("ts", "max"), source=("source", "last")).reset_index()
    out["weight"] = out["weight"].astype(np.float32)
    return out[COLUMNS]


def read_interactions(path: str | os.PathLike[str]) -> pd.DataFrame:
    """An interactions Parquet file; ``source`` is read as a category (20M Python strings
    would cost more memory than everything else together)."""
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    missing = set(COLUMNS[:4]) - set(names)
    if missing:
        raise ValueError(f"{path}: interactions Parquet lacks columns {sorted(missing)}")
    cols = [c for c in COLUMNS if c in names]
    df = pq.read_table(path, columns=cols, read_dictionary=["source"] if "source" in names else None).to_pandas()
    if "source" not in df:
        df["source"] = pd.Categorical.from_codes(np.zeros(len(df), np.int8), ["rating"])
    df["ts"] = _utc(df["ts"])
    return df[COLUMNS]


@dataclass
class Fitted:
    """The two rectools models and their Dataset (only training code holds these)."""

    dataset: Any
    als: Any
    popular: Any
    params: Params
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def make_dataset(interactions: pd.DataFrame):
    from rectools import Columns
    from rectools.dataset import Dataset

    df = pd.DataFrame({
        Columns.User: interactions["user_id"].to_numpy(), Columns.Item: interactions["movie_id"].to_numpy(),
        Columns.Weight: interactions["weight"].to_numpy(np.float32), Columns.Datetime: interactions["ts"].dt.tz_localize(None).to_numpy(),
    }, copy=False)
    return Dataset.construct(df)


def fit(interactions: pd.DataFrame, params: Params | dict | None = None) -> Fitted:
    """Fit iALS and Popular on the interactions (rectools + implicit)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from rectools.models import ImplicitALSWrapperModel, PopularModel
    from threadpoolctl import threadpool_limits

    p = params if isinstance(params, Params) else Params.from_dict(params)
    if interactions.empty:
        raise ValueError("no interactions to train on")
    t0 = time.perf_counter()
    dataset = make_dataset(interactions)
    with threadpool_limits(1, "blas"):  # implicit's own threads do the work; BLAS threads only contend
        als = ImplicitALSWrapperModel(
            AlternatingLeastSquares(
                factors=p.factors, regularization=p.regularization, alpha=p.alpha, iterations=p.iterations,
                random_state=p.random_state, num_threads=p.num_threads,
            )
        )
        als.fit(dataset)
    popular = PopularModel().fit(dataset)
    return Fitted(dataset, als, popular, p, time.perf_counter() - t0)


def fitted_arrays(fitted: Fitted) -> dict[str, np.ndarray]:
    """The arrays a model artifact holds, read out of a fit: factors, id maps, popularity,
    and each user's training items (CSR, sorted). Shared by export and in-memory scoring."""
    ds = fitted.dataset
    uf, itf = fitted.als.get_vectors()
    ui = ds.get_user_item_matrix(include_weights=True).tocsr()
    ui.sort_indices()
    pop_items, pop_scores = fitted.popular.popularity_list
    return {
        "user_factors": uf, "item_factors": itf,
        "user_ids": ds.user_id_map.external_ids.astype(np.int64),
        "item_ids": ds.item_id_map.external_ids.astype(np.int64),
        "popular": np.asarray(pop_items, np.int64), "popular_scores": np.asarray(pop_scores, np.float64),
        "seen_indptr": ui.indptr, "seen_indices": ui.indices, "seen_data": ui.data,
    }


def write_model(fitted: Fitted, interactions: pd.DataFrame, out_dir: str | os.PathLike[str], *,
                metrics: dict | None = None, report: dict | None = None, version: str | None = None) -> Path:
    """Export the fitted models as a numpy artifact folder ``out_dir/<version>``."""
    return write_artifact(
        out_dir,
        **fitted_arrays(fitted),
        hyperparameters=fitted.params.to_dict() | {"popularity": "n_users", "model": "rectools ImplicitALSWrapperModel(implicit AlternatingLeastSquares) + PopularModel"},
        data=describe(interactions) | {"train_seconds": round(fitted.seconds, 3)},
        # Serving reads a user's ratings from ClickHouse only when the model does not hold them
        # all as training items ("positive" drops ratings below 4).
        training=TrainingData(seen_has_all_ratings=fitted.params.weighting != Weighting.POSITIVE),
        metrics=metrics, report=report, version=version,
    )


def describe(interactions: pd.DataFrame) -> dict[str, Any]:
    ts = interactions["ts"]
    src = interactions["source"].value_counts().to_dict() if "source" in interactions else {}
    return {
        "rows": int(len(interactions)),
        "users": int(interactions["user_id"].nunique()),
        "items": int(interactions["movie_id"].nunique()),
        "min_ts": ts.min().isoformat() if len(ts) else None,
        "max_ts": ts.max().isoformat() if len(ts) else None,
        "ratings": int(src.get("rating", 0)),
        "likes": int(src.get("like", 0)),
    }
