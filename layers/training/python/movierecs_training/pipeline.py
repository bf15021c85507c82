"""The retraining workflow's steps (docs/DESIGN.md, "Training pipeline API").

Each step takes and returns a JSON-able dict (a Step Functions state's input and output);
data and artifacts travel through S3 only:
extract (ClickHouse -> Parquet in S3) -> train (Parquet -> candidate version, unpromoted)
-> evaluate (candidate vs promoted on the same holdout: promote?) -> promote (CURRENT).
"""
from __future__ import annotations

import logging
import secrets
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from movierecs_core.stores import clickhouse
from movierecs_serving import ModelArtifact, ModelStore
from movierecs_training.recipe import train_artifact
from movierecs_training.run_state import Run
from movierecs_training.train import COLUMNS, Params, combine, likes_to_interactions, ratings_to_interactions

log = logging.getLogger(__name__)
RAW_COLUMNS = COLUMNS + ["rating"]
DEFAULT_TOLERANCE = 0.02


# -- low level -----------------------------------------------------------------------
def extract_frame(ch_client, database: str = "movierecs") -> pd.DataFrame:
    """Raw interactions: every rating (weight 1, its rating kept) and every liked movie (rating 0).

    Feedback (issue 12): per (user, movie) the latest like/unlike/not_interested wins. A movie
    whose latest event is a like is a like row; one whose latest is an unlike or a
    not_interested is left out altogether, its rating too (zero confidence: the user took it
    back, so it is no positive evidence; iALS then treats it as any unobserved movie).
    Forgotten users have no rows left in ClickHouse, so they are in no model trained after."""
    r = clickhouse.read_ratings(ch_client, database)
    try:
        fb = clickhouse.read_feedback_state(ch_client, database)
    except Exception as e:  # no likes table yet: ratings alone
        log.warning("no likes read from ClickHouse (%s); training on ratings only", str(e).splitlines()[0][:200])
        fb = pd.DataFrame()
    if fb.empty:  # an empty result may come back without columns (chDB's Native output)
        fb = pd.DataFrame({"user_id": [], "movie_id": [], "last": [], "ts": pd.to_datetime([], utc=True)})
    lk = fb[fb["last"] == "like"]
    out = fb[fb["last"] != "like"]
    if len(out):
        gone = pd.MultiIndex.from_arrays([out["user_id"].astype(np.int64), out["movie_id"].astype(np.int64)])
        pairs = pd.MultiIndex.from_arrays([r["user_id"].astype(np.int64), r["movie_id"].astype(np.int64)])
        r = r[~pairs.isin(gone)].reset_index(drop=True)
    ri = ratings_to_interactions(r.assign(ts=pd.to_datetime(r["ts"], utc=True)), "binary")
    ri["rating"] = r["rating"].to_numpy(np.int16)
    li = likes_to_interactions(lk.assign(ts=pd.to_datetime(lk["ts"], utc=True)))
    li["rating"] = np.zeros(len(li), np.int16)
    return pd.concat([ri, li], ignore_index=True)[RAW_COLUMNS]


def prepare(raw: pd.DataFrame, params: Params) -> pd.DataFrame:
    """Raw rows (ratings + likes) -> one weighted row per (user, movie) for this recipe."""
    if "rating" not in raw.columns:
        return combine(raw[COLUMNS])
    is_like = raw["source"] == "like"
    ratings = raw[~is_like]
    ri = ratings_to_interactions(ratings[["user_id", "movie_id", "rating", "ts"]], params.weighting)
    li = likes_to_interactions(raw[is_like], params.like_weight)
    return combine(ri, li)


def extract_interactions(ch_client, out_path: str | Path, database: str = "movierecs") -> dict[str, Any]:
    df = extract_frame(ch_client, database)
    df.to_parquet(out_path, index=False)
    return _describe_raw(df)


def _describe_raw(df: pd.DataFrame) -> dict[str, Any]:
    return {
        "rows": int(len(df)), "users": int(df["user_id"].nunique()), "items": int(df["movie_id"].nunique()),
        "ratings": int((df["source"] == "rating").sum()), "likes": int((df["source"] == "like").sum()),
        "min_ts": df["ts"].min().isoformat() if len(df) else None, "max_ts": df["ts"].max().isoformat() if len(df) else None,
    }


def read_raw(path: str | Path) -> pd.DataFrame:
    import pyarrow.parquet as pq

    names = pq.read_schema(path).names
    df = pq.read_table(path, read_dictionary=["source"] if "source" in names else None).to_pandas()
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df


def truth_of(raw: pd.DataFrame) -> pd.DataFrame:
    """What evaluation counts as relevant: every rating and like, unweighted (recipe-independent)."""
    return prepare(raw, Params(weighting="binary", like_weight=1.0))


def train_from_raw(raw: pd.DataFrame, out_dir: str | Path, params: Params | dict | None = None, *, evaluate: bool = True) -> Path:
    p = params if isinstance(params, Params) else Params.from_dict(params)
    return train_artifact(prepare(raw, p), out_dir, p, evaluate=evaluate, truth=truth_of(raw) if evaluate else None)


