"""Online experiments simulated on the real stack (issue 13; docs/EXPERIMENTS.md).

Simulated users replay held-out ML-1M futures through the API: 20 % of the users (seed 7) are
left out of training; each becomes a new user id who likes their first 5 movies rated 4 or 5
(in time order, POST /likes), then asks for a list three times (GET /recommendations, k=10)
and likes each shown movie that is among their later movies rated 4 or 5 with probability
``P_LIKE`` (POST /likes). The stack records the impressions and credits the likes; the
experiment's report (GET /admin/experiments/{id}) is read every ``LOOK`` users.

Versions, trained here on the other 80 % and published to the stack's model bucket (not
promoted): the tuned setting, the seed's (factors 200, alpha 40) and Popular (a one-factor
artifact whose scores are the popularity list). Experiments: A/A (tuned vs tuned) and A/B
tuned vs seed and tuned vs Popular, each with its own users. The A/A run's false-winner rate
is then estimated by re-assigning its users to arms at random many times (the outcomes are
the stack's, the test is the API's code) and looking after every ``LOOK`` users.

Run on request: ``python -m bench.experiments [--quick]`` (about 10 minutes; the quick run
about 3). It leaves the promoted version and the experiments table as it found them.
"""
from __future__ import annotations

import json
import os
import random
import re
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import requests

from bench import harness
from movierecs_core import experiments as ex
from movierecs_serving import ModelArtifact, ModelStore, Recommender, write_artifact
from movierecs_training import data, params, train

P_LIKE = 0.5
N_FEED = 5
LISTS = 3
LOOK = 25
SHARE = 0.5


