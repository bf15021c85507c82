"""Offline evaluation with rectools metrics: global time split and leave-last-one-out.

Relevant items = every interaction of a user in the test part (any rating or like): the
task is "which movies will this user pick next". Metrics at k=10 (rectools definitions):
MAP@10, Recall@10, NDCG@10 with ``divide_by_achievable=True`` (ideal DCG of
min(k, #relevant) items, comparable with papers), HitRate@10, CatalogCoverage@10
(normalised share of the training catalogue recommended to anyone) and MeanInvUserFreq@10
(novelty: mean -log2 share of training users who interacted with a recommended item).
Users: warm = in the training part (iALS), cold = not (Popular); hybrid = both together.
Recommendations are produced from the exported arrays with numpy (same top-k as rectools,
tests/unit/test_serving_parity.py), so an artifact and a fresh fit are scored the same way.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from movierecs_serving.artifact import ModelArtifact
from movierecs_serving.manifest import Manifest
from movierecs_training.train import Fitted, Params, fit, fitted_arrays

K = 10


def metric_set(k: int = K) -> dict[str, Any]:
    from rectools.metrics import MAP, NDCG, CatalogCoverage, HitRate, MeanInvUserFreq, Recall

    return {
        f"map@{k}": MAP(k),
        f"recall@{k}": Recall(k),
        f"ndcg@{k}": NDCG(k, divide_by_achievable=True),
        f"hitrate@{k}": HitRate(k),
        f"coverage@{k}": CatalogCoverage(k, normalize=True),
        f"novelty@{k}": MeanInvUserFreq(k),
    }


def artifact_from_fitted(fitted: Fitted) -> ModelArtifact:
    """An in-memory ModelArtifact of a fresh fit (no files), for scoring with numpy."""
    from pathlib import Path

    a = fitted_arrays(fitted)
    return ModelArtifact(
        path=Path("<memory>"),
        manifest=Manifest(version="in-memory", hyperparameters=fitted.params.to_dict()),
        user_factors=np.ascontiguousarray(a["user_factors"], np.float32),
        item_factors=np.ascontiguousarray(a["item_factors"], np.float32),
        user_ids=a["user_ids"], item_ids=a["item_ids"], popular=a["popular"], popular_scores=a["popular_scores"],
        seen_indptr=a["seen_indptr"].astype(np.int64), seen_indices=a["seen_indices"].astype(np.int32),
        seen_data=a["seen_data"].astype(np.float32),
    )


def _seen_mask_rows(art: ModelArtifact, rows: np.ndarray):
    lo, hi = art.seen_indptr[rows], art.seen_indptr[rows + 1]
    counts = hi - lo
    r = np.repeat(np.arange(len(rows)), counts)
    idx = np.concatenate([art.seen_indices[a:b] for a, b in zip(lo, hi)]) if len(rows) else np.empty(0, np.int64)
    return r, idx


def topk_ials(art: ModelArtifact, users: np.ndarray, k: int = K, batch: int = 2048) -> pd.DataFrame:
    """Top-k by user_factors . item_factors for users in the model, training items excluded."""
    index = pd.Index(art.user_ids)
    rows_all = index.get_indexer(users)
    users = np.asarray(users)[rows_all >= 0]
    rows_all = rows_all[rows_all >= 0]
    out_u, out_i, out_r = [], [], []
    for s in range(0, len(rows_all), batch):
        rows = rows_all[s : s + batch]
        scores = art.user_factors[rows] @ art.item_factors.T
        r, idx = _seen_mask_rows(art, rows)
        scores[r, idx] = -np.inf
        kk = min(k, scores.shape[1])
        top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
        top = np.take_along_axis(top, order, 1)
        ok = np.isfinite(np.take_along_axis(scores, top, 1))
        uu = np.repeat(users[s : s + batch], kk).reshape(-1, kk)
        rank = np.tile(np.arange(1, kk + 1), (len(rows), 1))
        out_u.append(uu[ok]); out_i.append(art.item_ids[top][ok]); out_r.append(rank[ok])
    return _reco(out_u, out_i, out_r)


def topk_popular(art: ModelArtifact, users: np.ndarray, k: int = K) -> pd.DataFrame:
    """Popularity list minus each user's training items (nothing to exclude for cold users)."""
    index = pd.Index(art.user_ids)
    rows = index.get_indexer(users)
    pop_ids = art.item_ids[art.popular]
    out_u, out_i, out_r = [], [], []
    for u, row in zip(np.asarray(users), rows):
        if row >= 0:
            seen = set(art.item_ids[art.seen_indices[art.seen_indptr[row] : art.seen_indptr[row + 1]]].tolist())
            items = [m for m in pop_ids[: k + len(seen)].tolist() if m not in seen][:k]
        else:
            items = pop_ids[:k].tolist()
        out_u.append(np.full(len(items), u)); out_i.append(np.asarray(items, np.int64)); out_r.append(np.arange(1, len(items) + 1))
    return _reco(out_u, out_i, out_r)


