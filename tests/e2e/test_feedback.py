"""End to end (issue 12): feedback types and forgetting a user on the running stack: API
Gateway -> like_ingest -> Kafka -> event source mapping -> consumer -> ClickHouse and
PostgreSQL, and their effect on GET /users/{id}/likes and GET /recommendations.

- an unknown type is a 400 at POST /likes and POST /feedback, and nothing reaches the topic;
- unlike: the movie leaves the likes and the fold-in within the contract's 5 s (the user's
  list equals that of a user who only liked the others);
- not_interested: never again in that user's lists, across pages and filters;
- DELETE /users/{id}: refused without the admin key; with it the user is served as new at
  once, no row of theirs is left in either store, and a Kafka record produced before the
  deletion (replayed straight to the topic) does not bring them back; a like sent after the
  deletion is a new user's;
- the next trained model version lacks a deleted user (its id map, read from S3).
"""
from __future__ import annotations

import json
import random
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from movierecs_core.stores import clickhouse as chstore, postgres as pgstore

pytestmark = pytest.mark.timeout(600)
FRESH = 5.0  # the contract: feedback visible to the next request within 5 s


def fresh_user() -> int:
    return random.randint(1_000_000_000, 2_000_000_000 - 1)


def movielens_user() -> int:
    """A MovieLens user no other test uses (user 1 is the e2e suite's known user)."""
    return random.randint(100, 6000)


def post(http, api: str, path: str, body: dict[str, Any]) -> requests.Response:
    return http.post(f"{api}{path}", data=json.dumps(body), timeout=30)


def feedback(http, api: str, user: int, movie: int, kind: str) -> str:
    r = post(http, api, "/feedback", {"user_id": user, "movie_id": movie, "type": kind})
    assert r.status_code == 202, r.text
    return r.json()["event_id"]