def _held_out(ratings) -> tuple[set[int], dict[int, list[int]]]:
    rng = np.random.default_rng(7)
    users = ratings["user_id"].unique()
    held = set(rng.choice(users, size=len(users) // 5, replace=False).tolist())
    likes = ratings[ratings["user_id"].isin(held) & (ratings["rating"] >= 4)].sort_values(
        ["user_id", "ts", "movie_id"], kind="stable")
    seqs = {int(u): g["movie_id"].tolist() for u, g in likes.groupby("user_id")}
    return held, {u: s for u, s in seqs.items() if len(s) >= N_FEED + 5}


def _popular_artifact(tuned: ModelArtifact, out: Path) -> Path:
    """Popular as a model version: one factor, item factor = normalised popularity, user factor 1."""
    pop = np.zeros(len(tuned.item_ids))
    pop[tuned.popular] = tuned.popular_scores / tuned.popular_scores.max()
    return write_artifact(out, user_factors=np.ones((len(tuned.user_ids), 1)), item_factors=pop[:, None],
                          user_ids=tuned.user_ids, item_ids=tuned.item_ids, popular=tuned.popular,
                          popular_scores=tuned.popular_scores, seen_indptr=tuned.seen_indptr,
                          seen_indices=tuned.seen_indices, seen_data=tuned.seen_data,
                          hyperparameters={"factors": 1, "alpha": 1.0, "regularization": 1e6, "model": "popularity"},
                          data={"note": "bench/experiments.py: the popularity list as a model"})


def _offline(rec: Recommender, seqs: dict[int, list[int]]) -> float:
    """HR@10 of the first list after the 5 fed likes, on the next 10 likes (the protocol offline)."""
    hits = 0
    for u, seq in seqs.items():
        r = rec.recommend(10**9 + u, 10, liked=seq[:N_FEED])
        hits += bool({m for m, _ in r.items} & set(seq[N_FEED:N_FEED + 10]))
    return hits / max(1, len(seqs))


class Sim:
    """Simulated users against the stack's API."""

    def __init__(self, api: str, admin_key: str, base: int):
        self.api, self.base = api, base
        self.admin = requests.Session()
        self.admin.headers.update({"x-api-key": admin_key, "Content-Type": "application/json"})
        self.local = threading.local()

    def _s(self) -> requests.Session:
        if not hasattr(self.local, "s"):
            self.local.s = requests.Session()
        return self.local.s

    def user(self, u: int, seq: list[int], rng: random.Random) -> str | None:
        s, uid = self._s(), self.base + u
        for m in seq[:N_FEED]:
            s.post(f"{self.api}/likes", json={"user_id": uid, "movie_id": m}, timeout=30)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline and len(s.get(f"{self.api}/users/{uid}/likes", timeout=30).json()["items"]) < N_FEED:
            time.sleep(0.2)
        future, liked, arm = set(seq[N_FEED:]), set(seq[:N_FEED]), None
        for _ in range(LISTS):
            body = s.get(f"{self.api}/recommendations", params={"user_id": uid, "k": 10}, timeout=30).json()
            arm = body.get("arm")
            for item in body.get("items", []):
                m = item["movie_id"]
                if m in future and m not in liked and rng.random() < P_LIKE:
                    s.post(f"{self.api}/likes", json={"user_id": uid, "movie_id": m}, timeout=30)
                    liked.add(m)
            time.sleep(0.3)
        return arm

    def experiment(self, control: str, candidate: str, users: dict[int, list[int]], label: str) -> dict[str, Any]:
        r = self.admin.post(f"{self.api}/admin/experiments", data=json.dumps(
            {"control": control, "candidate": candidate, "share": SHARE, "min_impressions": LISTS * len(users),
             "max_hours": 24}),
            timeout=30)
        r.raise_for_status()
        eid = r.json()["experiment_id"]
        time.sleep(2.5)
        t0, looks, first_winner = time.monotonic(), [], None
        items = list(users.items())
        try:
            with ThreadPoolExecutor(6) as pool:
                for start in range(0, len(items), LOOK):
                    chunk = items[start:start + LOOK]
                    list(pool.map(lambda kv: self.user(kv[0], kv[1], random.Random(kv[0])), chunk))
                    rep = self.admin.get(f"{self.api}/admin/experiments/{eid}", timeout=60).json()
                    looks.append(rep)
                    iv = rep["interval"]
                    if first_winner is None and iv and (iv[0] > 0 or iv[1] < 0):
                        first_winner = {"users": start + len(chunk), "seconds": round(time.monotonic() - t0, 1),
                                        "impressions": sum(a["impressions"] for a in rep["arms"].values())}
            time.sleep(4)  # the last likes and impressions land
            final = self.admin.get(f"{self.api}/admin/experiments/{eid}", timeout=60).json()
        finally:  # (the scheduled check may have concluded it already: then this is a 409)
            self.admin.post(f"{self.api}/admin/experiments/{eid}/stop", data=json.dumps({"decision": "keep"}), timeout=60)
        return {"label": label, "experiment_id": eid, "final": final, "first_winner": first_winner,
                "seconds": round(time.monotonic() - t0, 1)}


def _per_user(ch: Any, eid: str) -> list[tuple[int, int, int]]:
    """(user, impressions, converted) of one experiment, in the users' first-impression order."""
    from movierecs_core.stores.clickhouse import _SERVED_CTE, _served  # the API's own crediting

    sql, p = _served(_SERVED_CTE + "SELECT user_id, count() AS n, countIf(liked > 0) AS k, min(ts) AS first "
                     "FROM judged GROUP BY user_id ORDER BY first", "", 1800, eid)
    from datetime import datetime, timezone
    p["since"] = datetime(2000, 1, 1, tzinfo=timezone.utc)
    return [(int(u), int(n), int(k)) for u, n, k, _ in ch.query(sql, parameters=p).result_rows]


def _aa_false_winners(outcomes: list[tuple[int, int, int]], reps: int, alpha: float = 0.05) -> float:
    """Share of random re-assignments of the A/A users whose interval excluded 0 at any look."""
    rng = random.Random(11)
    wins = 0
    for _ in range(reps):
        acc = {a: [0, 0, 0, 0.0, 0.0] for a in ex.ARMS}
        won = False
        for i, (_u, n, k) in enumerate(outcomes, 1):
            arm = "candidate" if rng.random() < SHARE else "control"
            r = k / n
            a = acc[arm]
            a[0] += 1; a[1] += n; a[2] += k; a[3] += r; a[4] += r * r
            if i % LOOK == 0:
                cs = ex.confidence_sequence(ex.ArmStats(*acc["control"]), ex.ArmStats(*acc["candidate"]), SHARE,
                                            alpha, len(outcomes))
                if cs and (cs[1][0] > 0 or cs[1][1] < 0):
                    won = True
                    break
        wins += won
    return wins / reps


def run(quick: bool) -> dict:
    e = harness.endpoints()
    api = e["api"].rstrip("/")
    m = re.match(r"(https?://[^/]+)", api)
    import boto3
    import clickhouse_connect
    from urllib.parse import urlparse

    kw = dict(endpoint_url=m.group(1), region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in
               boto3.client("cloudformation", **kw).describe_stacks(StackName="movierecs")["Stacks"][0]["Outputs"]}
    store = ModelStore(boto3.client("s3", **kw), outputs["ModelBucketName"])
    u = urlparse(e["clickhouse"])
    ch = clickhouse_connect.get_client(host=u.hostname, port=u.port, database="movierecs", compress=False)

    ml = data.load_dataset("ml-1m")
    held, seqs = _held_out(ml.ratings)
    versions, offline, folders = {}, {}, {}
    kept = ml.ratings[~ml.ratings["user_id"].isin(held)]
    with tempfile.TemporaryDirectory() as tmp:
        seed = train.Params(**{**train.Params().to_dict(), **params.SEED_PARAMS, "weighting": "binary"})
        for name, p in (("tuned", train.Params()), ("seed setting", seed)):
            d = train.ratings_to_interactions(kept, p.weighting)
            folders[name] = train.write_model(train.fit(d, p), d, Path(tmp) / name.replace(" ", "_"))
        folders["Popular"] = _popular_artifact(ModelArtifact.load(folders["tuned"]), Path(tmp) / "popular")
        for name, folder in folders.items():
            versions[name] = store.publish(folder)
            offline[name] = _offline(Recommender(ModelArtifact.load(folder)), seqs)

    promoted = requests.get(f"{api}/admin/models", headers={"x-api-key": e["admin_api_key"]}, timeout=30).json()["current"]
    per = 60 if quick else 250
    pool = list(seqs.items())
    random.Random(5).shuffle(pool)
    sim = Sim(api, e["admin_api_key"], base=1_600_000_000 + random.randint(0, 9999) * 10_000)
    runs = []
    for i, (label, control, candidate) in enumerate((
            ("A/A: tuned vs tuned", "tuned", "tuned"), ("A/B: tuned vs seed setting", "tuned", "seed setting"),
            ("A/B: tuned vs Popular", "tuned", "Popular"))):
        users = dict(pool[i * per:(i + 1) * per])
        res = sim.experiment(versions[control], versions[candidate], users, label)
        res["control"], res["candidate"] = control, candidate
        runs.append(res)
    # whatever the scheduled check concluded meanwhile, the stack serves what it served before
    requests.post(f"{api}/admin/reload", json={"version": promoted}, headers={"x-api-key": e["admin_api_key"]}, timeout=60)
    aa = runs[0]
    aa_rate = _aa_false_winners(_per_user(ch, aa["experiment_id"]), 200 if quick else 1000)

    rows = []
    for r in runs:
        f = r["final"]
        arms = f["arms"]
        fw = r["first_winner"]
        rows.append([r["label"] + (f" (concluded by the rules: {f['decision']})" if f["status"] == "concluded" else ""),
                     f"{arms['control']['users']} / {arms['candidate']['users']}",
                     f"{arms['control']['rate']} / {arms['candidate']['rate']}",
                     f"{offline[r['control']]:.3f} / {offline[r['candidate']]:.3f}",
                     f["difference"], str(f["interval"]),
                     ("candidate" if f["interval"][0] > 0 else "control") if f["interval"] and (
                         f["interval"][0] > 0 or f["interval"][1] < 0) else "none (not shown different)",
                     "-" if not fw else f"{fw['impressions']} impressions, {fw['users']} users, {fw['seconds']} s",
                     r["seconds"]])
    return {"figures": [
        harness.table("experiments_sim", f"Experiments on the stack: simulated users replay held-out ML-1M futures "
                      f"(like a shown future movie with p = {P_LIKE}), share {SHARE}, alpha 0.05",
                      ["experiment", "users control / candidate", "like-rate per impression control / candidate",
                       "offline HR@10 (fold-in, next 10) control / candidate", "difference of user rates",
                       "always-valid interval", "winner", "first look that excluded 0", "wall time s"], rows),
        harness.scalars("experiments_aa", "A/A: false winners over random re-assignments of its users, looked at every "
                        f"{LOOK} users (stated level alpha = 0.05)", {"false-winner rate": (round(aa_rate, 4), "")}),
    ], "params": {"users_per_experiment": per, "versions": versions, "offline_hr10": offline}}


if __name__ == "__main__":
    harness.cli("experiments", run)