def _reco(us, its, rs) -> pd.DataFrame:
    from rectools import Columns

    if not us:
        return pd.DataFrame({Columns.User: [], Columns.Item: [], Columns.Rank: []})
    return pd.DataFrame({Columns.User: np.concatenate(us), Columns.Item: np.concatenate(its), Columns.Rank: np.concatenate(rs)})


def _rt(df: pd.DataFrame) -> pd.DataFrame:
    from rectools import Columns

    return pd.DataFrame({Columns.User: df["user_id"].to_numpy(), Columns.Item: df["movie_id"].to_numpy(), Columns.Weight: df["weight"].to_numpy(),
                         Columns.Datetime: df["ts"].dt.tz_localize(None).to_numpy()})


def score(reco: pd.DataFrame, test: pd.DataFrame, train: pd.DataFrame, k: int = K) -> dict[str, float]:
    """rectools metrics of ``reco`` for the users of ``test`` (users absent from reco count as misses)."""
    from rectools import Columns
    from rectools.metrics import calc_metrics

    if test.empty:
        return {}
    test_rt = _rt(test)
    reco = reco[reco[Columns.User].isin(test_rt[Columns.User].unique())]
    m = calc_metrics(metric_set(k), reco, interactions=test_rt, prev_interactions=_rt(train), catalog=train["movie_id"].unique())
    m = {name: round(float(v), 6) for name, v in m.items()}
    m["users"] = int(test["user_id"].nunique())
    return m


def time_split(df: pd.DataFrame, cutoff: str | pd.Timestamp | None = None, quantile: float = 0.9):
    """Everything before ``cutoff`` (default: the ``quantile`` of interaction times) trains."""
    ts = df["ts"]
    cut = pd.Timestamp(cutoff) if cutoff is not None else ts.quantile(quantile)
    cut = cut.tz_localize("UTC") if cut.tzinfo is None else cut.tz_convert("UTC")
    return df[ts < cut], df[ts >= cut], cut


def loo_split(df: pd.DataFrame):
    """Each user's last interaction is the test (users with at least 2 interactions).

    "Last" is the latest timestamp; ties (42 % of ML-1M users rated several movies in their
    last second) keep the order of the log, i.e. of ``df``'s rows (a stable sort)."""
    d = df.sort_values(["user_id", "ts"], kind="stable")
    last = ~d.duplicated("user_id", keep="last")
    n = d.groupby("user_id")["movie_id"].transform("size")
    test_mask = last & (n >= 2)
    return d[~test_mask], d[test_mask]


