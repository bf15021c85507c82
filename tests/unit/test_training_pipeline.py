"""The retraining steps end to end on ML-100K: chDB as ClickHouse, a fake S3 client (unit test)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest

from movierecs_core.stores import clickhouse
from movierecs_serving import ModelArtifact, ModelStore, Recommender
from movierecs_training import data, load, pipeline, train
from test_serving_store import FakeS3

try:  # pyarrow 23+ needs numpy 2, rectools pins numpy 1.26: infra/requirements must pin pyarrow<23
    import pyarrow.parquet  # noqa: F401
except ImportError as e:  # pragma: no cover
    pytest.skip(f"Parquet unavailable ({e}); pin pyarrow<23 in infra/requirements/project.txt", allow_module_level=True)


@pytest.fixture()
def ch_url(tmp_path):
    url = f"chdb://{tmp_path / 'ch'}"
    client = clickhouse.connect(url)
    clickhouse.create_tables(client, "movierecs")
    load.load_clickhouse(client, data.load_dataset("ml-100k").ratings, "movierecs", progress=False)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    likes = pd.DataFrame({"event_id": [str(uuid.uuid4()) for _ in range(3)], "user_id": np.array([5000, 5000, 1], np.uint32),
                          "movie_id": np.array([50, 181, 50], np.uint32), "ts": [now] * 3, "ingested_at": [now] * 3})
    client.insert_df("movierecs.likes", likes)
    client.close()
    return url


def test_extract_train_evaluate_promote(ch_url):
    s3 = FakeS3()
    ev = pipeline.extract({}, s3=s3, bucket="b", clickhouse_url=ch_url)
    assert ev["ratings"] == 100_000 and ev["likes"] == 3 and ev["interactions_key"].startswith("training/")
    raw = pd.read_parquet(__import__("io").BytesIO(s3.objects[("b", ev["interactions_key"])]))
    assert set(pipeline.RAW_COLUMNS) <= set(raw.columns)

    ev = pipeline.train(ev, s3=s3, bucket="b", params={"factors": 16, "iterations": 5})
    store = ModelStore(s3, "b")
    cand = ev["candidate_version"]
    m = store.manifest(cand)
    # user 1 also rated movie 50 (5 stars = weight 1.25 > a like's 1.0): one row, counted as a rating
    assert m["hyperparameters"]["factors"] == 16 and m["data"]["likes"] == 2 and m["data"]["users"] == 944
    assert store.current_version() is None  # train does not promote

    ev = pipeline.evaluate(ev, s3=s3, bucket="b")
    assert ev["promote"] is True and ev["current_version"] is None and ev["candidate_metrics"]["ials_warm"]["map@10"] > 0
    ev = pipeline.promote(ev, s3=s3, bucket="b")
    assert store.current_version() == cand == ev["promoted_version"]

    # the like-only user 5000 is in the model; user 1's like of movie 50 is a training item now
    rec = Recommender(store.load(None, "/tmp/movierecs-test-cache-" + uuid.uuid4().hex))
    assert rec.has_user(5000) and 50 in rec.seen_items(1)
    assert 50 not in [mid for mid, _ in rec.recommend(1, 20).items]

    # a worse recipe is rejected against the promoted one
    ev2 = pipeline.train({**ev}, s3=s3, bucket="b", params={"factors": 2, "iterations": 1, "regularization": 1e5})
    ev2 = pipeline.evaluate(ev2, s3=s3, bucket="b", tolerance=0.0)
    assert ev2["current_version"] == cand and ev2["promote"] is False, ev2["reason"]
    assert store.evaluation(ev2["candidate_version"])["promote"] is False
    assert {v["version"]: v["status"] for v in store.list_versions()} == {cand: "promoted", ev2["candidate_version"]: "rejected"}


def test_evaluate_candidate_on_local_folders(tmp_path):
    ml = data.load_dataset("ml-100k")
    raw = ml.ratings.assign(source="rating", weight=np.float32(1.0))
    path = tmp_path / "i.parquet"
    raw.to_parquet(path)
    a = pipeline.train_from_raw(raw, tmp_path / "m", {"factors": 16, "iterations": 5}, evaluate=False)
    out = pipeline.evaluate_candidate(a, a, path, tolerance=0.0)
    assert out["promote"] is True  # the same recipe is never worse than itself
    assert out["candidate_metrics"] == out["current_metrics"]


def test_extract_applies_feedback_latest_wins_and_leaves_forgotten_users_out(tmp_path):
    """Issue 12: per (user, movie) the latest event wins; an unliked or not-interested movie is
    no training row (its rating neither); a user deleted from ClickHouse is in no row."""
    url = f"chdb://{tmp_path / 'ch'}"
    client = clickhouse.connect(url)
    clickhouse.create_tables(client, "movierecs")
    load.load_clickhouse(client, data.load_dataset("ml-100k").ratings, "movierecs", progress=False)
    t = [datetime(2026, 12, 1, 10, m, tzinfo=timezone.utc) for m in range(6)]
    rows = [["a", 7000, 50, t[0], t[0], "like"], ["b", 7000, 50, t[1], t[1], "unlike"],        # taken back
            ["c", 7000, 181, t[0], t[0], "unlike"], ["d", 7000, 181, t[2], t[2], "like"],      # liked again
            ["e", 7000, 1, t[3], t[3], "like"],
            ["f", 1, 50, t[4], t[4], "not_interested"]]                                        # a rated movie
    client.insert("movierecs.likes", rows, column_names=clickhouse.LIKE_COLUMNS)
    assert clickhouse.count_user_rows(client, 2)["ratings"] > 0
    clickhouse.delete_user(client, 2)
    frame = pipeline.extract_frame(client)
    client.close()
    likes = frame[frame["source"] == "like"]
    assert sorted(map(tuple, likes[["user_id", "movie_id"]].to_numpy().tolist())) == [(7000, 1), (7000, 181)]
    assert not ((frame["user_id"] == 1) & (frame["movie_id"] == 50)).any()  # user 1's rating of 50 left out
    assert ((frame["user_id"] == 1) & (frame["movie_id"] != 50)).any()
    assert not (frame["user_id"] == 2).any()
