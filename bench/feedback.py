"""Negative feedback in the fold-in (issue 12): how to use "not interested".

Offline, on MovieLens 1M, with the production recipe and the production serving code: the
model is trained (``recipe.train_artifact``, default hyperparameters) on every user except a
random held-out set; each held-out user is then a new user of ``movierecs_serving.Recommender``
who sends, in time order, their first 5 ratings of 4-5 as likes and their first 5 ratings of
1-2 as not_interested. HR@10 (at least one hit) and Recall@10 are scored on their later
ratings of 4-5 (after the 5th like). Ways of using the 5 negatives, all against the same
model and users:

- ``5 likes alone`` (baseline): the negatives are not sent at all;
- ``zero confidence (built)``: what the service does: the negatives are left out of the
  least-squares system (any unobserved movie has preference 0, confidence 1) and hidden
  from the list;
- ``negative confidence w``: implicit's convention for a negative value: preference 0 with
  confidence ``alpha * w`` (the system gets ``(alpha*w - 1) y y^T``, the right-hand side
  nothing), and hidden from the list; w = 1, 2, 4, 8 (a like weighs 1).

No stack needed; ``python -m bench.feedback [--quick]``.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np

from bench import harness

LIKES, NEGATIVES, K = 5, 5, 10
WEIGHTS = (1.0, 2.0, 4.0, 8.0)


def _users(ratings, rng, n: int) -> list[tuple[int, list[int], list[int], set[int]]]:
    """(user, likes, negatives, truth) of up to ``n`` random users with enough of each."""
    out = []
    for user, r in ratings.sort_values(["user_id", "ts", "movie_id"]).groupby("user_id", sort=False):
        pos = r[r["rating"] >= 4]
        neg = r[r["rating"] <= 2]
        if len(pos) < LIKES + 1 or len(neg) < NEGATIVES:
            continue
        likes = pos["movie_id"].tolist()[:LIKES]
        cut = pos["ts"].iloc[LIKES - 1]
        truth = set(pos[(pos["ts"] > cut)]["movie_id"].tolist()) - set(likes)
        if truth:
            out.append((int(user), likes, neg["movie_id"].tolist()[:NEGATIVES], truth))
    picked = rng.choice(len(out), size=min(n, len(out)), replace=False)
    return [out[i] for i in sorted(picked)]


def _negative_vector(rec, likes: list[int], negatives: list[int], w: float) -> np.ndarray:
    """One iALS least-squares step with the likes as positives and the negatives as
    preference 0 with confidence alpha * w (implicit's convention for negative values)."""
    pos = np.asarray(rec._rows(likes), dtype=np.int64)
    neg = np.asarray(rec._rows(negatives), dtype=np.int64)
    Y = rec._Y64
    cp = rec.alpha * rec.like_weight
    cn = rec.alpha * w
    A = rec._YtY + rec.regularization * rec._eye + (cp - 1.0) * (Y[pos].T @ Y[pos]) + (cn - 1.0) * (Y[neg].T @ Y[neg])
    return np.linalg.solve(A, cp * Y[pos].sum(axis=0)).astype(np.float32)


def run(quick: bool) -> dict:
    from movierecs_serving import ModelArtifact, Recommender
    from movierecs_training import data, recipe
    from movierecs_training.params import Params
    from movierecs_training.train import ratings_to_interactions

    rng = np.random.default_rng(12)
    ratings = data.load_dataset("ml-1m").ratings
    held = _users(ratings, rng, 300 if quick else 1000)
    held_ids = {u for u, *_ in held}
    params = Params.from_dict(None)
    train = ratings_to_interactions(ratings[~ratings["user_id"].isin(held_ids)], params.weighting)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recommender(ModelArtifact.load(recipe.train_artifact(train, tmp, params, evaluate=False)))
    train_s = time.monotonic() - t0

    ways = ["5 likes alone", "zero confidence (built)"] + [f"negative confidence w={w:g}" for w in WEIGHTS]
    hits = {w: [] for w in ways}
    recall = {w: [] for w in ways}
    neg_in_top = {w: 0 for w in ways}
    for user, likes, negatives, truth in held:
        lists = {
            ways[0]: [m for m, _ in rec.recommend(user, K, liked=likes).items],
            ways[1]: [m for m, _ in rec.recommend(user, K, liked=likes, exclude=negatives, drop=negatives).items],
        }
        banned = set(rec._rows(likes + negatives))
        for w, name in zip(WEIGHTS, ways[2:]):
            vec = _negative_vector(rec, likes, negatives, w)
            lists[name] = [m for m, _ in rec._top_k(vec, K, banned)]
        for name, got in lists.items():
            n = len(set(got) & truth)
            hits[name].append(1.0 if n else 0.0)
            recall[name].append(n / min(len(truth), K))
            neg_in_top[name] += len(set(got) & set(negatives))
    base = float(np.mean(hits[ways[0]]))
    boot = rng.integers(0, len(held), size=(2000, len(held)))  # paired bootstrap over the users

    def ci(name: str) -> str:
        d = np.asarray(hits[name]) - np.asarray(hits[ways[0]])
        lo, hi = np.percentile(d[boot].mean(axis=1), [2.5, 97.5])
        return f"{d.mean():+.4f} [{lo:+.4f}, {hi:+.4f}]"

    rows = [[name, round(float(np.mean(hits[name])), 4), round(float(np.mean(recall[name])), 4),
             round(float(np.mean(hits[name])) / base, 3) if base else None, ci(name), neg_in_top[name]]
            for name in ways]
    return {
        "figures": [harness.table(
            "negative_feedback", f"Held-out new users: 5 likes + 5 not_interested, HR@{K} on their later likes",
            ["way of using the negatives", f"HR@{K}", f"Recall@{K}", "HR vs 5 likes alone",
             "HR difference [95% paired bootstrap]", "negatives listed (total)"],
            rows,
            note=f"{len(held)} held-out users of ML-1M (random, seed 12) with >= 6 ratings of 4-5 and >= 5 of 1-2; "
                 f"model trained on the other users with the default recipe ({params.factors} factors, alpha "
                 f"{params.alpha:g}, regularization {params.regularization:g}) in {train_s:.0f} s; baseline "
                 f"'5 likes alone' in the same run")],
        "params": {"users": len(held), "likes": LIKES, "negatives": NEGATIVES, "k": K, "weights": list(WEIGHTS),
                   "seed": 12},
        "notes": "",
    }


if __name__ == "__main__":
    harness.cli("feedback", run)
