"""Training: weighting, combining ratings with likes, the artifact and its report."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from movierecs_serving import ModelArtifact
from movierecs_training import data, evaluate, recipe, train


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "movie_id", "rating", "ts"]).assign(ts=lambda d: pd.to_datetime(d["ts"], unit="s", utc=True))


def test_weightings():
    r = frame([(1, 10, 5, 1), (1, 11, 2, 2), (2, 10, 4, 3)])
    assert train.ratings_to_interactions(r, "binary")["weight"].tolist() == [1, 1, 1]
    assert train.ratings_to_interactions(r, "positive")["movie_id"].tolist() == [10, 10]
    assert train.ratings_to_interactions(r, "rating")["weight"].tolist() == [1.25, 0.5, 1.0]
    with pytest.raises(ValueError):
        train.Params.from_dict({"weighting": "stars"})
    with pytest.raises(ValueError, match="unknown hyperparameters"):
        train.Params.from_dict({"factor": 3})


def test_a_like_and_a_rating_of_the_same_movie_become_one_row_with_the_larger_weight():
    ri = train.ratings_to_interactions(frame([(1, 10, 2, 100), (1, 11, 4, 100)]), "rating")
    li = train.likes_to_interactions(pd.DataFrame({"user_id": [1, 7], "movie_id": [10, 10], "ts": pd.to_datetime([200, 300], unit="s", utc=True)}))
    c = train.combine(ri, li).sort_values(["user_id", "movie_id"])
    assert c[["user_id", "movie_id"]].values.tolist() == [[1, 10], [1, 11], [7, 10]]
    assert c["weight"].tolist() == [1.0, 1.0, 1.0]
    assert c["ts"].iloc[0] == pd.Timestamp(200, unit="s", tz="UTC")


def test_train_artifact_on_ml100k_has_manifest_metrics_and_report(tmp_path):
    ml = data.load_dataset("ml-100k")
    df = train.ratings_to_interactions(ml.ratings)
    folder = recipe.train_artifact(df, tmp_path, {"factors": 16, "iterations": 8})
    art = ModelArtifact.load(folder)
    m = art.manifest
    assert m["hyperparameters"]["factors"] == 16 and m["hyperparameters"]["alpha"] == 4.0
    assert m["data"]["rows"] == 100_000 and m["data"]["min_ts"].startswith("1997-09-20")
    assert m["n_users"] == 943 and art.user_factors.shape == (943, 16)
    ts = art.report["time_split"]
    for part in ("ials_warm", "popular_warm", "hybrid_all"):
        assert {"map@10", "recall@10", "ndcg@10", "hitrate@10", "coverage@10", "novelty@10"} <= set(ts[part])
    assert m["metrics"]["map@10_warm_ials"] == ts["ials_warm"]["map@10"]
    # seen.npz holds every user's training items
    assert art.seen_indptr[-1] == 100_000


def test_leave_last_one_out_holds_out_each_users_latest():
    df = train.ratings_to_interactions(frame([(1, 10, 5, 1), (1, 11, 5, 2), (1, 12, 5, 3), (2, 10, 5, 1)]))
    tr, te = evaluate.loo_split(df)
    assert te[["user_id", "movie_id"]].values.tolist() == [[1, 12]]
    assert len(tr) == 3


def test_ials_beats_popular_on_warm_users_ml100k():
    df = train.ratings_to_interactions(data.load_dataset("ml-100k").ratings)
    res = evaluate.evaluate_loo(df, train.Params(factors=32, iterations=10, regularization=10))
    assert res["ials"]["hitrate@10"] > res["popular"]["hitrate@10"]