def evaluate_time_split(df: pd.DataFrame, params: Params, cutoff=None, quantile: float = 0.9, k: int = K,
                        truth: pd.DataFrame | None = None) -> dict[str, Any]:
    """Fit on ``df`` before the cutoff, score on the interactions after it. ``truth`` (default
    ``df``) supplies the cutoff quantile and the test part, so recipes that weight or drop
    training rows differently are still scored on the same users and the same relevant items."""
    truth = df if truth is None else truth
    _, test, cut = time_split(truth, cutoff, quantile)
    train, _, _ = time_split(df, cut)
    t0 = time.perf_counter()
    fitted = fit(train, params)
    art = artifact_from_fitted(fitted)
    train_users = set(art.user_ids.tolist())
    test_users = test["user_id"].unique()
    warm = np.array([u for u in test_users if u in train_users], np.int64)
    cold = np.array([u for u in test_users if u not in train_users], np.int64)
    test_w, test_c = test[test["user_id"].isin(warm)], test[test["user_id"].isin(cold)]
    reco_als_w, reco_pop_w = topk_ials(art, warm, k), topk_popular(art, warm, k)
    reco_pop_c = topk_popular(art, cold, k)
    return {
        "cutoff": cut.isoformat(), "train_rows": int(len(train)), "test_rows": int(len(test)),
        "warm_users": int(len(warm)), "cold_users": int(len(cold)), "fit_seconds": round(fitted.seconds, 3),
        "ials_warm": score(reco_als_w, test_w, train, k),
        "popular_warm": score(reco_pop_w, test_w, train, k),
        "popular_cold": score(reco_pop_c, test_c, train, k),
        "hybrid_all": score(pd.concat([reco_als_w, reco_pop_c]), test, train, k),
        "popular_all": score(pd.concat([reco_pop_w, reco_pop_c]), test, train, k),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def evaluate_loo(df: pd.DataFrame, params: Params, k: int = K) -> dict[str, Any]:
    """Leave-last-one-out: every user's latest interaction of ``df`` is the test item."""
    train, test = loo_split(df)
    fitted = fit(train, params)
    art = artifact_from_fitted(fitted)
    users = test["user_id"].unique()
    return {
        "train_rows": int(len(train)), "users": int(len(users)),
        "ials": score(topk_ials(art, users, k), test, train, k),
        "popular": score(topk_popular(art, users, k), test, train, k),
    }


def time_split_report(df: pd.DataFrame, params: Params, cutoff=None, quantile: float = 0.9, loo: bool = False,
                      truth: pd.DataFrame | None = None) -> dict[str, Any]:
    """The report stored as report.json with each model version."""
    ts = evaluate_time_split(df, params, cutoff, quantile, truth=truth)
    rep: dict[str, Any] = {
        "protocol": {
            "k": K, "relevant": "every test interaction (rating of any value, or like)",
            "ndcg": "rectools NDCG divide_by_achievable=True", "coverage": "CatalogCoverage normalize=True",
            "novelty": "MeanInvUserFreq", "time_split": f"train before {ts['cutoff']}, test after",
            "warm": "users with training interactions: iALS", "cold": "users without: Popular",
        },
        "hyperparameters": params.to_dict(),
        "time_split": ts,
    }
    if loo:
        rep["leave_last_one_out"] = evaluate_loo(df, params)
    rep["summary"] = {
        "map@10_warm_ials": ts["ials_warm"].get("map@10"), "map@10_warm_popular": ts["popular_warm"].get("map@10"),
        "recall@10_warm_ials": ts["ials_warm"].get("recall@10"), "ndcg@10_hybrid": ts["hybrid_all"].get("ndcg@10"),
        "map@10_hybrid": ts["hybrid_all"].get("map@10"), "warm_users": ts["warm_users"], "cold_users": ts["cold_users"],
    }
    if loo:
        rep["summary"]["hr@10_loo_ials"] = rep["leave_last_one_out"]["ials"].get("hitrate@10")
        rep["summary"]["hr@10_loo_popular"] = rep["leave_last_one_out"]["popular"].get("hitrate@10")
    return rep