def recs(http, api: str, user: int, k: int = 10, **params: Any) -> dict[str, Any]:
    r = http.get(f"{api}/recommendations", params={"user_id": user, "k": k, **params}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def liked(http, api: str, user: int) -> list[int]:
    r = http.get(f"{api}/users/{user}/likes", timeout=30)
    assert r.status_code == 200, r.text
    return [i["movie_id"] for i in r.json()["items"]]


def ids(body: dict[str, Any]) -> list[int]:
    return [i["movie_id"] for i in body["items"]]


def in_serving_state(pg, user: int, event_ids: list[str]) -> int:
    return len(pg.run("SELECT event_id FROM user_events WHERE user_id = :u AND event_id = ANY(CAST(:e AS text[]))",
                      u=user, e=event_ids))


# ---------------------------------------------------------------------------- unknown type
def test_an_unknown_type_is_a_400_everywhere_and_nothing_is_produced(api, http, ch, pg, popular, wait, stored):
    user = fresh_user()
    bad = [("/likes", {"type": "dislike"}), ("/feedback", {"type": "dislike"}), ("/feedback", {}),
           ("/feedback", {"type": "LIKE"}), ("/likes", {"type": "unlike"}), ("/feedback", {"type": 1})]
    bad_ids = []
    for path, extra in bad:
        eid = "bad-" + uuid.uuid4().hex
        bad_ids.append(eid)
        r = post(http, api, path, {"user_id": user, "movie_id": popular[0], "event_id": eid, **extra})
        assert r.status_code == 400, (path, extra, r.status_code, r.text)
        assert "type" in r.json()["error"]
    # a valid event of the same user (same key, same partition, after them in the log)
    marker = post(http, api, "/likes", {"user_id": user, "movie_id": popular[1]}).json()["event_id"]
    assert wait(lambda: in_serving_state(pg, user, [marker]) == 1, timeout=20)
    assert stored(bad_ids) == 0 and in_serving_state(pg, user, bad_ids) == 0
    dead = ch.query("SELECT count() FROM dead_letters WHERE key = {k:String}", parameters={"k": str(user)})
    assert dead.result_rows[0][0] == 0, "a refused event reached the topic"
    assert liked(http, api, user) == [popular[1]]


# ---------------------------------------------------------------------------- unlike
def test_unlike_takes_the_movie_out_of_the_likes_and_the_fold_in(api, http, popular, wait):
    user, twin = fresh_user(), fresh_user()  # twin likes only the four kept movies
    movies = popular[:5]
    for m in movies:
        assert post(http, api, "/likes", {"user_id": user, "movie_id": m}).status_code == 202
    for m in movies[:4]:
        assert post(http, api, "/likes", {"user_id": twin, "movie_id": m}).status_code == 202
    assert wait(lambda: sorted(liked(http, api, user)) == sorted(movies), timeout=20)
    assert wait(lambda: sorted(liked(http, api, twin)) == sorted(movies[:4]), timeout=20)
    before = recs(http, api, user, 20)
    assert before["strategy"] == "fold_in" and not set(ids(before)) & set(movies)

    feedback(http, api, user, movies[4], "unlike")
    acked = time.monotonic()
    assert wait(lambda: movies[4] not in liked(http, api, user), timeout=FRESH, interval=0.1), \
        "the unliked movie was still in GET /users/{id}/likes 5 s after the 202"
    assert time.monotonic() - acked <= FRESH + 1
    assert sorted(liked(http, api, user)) == sorted(movies[:4])
    after = recs(http, api, user, 20)
    expect = recs(http, api, twin, 20)
    assert after["strategy"] == "fold_in"
    assert ids(after) == ids(expect) and ids(after) != ids(before)
    assert [i["score"] for i in after["items"]] == [i["score"] for i in expect["items"]]
    cited = {r.get("movie_id") for i in after["items"] for r in i["reasons"]}
    assert movies[4] not in cited

    # liked again later: the latest event wins
    assert post(http, api, "/likes", {"user_id": user, "movie_id": movies[4]}).status_code == 202
    assert wait(lambda: sorted(liked(http, api, user)) == sorted(movies), timeout=FRESH + 5)


# ---------------------------------------------------------------------------- not interested
def test_not_interested_is_never_listed_again_across_pages_and_filters(api, http, pg, wait):
    user = movielens_user()
    first = recs(http, api, user, 10)
    assert first["strategy"] == "personal"
    hidden = ids(first)[:3]
    events = [feedback(http, api, user, m, "not_interested") for m in hidden]
    assert wait(lambda: not set(ids(recs(http, api, user, 10))) & set(hidden), timeout=FRESH, interval=0.1)
    assert wait(lambda: in_serving_state(pg, user, events) == 3, timeout=10)
    genres = ",".join(sorted({g for i in first["items"][:3] for g in i["genres"]}))
    for params in [{}, {"include_genres": genres}, {"diversity": "0.5"}, {"year_min": "1950"}]:
        seen: list[int] = []
        cursor = None
        for _ in range(5):  # five pages of 20
            body = recs(http, api, user, 20, **params, **({"cursor": cursor} if cursor else {}))
            seen += ids(body)
            cursor = body.get("next_cursor")
            if not cursor:
                break
        assert len(seen) >= 60 and not set(seen) & set(hidden), params
    assert not set(liked(http, api, user)) & set(hidden)  # not_interested is no like


def test_not_interested_leaves_the_similar_list_of_the_named_user(api, http, popular, wait):
    user, seed = fresh_user(), popular[0]

    def similar(**params: Any) -> list[int]:
        r = http.get(f"{api}/movies/{seed}/similar", params={"k": 10, **params}, timeout=30)
        assert r.status_code == 200, r.text
        return [i["movie_id"] for i in r.json()["items"]]

    plain = similar()
    assert similar(user_id=user) == plain
    for m in plain[:2]:
        feedback(http, api, user, m, "not_interested")
    assert wait(lambda: not set(similar(user_id=user)) & set(plain[:2]), timeout=FRESH, interval=0.1)
    mine = similar(user_id=user)
    assert len(mine) == 10 and mine[:8] == plain[2:]
    assert similar() == plain  # without the user: unchanged
    assert http.get(f"{api}/movies/{seed}/similar", params={"user_id": "0"}, timeout=30).status_code == 400


# ---------------------------------------------------------------------------- forget a user
def test_delete_user_needs_the_admin_key(api, http, pg):
    user = movielens_user()
    before = pgstore.count_user_rows(pg, user)
    assert before["user_ratings"] == 1
    for headers in ({}, {"x-api-key": "not-the-key"}):
        r = http.delete(f"{api}/users/{user}", headers=headers, timeout=30)
        assert r.status_code in (401, 403), r.text
    assert pgstore.count_user_rows(pg, user) == before
    assert recs(http, api, user, 5)["strategy"] == "personal"


def replay_old_record(endpoints: dict[str, Any], user: int, movie: int, produced: datetime) -> tuple[str, int, str]:
    """Produce a like of ``user`` straight to the topic as a record created at ``produced``
    (an old message replayed or delivered late), then a marker like of another user on the
    same partition; returns (old event id, marker user, marker event id)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=[endpoints["kafka"]], acks="all")
    try:
        old = "old-" + uuid.uuid4().hex
        value = {"event_id": old, "user_id": user, "movie_id": movie, "type": "like",
                 "ts": produced.strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        meta = producer.send("interactions", key=str(user).encode(), value=json.dumps(value).encode(),
                             timestamp_ms=int(produced.timestamp() * 1000)).get(timeout=10)
        other, marker = fresh_user(), "marker-" + uuid.uuid4().hex
        value = {"event_id": marker, "user_id": other, "movie_id": movie, "type": "like",
                 "ts": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        producer.send("interactions", key=str(other).encode(), value=json.dumps(value).encode(),
                      partition=meta.partition).get(timeout=10)
        return old, other, marker
    finally:
        producer.close()


def test_delete_user_serves_them_as_new_at_once_and_nothing_brings_them_back(
        api, http, admin_key, endpoints, ch, pg, popular, wait):
    user = movielens_user()
    extra = [feedback(http, api, user, popular[0], "like"), feedback(http, api, user, popular[1], "not_interested")]
    assert wait(lambda: in_serving_state(pg, user, extra) == 2, timeout=20)
    assert recs(http, api, user, 5)["strategy"] == "personal" and liked(http, api, user) == [popular[0]]
    rows = chstore.count_user_rows(ch, user)
    assert rows["ratings"] >= 20 and rows["likes"] == 2

    r = http.delete(f"{api}/users/{user}", headers={"x-api-key": admin_key}, timeout=60)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == user and body["deleted"]["clickhouse"]["ratings"] == rows["ratings"]
    assert body["deleted"]["postgres"]["user_events"] == 2 and body["deleted"]["postgres"]["user_ratings"] == 1
    deleted_at = datetime.fromisoformat(body["deleted_at"].replace("Z", "+00:00"))

    # from the answer on: a new user, no likes, no rows anywhere
    now = recs(http, api, user, 10)
    assert now["strategy"] == "popular" and ids(now) == popular[:10]
    assert liked(http, api, user) == []
    assert pgstore.count_user_rows(pg, user) == {"user_events": 0, "user_ratings": 0, "users": 0}
    assert chstore.count_user_rows(ch, user) == {"ratings": 0, "likes": 0, "dead_letters": 0}

    # an old record (produced before the deletion) arrives now: stored nowhere
    old, other, marker = replay_old_record(endpoints, user, popular[2], deleted_at - timedelta(seconds=30))
    assert wait(lambda: in_serving_state(pg, other, [marker]) == 1, timeout=20), "the marker was never consumed"
    assert in_serving_state(pg, user, [old]) == 0 and chstore.count_user_rows(ch, user)["likes"] == 0
    assert recs(http, api, user, 10)["strategy"] == "popular" and liked(http, api, user) == []

    # the same id liking again after the deletion is a new user
    again = feedback(http, api, user, popular[3], "like")
    assert wait(lambda: liked(http, api, user) == [popular[3]], timeout=FRESH + 5)
    assert recs(http, api, user, 10)["strategy"] == "fold_in"
    assert in_serving_state(pg, user, [again]) == 1

    # the ops series count it (issue 12, part 4)
    stats = http.get(f"{api}/admin/stats", params={"minutes": 5}, headers={"x-api-key": admin_key}, timeout=30)
    assert stats.status_code == 200, stats.text
    s = stats.json()
    assert sum(p["v"] for p in s["deletions"]) >= 1 and len(s["deletions"]) == 5
    assert sum(p["v"] for p in s["feedback"]["not_interested"]) >= 1
    assert sum(p["v"] for p in s["feedback"]["like"]) >= 1


# ---------------------------------------------------------------------------- next model
def _aws(api: str) -> dict[str, Any]:
    import boto3

    gateway = re.match(r"(https?://[^/]+)", api).group(1)
    kw = dict(endpoint_url=gateway, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    outputs = {o["OutputKey"]: o["OutputValue"]
               for o in boto3.client("cloudformation", **kw).describe_stacks(StackName="movierecs")["Stacks"][0]["Outputs"]}
    return {"s3": boto3.client("s3", **kw), "sfn": boto3.client("stepfunctions", **kw), "bucket": outputs["ModelBucketName"],
            "state_machine": outputs["StateMachineArn"]}


def train_candidate(aws: dict[str, Any], label: str) -> str:
    """Run the retraining workflow to a published candidate that is *not* promoted (2 factors,
    1 iteration: the evaluate step finds it worse), so the served model, which other tests of
    the session rely on, does not change; returns the candidate version."""
    from movierecs_serving import ModelStore

    before = ModelStore(aws["s3"], aws["bucket"]).current_version()
    arn = aws["sfn"].start_execution(stateMachineArn=aws["state_machine"], name=f"e2e-{label}-{uuid.uuid4().hex[:8]}",
                                     input=json.dumps({"trigger": "e2e", "hyperparameters": {"factors": 2, "iterations": 1}})
                                     )["executionArn"]
    deadline = time.monotonic() + 400
    while (d := aws["sfn"].describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the retrain did not finish in time"
        time.sleep(3)
    candidate = None
    for e in aws["sfn"].get_execution_history(executionArn=arn, maxResults=1000)["events"]:
        details = e.get("stateExitedEventDetails")
        if details and details["name"] == "Train":
            candidate = json.loads(details["output"])["run"]["candidate_version"]
    assert candidate, f"the retrain trained no candidate ({d['status']}: {d.get('error')} {str(d.get('cause'))[:300]})"
    assert ModelStore(aws["s3"], aws["bucket"]).current_version() == before, "the e2e candidate was promoted"
    return candidate


def test_the_next_trained_model_lacks_a_deleted_user(api, http, admin_key, tmp_path):
    from movierecs_serving import ModelStore

    user, kept = movielens_user(), 1
    aws = _aws(api)
    store = ModelStore(aws["s3"], aws["bucket"])
    current = store.load(store.current_version(), str(tmp_path / "current"))
    if user not in set(current.user_ids.tolist()):
        user = next(int(u) for u in current.user_ids.tolist()[200:] if u != kept)
    r = http.delete(f"{api}/users/{user}", headers={"x-api-key": admin_key}, timeout=60)
    assert r.status_code == 200, r.text

    candidate = train_candidate(aws, "forget")
    art = store.load(candidate, str(tmp_path / "candidate"))  # checksums verified, no pickle
    users = set(art.user_ids.tolist())
    assert user not in users and kept in users and len(users) >= 5000
    manifest = store.manifest(candidate)
    assert "user_ids" in json.dumps(manifest)  # the manifest describes the id map the check read
