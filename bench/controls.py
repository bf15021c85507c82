"""The quality cost of the list controls (issue 11), offline on the time split, in one run:

* diversity: MAP@10 and intra-list diversity of the warm users' top-10 at diversity 0, 0.3,
  0.6 and 1 (the serving library's MMR over a pool of 50, exactly as the API re-ranks), next to
  Popular. Intra-list diversity is the mean pairwise distance within a list, by genres
  (1 - Jaccard) and by item factors (1 - cosine); plus distinct genres per list;
* reasons: for a sample of warm users' top-10, the share of the score the top three reasons
  explain, how far the exact terms' sum is from the score they split (must be rounding
  error), and how far that history-solved score is from the served one (the trained vector);
* in-process cost of a page with reasons, with diversity, against the plain top-10.

The gateway latency of filters, a cursor and diversity is bench/filters.py.
"""
from __future__ import annotations

import os
import statistics
import time
from itertools import combinations

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from bench import harness
from movierecs_serving import Recommender
from movierecs_training import data, evaluate, train

CUTOFF = "2000-12-01"  # the time split of bench/model.py
K = 10
POOL = 50  # service._pool(10, d > 0)
DIVERSITY = (0.0, 0.3, 0.6, 1.0)


def _ild(lists: list[list[int]], genres: dict[int, frozenset[str]], rec: Recommender) -> tuple[float, float, float]:
    """Mean over lists of (genre distance, factor distance, distinct genres)."""
    g, f, n = [], [], []
    for items in lists:
        pairs = list(combinations(items, 2))
        if not pairs:
            continue
        g.append(statistics.fmean(1 - len(genres[a] & genres[b]) / max(1, len(genres[a] | genres[b])) for a, b in pairs))
        V = rec._Yn[[rec._item_row[m] for m in items]].astype(np.float64)
        sims = V @ V.T
        f.append(float(1 - (sims.sum() - len(items)) / (len(items) * (len(items) - 1))))
        n.append(len(set().union(*(genres[m] for m in items))))
    return statistics.fmean(g), statistics.fmean(f), statistics.fmean(n)


def _reco(lists: dict[int, list[int]]) -> pd.DataFrame:
    from rectools import Columns

    rows = [(u, m, r + 1) for u, items in lists.items() for r, m in enumerate(items)]
    return pd.DataFrame(rows, columns=[Columns.User, Columns.Item, Columns.Rank])


def run(quick: bool) -> dict:
    ml = data.load_dataset("ml-1m")
    genres = {int(m): frozenset(g) for m, g in zip(ml.movies["movie_id"], ml.movies["genres"])}
    params = train.Params()
    truth = train.ratings_to_interactions(ml.ratings, "binary")
    df = train.ratings_to_interactions(ml.ratings, params.weighting)
    _, test, cut = evaluate.time_split(truth, CUTOFF)
    fit_part, _, _ = evaluate.time_split(df, cut)
    fitted = train.fit(fit_part, params)
    rec = Recommender(evaluate.artifact_from_fitted(fitted))
    warm = np.array(sorted(set(test["user_id"].unique()) & set(rec.artifact.user_ids.tolist())), np.int64)
    if quick:
        warm = warm[:200]
    test_w = test[test["user_id"].isin(warm)]

    pools = {int(u): rec.recommend(int(u), POOL) for u in warm}
    rows, curve = [], {}
    for d in DIVERSITY:
        lists = {u: [m for m, _ in rec.diversify(r.items, K, d)] for u, r in pools.items()}
        m = evaluate.score(_reco(lists), test_w, fit_part, K)
        g, f, n = _ild(list(lists.values()), genres, rec)
        rows.append([f"iALS, diversity {d}", m["users"], m["map@10"], m["recall@10"], round(g, 4), round(f, 4), round(n, 2)])
        curve[d] = m["map@10"]
    pop = evaluate.topk_popular(rec.artifact, warm, K)
    m = evaluate.score(pop, test_w, fit_part, K)
    pop_lists = [grp.sort_values("rank")["item_id"].tolist() for _, grp in pop.groupby("user_id")]
    g, f, n = _ild(pop_lists, genres, rec)
    rows.append(["Popular", m["users"], m["map@10"], m["recall@10"], round(g, 4), round(f, 4), round(n, 2)])

    # reasons: the exact split of each top-10 score over the user's history
    sample = warm[: 200 if quick else 1000]
    top3, sum_err, served_err = [], [], []
    for u in sample:
        r = pools[int(u)]
        movies = [m for m, _ in r.items[:K]]
        for (movie, served), e in zip(r.items[:K], rec.explain(r.basis, movies)):
            if e.score <= 0:
                continue
            top3.append(sum(t for _, t in e.terms[:3] if t > 0) / e.score)
            sum_err.append(abs(sum(t for _, t in e.terms) - e.score) / e.score)
            served_err.append(abs(e.score - served) / abs(served))

    # in-process cost per request, interleaved: plain top-10, + reasons, + diversity 0.3
    users = [int(u) for u in warm[:300]]
    lat: dict[str, list[float]] = {"top-10": [], "top-10 + reasons": [], "pool 50 + diversity 0.3 + reasons": []}
    for _ in range(3 if quick else 10):
        for u in users:
            t = time.perf_counter()
            rec.recommend(u, K + 5)
            lat["top-10"].append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            r = rec.recommend(u, K + 5)
            rec.explain(r.basis, [m for m, _ in r.items[:K]], top=3)
            lat["top-10 + reasons"].append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            r = rec.recommend(u, POOL)
            picked = rec.diversify(r.items, K, 0.3)
            rec.explain(r.basis, [m for m, _ in picked], top=3)
            lat["pool 50 + diversity 0.3 + reasons"].append((time.perf_counter() - t) * 1e3)

    base = curve[0.0]
    return {"figures": [
        harness.table("controls_quality", f"Diversity on the time split ({CUTOFF}), warm users, top-{K} from a pool of {POOL}",
                      ["list", "users", "MAP@10", "recall@10", "ILD genres (1-Jaccard)", "ILD factors (1-cos)",
                       "distinct genres"], rows,
                      note="MMR over unit item factors, as GET /recommendations?diversity=d re-ranks"),
        harness.scalars("controls_map_ratio", "MAP@10 at diversity d / at 0, same run", {
            f"diversity {d}": (round(curve[d] / base, 3), "x") for d in DIVERSITY[1:]}),
        harness.scalars("reasons", f"Reasons: top-10 items of {len(sample)} warm users ({len(top3)} items with a positive score)", {
            "share of the score explained by the top 3 reasons, median": (round(statistics.median(top3), 3), ""),
            "share explained by the top 3, p10": (round(float(np.percentile(top3, 10)), 3), ""),
            "share explained by the top 3, p90": (round(float(np.percentile(top3, 90)), 3), ""),
            "terms' sum vs the score they split, max relative error": (float(f"{max(sum_err):.2e}"), ""),
            "history-solved score vs served score, median relative difference": (round(statistics.median(served_err), 4), ""),
            "history-solved score vs served score, p99 relative difference": (round(float(np.percentile(served_err, 99)), 4), ""),
        }),
        harness.distribution("controls_cost", "In-process cost of one page (warm users, 1 thread)", lat, baseline="top-10"),
    ], "params": {"cutoff": CUTOFF, "warm_users": int(len(warm)), "pool": POOL, "k": K}}


if __name__ == "__main__":
    harness.cli("controls", run)
