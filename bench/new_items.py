"""Movies no model knows, placed by their content vector (issue 12, part 3).

Offline, on MovieLens 1M, with the production recipe and the production code
(``movierecs_core.new_items``: the mean of the genre mean item vectors): 100 random movies
with >= 50 ratings are held out of training entirely (every rating of them removed), as if
they had been added through POST /admin/movies with only their metadata. Then:

- similar: for each held-out movie and 20 model movies sharing a genre with it (the most
  rated), is it in the top 10 of that movie's similar list (cosine against every model
  item)? Baseline: a random placement among the same candidates (10 / (items + 1));
- top-10: for each (user, held-out movie) with a rating of 4-5 (the held-out future of the
  user), is the movie's content score among the user's top 10 of all unseen items? Baseline:
  random placement (10 / unseen items);
- the exploration slot as built (all 100 held out movies added at once, one slot, the best
  content score that beats the user's score of the average movie): how often is the offered
  movie one the user rated 4-5, against a random pick among the same added movies.

No stack needed; ``python -m bench.new_items [--quick]``.
"""
from __future__ import annotations

import tempfile
import time

import numpy as np

from bench import harness

HELD, PER_MOVIE, K = 100, 20, 10


class _Catalog:
    def __init__(self, movies):
        self.movies = movies

    def get_many(self, ids):
        return {i: self.movies[i] for i in ids if i in self.movies}


def run(quick: bool) -> dict:
    from movierecs_core import new_items
    from movierecs_core.catalog import Movie
    from movierecs_serving import ModelArtifact, Recommender
    from movierecs_training import data, recipe
    from movierecs_training.params import Params
    from movierecs_training.train import ratings_to_interactions

    rng = np.random.default_rng(12)
    ml = data.load_dataset("ml-1m")
    ratings = ml.ratings
    movies = {int(r.movie_id): Movie(int(r.movie_id), str(r.title), None, tuple(r.genres)) for r in ml.movies.itertuples()}
    counts = ratings["movie_id"].value_counts()
    pool = np.asarray(sorted(counts[counts >= 50].index.tolist()))
    held = sorted(rng.choice(pool, size=HELD, replace=False).tolist())
    params = Params.from_dict(None)
    train = ratings_to_interactions(ratings[~ratings["movie_id"].isin(held)], params.weighting)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recommender(ModelArtifact.load(recipe.train_artifact(train, tmp, params, evaluate=False)))
    train_s = time.monotonic() - t0
    reads = type("Reads", (), {"catalog": _Catalog(movies)})()
    new_items._cache.clear()
    new_items._cache["version"] = None
    space = new_items._space(reads, rec)
    item_ids = space["ids"]
    n_items = len(item_ids)
    unit = space["unit"]
    Y = np.asarray(rec.artifact.item_factors, dtype=np.float64)
    vec = {h: new_items.content_vector(space, movies[h].genres) for h in held}
    held = [h for h in held if vec[h] is not None]

    # similar lists of same-genre movies
    rated = counts.to_dict()
    sim_hits = sim_n = 0
    for h in held:
        v = vec[h] / (np.linalg.norm(vec[h]) or 1.0)
        same = [j for j, m in enumerate(item_ids.tolist()) if set(movies[m].genres) & set(movies[h].genres)]
        same = sorted(same, key=lambda j: -rated.get(int(item_ids[j]), 0))[:PER_MOVIE]
        for j in same:
            cos = unit @ unit[j]
            cos[j] = -np.inf
            tenth = np.partition(-cos, K - 1)[K - 1] * -1
            sim_hits += float(unit[j] @ v) > tenth
            sim_n += 1

    # top-10 of users whose held-out future holds the movie, and the exploration slot
    pos = ratings[ratings["movie_id"].isin(held) & (ratings["rating"] >= 4)]
    liked_held = pos.groupby("user_id")["movie_id"].apply(set).to_dict()
    users = sorted(liked_held)
    if quick:
        users = sorted(rng.choice(users, size=min(600, len(users)), replace=False).tolist())
    V = np.stack([vec[h] for h in held])  # (held, f)
    top_hits = top_n = 0
    top_base = 0.0
    slot_hits = slot_n = 0
    slot_base = 0.0
    mean = space["mean"]
    for u in users:
        if not rec.has_user(u):
            continue
        x = rec.artifact.user_factors[rec._user_row[u]].astype(np.float64)
        seen = set(rec.seen_items(u))
        s_items = Y @ x
        s_items[[rec._item_row[m] for m in seen]] = -np.inf
        tenth = -np.partition(-s_items, K - 1)[K - 1]
        s_held = V @ x
        unseen = n_items - len(seen)
        for h in liked_held[u]:
            top_hits += float(s_held[held.index(h)]) > tenth
            top_n += 1
            top_base += K / (unseen + 1)
        best = int(np.argmax(s_held))
        if s_held[best] > float(x @ mean):
            slot_n += 1
            slot_hits += held[best] in liked_held[u]
            slot_base += len(liked_held[u]) / len(held)
    table = [
        ["in the top-10 similar list of a same-genre movie", f"{sim_hits / sim_n:.4f}", f"{K / (n_items + 1):.4f}",
         f"{(sim_hits / sim_n) / (K / (n_items + 1)):.1f}x", f"{sim_n} (movie, same-genre movie) pairs"],
        ["in the top 10 of a user who rated it 4-5 (all unseen items)", f"{top_hits / top_n:.4f}", f"{top_base / top_n:.4f}",
         f"{(top_hits / top_n) / (top_base / top_n):.1f}x", f"{top_n} (user, movie) pairs"],
        ["the exploration slot offers a movie the user rated 4-5", f"{slot_hits / slot_n:.4f}", f"{slot_base / slot_n:.4f}",
         f"{(slot_hits / slot_n) / (slot_base / slot_n):.1f}x", f"{slot_n} users offered a slot (of {len(users)})"],
    ]
    return {
        "figures": [harness.table(
            "new_items_placement", f"{len(held)} held-out movies placed by their genres' mean vector vs random placement",
            ["placement", "rate", "random placement (same run)", "lift", "over"], table,
            note=f"ML-1M, {len(held)} random movies with >= 50 ratings held out of training (seed 12); default "
                 f"recipe ({params.factors} factors) trained in {train_s:.0f} s on the rest")],
        "params": {"held_out": len(held), "per_movie": PER_MOVIE, "k": K, "users": len(users), "seed": 12},
        "notes": "",
    }


if __name__ == "__main__":
    harness.cli("new_items", run)