def recipe_metrics(raw: pd.DataFrame, params: Params, quantile: float = 0.9) -> dict[str, Any]:
    from movierecs_training.evaluate import evaluate_time_split

    res = evaluate_time_split(prepare(raw, params), params, quantile=quantile, truth=truth_of(raw))
    return {"cutoff": res["cutoff"], "ials_warm": res["ials_warm"], "hybrid_all": res["hybrid_all"], "warm_users": res["warm_users"]}


def _params_of(art_or_manifest: dict[str, Any]) -> Params:
    hp = dict(art_or_manifest.get("hyperparameters", {}))
    known = set(Params.__dataclass_fields__)
    return Params.from_dict({k: v for k, v in hp.items() if k in known})


def evaluate_candidate(candidate_dir: str | Path, current_dir: str | Path | None, interactions_path: str | Path,
                       tolerance: float = DEFAULT_TOLERANCE) -> dict[str, Any]:
    """Refit both recipes on the same earlier 90 % of the interactions and score both on the
    same later 10 % (MAP@10, warm users decides); promote if candidate >= current * (1 - tolerance)."""
    raw = read_raw(interactions_path)
    cand = ModelArtifact.load(candidate_dir)
    cur = ModelArtifact.load(current_dir) if current_dir else None
    return _decide(raw, cand.manifest, cur.manifest if cur else None, tolerance)


def _decide(raw: pd.DataFrame, cand_manifest: dict, cur_manifest: dict | None, tolerance: float) -> dict[str, Any]:
    cm = recipe_metrics(raw, _params_of(cand_manifest))
    out: dict[str, Any] = {"candidate_version": cand_manifest["version"], "candidate_metrics": cm, "tolerance": tolerance,
                           "decided_by": "map@10 of iALS on warm users, time split (the latest 10 % of the interactions held out)"}
    if cur_manifest is None:
        out.update(current_version=None, current_metrics=None, promote=True, reason="no model is promoted yet")
        return out
    um = recipe_metrics(raw, _params_of(cur_manifest))
    c, u = cm["ials_warm"].get("map@10", 0.0), um["ials_warm"].get("map@10", 0.0)
    ok = c >= u * (1 - tolerance)
    out.update(current_version=cur_manifest["version"], current_metrics=um, promote=bool(ok),
               reason=f"candidate map@10 {c:.5f} {'>=' if ok else '<'} current {u:.5f} x (1 - {tolerance})")
    return out


def publish_and_promote(store: ModelStore, local_dir: str | Path, promote: bool = True) -> str:
    version = store.publish(local_dir)
    if promote:
        store.promote(version)
    return version


# -- the steps -----------------------------------------------------------------------
def _store(s3, bucket: str, prefix: str) -> ModelStore:
    return ModelStore(s3, bucket, prefix)


def _download(s3, bucket: str, key: str, dest: Path) -> Path:
    obj = s3.get_object(Bucket=bucket, Key=key)
    dest.write_bytes(obj["Body"].read())
    return dest


def extract(event: Run, *, s3, bucket: str, clickhouse_url: str, prefix: str = "models/",
            database: str | None = None) -> Run:
    """ClickHouse -> training/<run_id>/interactions.parquet; ``database`` default: the URL's."""
    database = database or clickhouse.database_of(clickhouse_url)
    run_id = event.get("run_id") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(4)
    key = f"training/{run_id}/interactions.parquet"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "interactions.parquet"
        client = clickhouse.connect(clickhouse_url)
        try:
            info = extract_interactions(client, path, database)
        finally:
            client.close()
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    return {**event, "run_id": run_id, "interactions_key": key, **info}


def train(event: Run, *, s3, bucket: str, prefix: str = "models/", params: dict | None = None) -> Run:
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        raw = read_raw(_download(s3, bucket, event["interactions_key"], Path(tmp) / "i.parquet"))
        folder = train_from_raw(raw, Path(tmp) / "out", params or event.get("params"))
        version = _store(s3, bucket, prefix).publish(folder)
    return {**event, "candidate_version": version, "train_seconds": round(time.perf_counter() - t0, 3)}


def evaluate(event: Run, *, s3, bucket: str, prefix: str = "models/", tolerance: float = DEFAULT_TOLERANCE) -> Run:
    store = _store(s3, bucket, prefix)
    cand = store.manifest(event["candidate_version"])
    cur_v = store.current_version()
    cur = store.manifest(cur_v) if cur_v else None
    with tempfile.TemporaryDirectory() as tmp:
        raw = read_raw(_download(s3, bucket, event["interactions_key"], Path(tmp) / "i.parquet"))
    decision = _decide(raw, cand, cur, float(event.get("tolerance", tolerance)))
    store.put_evaluation(cand["version"], decision)
    return {**event, **decision}


def promote(event: Run, *, s3, bucket: str, prefix: str = "models/") -> Run:
    doc = _store(s3, bucket, prefix).promote(event["candidate_version"])
    return {**event, "promoted_version": doc["version"], "promoted_at": doc["promoted_at"]}
