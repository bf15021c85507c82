"""Hyperparameter search on a validation split carved from the training period only.

Protocol (ML-1M): the outer split is the global time split at 2000-12-01 (train before,
test after). Inside the training period, the last 15 % of interaction time is the
validation part. The grid is staged to stay small on 2 cores: (factors x regularization)
at alpha 4, then alpha at the best pair, then the weighting at the best point. The choice
maximises MAP@10 of iALS on warm validation users; only then is the chosen setting (and
the seed setting, and Popular) scored once on the outer test part.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from movierecs_training import data
from movierecs_training.evaluate import evaluate_time_split, time_split
from movierecs_training.params import SEED_PARAMS, WEIGHTINGS, Params
from movierecs_training.train import ratings_to_interactions

OUTER_CUTOFF = {"ml-1m": "2000-12-01", "ml-100k": "1998-03-01"}
VALIDATION_QUANTILES = (0.8, 0.9)
GRID = {"factors": [32, 64, 128], "regularization": [10.0, 50.0, 150.0], "alpha": [1.0, 2.0, 4.0, 8.0, 16.0],
        "weighting": list(WEIGHTINGS)}
QUICK = {"factors": [16, 32], "regularization": [10.0, 50.0], "alpha": [2.0, 4.0], "weighting": ["binary", "positive"]}


def _score_one(ratings: pd.DataFrame, p: Params, cutoff) -> dict[str, Any]:
    truth = ratings_to_interactions(ratings, "binary")  # every later rating is relevant, whatever the recipe
    df = truth if p.weighting == "binary" else ratings_to_interactions(ratings, p.weighting)
    return evaluate_time_split(df, p, cutoff=cutoff, truth=truth)


def _score(ratings: pd.DataFrame, p: Params, cutoffs) -> dict[str, Any]:
    """Mean of the metrics over the given time-split cutoffs (validation folds)."""
    runs = [_score_one(ratings, p, c) for c in cutoffs]
    mean = lambda part, m: round(sum(r[part].get(m, 0.0) for r in runs) / len(runs), 6)  # noqa: E731
    return {"params": {k: v for k, v in p.to_dict().items() if k in ("factors", "regularization", "alpha", "iterations", "weighting")},
            "map@10": mean("ials_warm", "map@10"), "recall@10": mean("ials_warm", "recall@10"),
            "ndcg@10": mean("ials_warm", "ndcg@10"), "popular_map@10": mean("popular_warm", "map@10"),
            "popular_recall@10": mean("popular_warm", "recall@10"),
            "fit_seconds": round(sum(r["fit_seconds"] for r in runs) / len(runs), 3),
            "cutoffs": [r["cutoff"] for r in runs], "warm_users": [r["warm_users"] for r in runs]}


def run(source: str = "ml-1m", out: str | Path | None = None, quick: bool = False) -> dict[str, Any]:
    grid = QUICK if quick else GRID
    ratings = data.load_dataset(source).ratings
    outer = pd.Timestamp(OUTER_CUTOFF[source], tz="UTC") if source in OUTER_CUTOFF else ratings["ts"].quantile(0.8)
    train_ratings = ratings[ratings["ts"] < outer]
    folds = [train_ratings["ts"].quantile(q) for q in VALIDATION_QUANTILES]
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    base = Params()
    todo = [Params(**{**base.to_dict(), "factors": f, "regularization": r, "alpha": 4.0, "weighting": "binary"})
            for f in grid["factors"] for r in grid["regularization"]]
    bar = tqdm(desc="search", total=len(todo) + len(grid["alpha"]) - 1 + len(grid["weighting"]) - 1, unit="fit")

    def evaluate_all(ps):
        for p in ps:
            results.append(_score(train_ratings, p, folds))
            bar.update(1)

    evaluate_all(todo)
    best = max(results, key=lambda r: r["map@10"])["params"]
    evaluate_all([Params(**{**base.to_dict(), **best, "alpha": a}) for a in grid["alpha"] if a != best["alpha"]])
    best = max(results, key=lambda r: r["map@10"])["params"]
    evaluate_all([Params(**{**base.to_dict(), **best, "weighting": w}) for w in grid["weighting"] if w != best["weighting"]])
    bar.close()
    best = max(results, key=lambda r: r["map@10"])["params"]
    chosen = Params(**{**base.to_dict(), **best})
    seed = Params(**{**base.to_dict(), **SEED_PARAMS})
    prior = Params()
    test = {name: _score(ratings, p, [outer]) for name, p in (("chosen", chosen), ("prior", prior), ("seed", seed))}
    res = {
        "source": source, "protocol": {"outer_cutoff": str(outer), "validation": [f"last {round((1 - q) * 100)} % of the training period's time" for q in VALIDATION_QUANTILES],
                                       "objective": "MAP@10 of iALS on warm validation users", "iterations": base.iterations},
        "grid": grid, "results": results, "chosen": chosen.to_dict(), "test": test, "seconds": round(time.perf_counter() - t0, 1),
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=2, default=str))
    return res
