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
from movierecs_training.train import SEED_PARAMS, Params, ratings_to_interactions

OUTER_CUTOFF = {"ml-1m": "2000-12-01", "ml-100k": "1998-03-01"}
VALIDATION_QUANTILE = 0.85
GRID = {"factors": [32, 64, 128], "regularization": [10.0, 50.0, 150.0], "alpha": [1.0, 2.0, 4.0, 8.0, 16.0],
        "weighting": ["binary", "positive", "rating"]}
QUICK = {"factors": [16, 32], "regularization": [10.0, 50.0], "alpha": [2.0, 4.0], "weighting": ["binary", "positive"]}


def _score(ratings: pd.DataFrame, p: Params, cutoff=None, quantile: float = VALIDATION_QUANTILE) -> dict[str, Any]:
    df = ratings_to_interactions(ratings, p.weighting)
    res = evaluate_time_split(df, p, cutoff=cutoff, quantile=quantile)
    return {"params": {k: v for k, v in p.to_dict().items() if k in ("factors", "regularization", "alpha", "iterations", "weighting")},
            "map@10": res["ials_warm"].get("map@10"), "recall@10": res["ials_warm"].get("recall@10"),
            "ndcg@10": res["ials_warm"].get("ndcg@10"), "popular_map@10": res["popular_warm"].get("map@10"),
            "fit_seconds": res["fit_seconds"], "cutoff": res["cutoff"], "warm_users": res["warm_users"]}


def run(source: str = "ml-1m", out: str | Path | None = None, quick: bool = False) -> dict[str, Any]:
    grid = QUICK if quick else GRID
    ratings = data.load_dataset(source).ratings
    outer = pd.Timestamp(OUTER_CUTOFF[source], tz="UTC") if source in OUTER_CUTOFF else ratings["ts"].quantile(0.8)
    train_ratings = ratings[ratings["ts"] < outer]
    t0 = time.perf_counter()
    results: list[dict[str, Any]] = []
    base = Params()
    todo = [Params(**{**base.to_dict(), "factors": f, "regularization": r, "alpha": 4.0, "weighting": "binary"})
            for f in grid["factors"] for r in grid["regularization"]]
    bar = tqdm(desc="search", total=len(todo) + len(grid["alpha"]) - 1 + len(grid["weighting"]) - 1, unit="fit")

    def evaluate_all(ps):
        for p in ps:
            results.append(_score(train_ratings, p))
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
    test = {"chosen": _score(ratings, chosen, cutoff=outer), "seed": _score(ratings, seed, cutoff=outer)}
    res = {
        "source": source, "protocol": {"outer_cutoff": str(outer), "validation": f"last {int((1 - VALIDATION_QUANTILE) * 100)} % of the training period",
                                       "objective": "MAP@10 of iALS on warm validation users", "iterations": base.iterations},
        "grid": grid, "results": results, "chosen": chosen.to_dict(), "test": test, "seconds": round(time.perf_counter() - t0, 1),
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(res, indent=2, default=str))
    return res
