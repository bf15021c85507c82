"""End-to-end (issue 13) on the real stack: impressions of served lists arrive in ClickHouse
through their own Kafka topic and mapping; a like of a shown movie counts for the right version
and arm; assignment is sticky and close to the share; experiments end by hand or by their
stopping rules (the scheduled function) with exactly one version served to everyone; bad
requests are clear 4xx; the admin routes refuse without the key.

A second model version is a copy of the promoted one published under a new version id (same
arrays, so the test needs no training run)."""
from __future__ import annotations

import json
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import requests

USERS = range(1_700_000_000, 1_700_000_300)


@pytest.fixture(scope="module")
def aws(endpoints) -> dict[str, Any]:
    import boto3

    m = re.match(r"(https?://[^/]+)", endpoints["api"])
    kw = dict(endpoint_url=m.group(1), region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    outputs = {o["OutputKey"]: o["OutputValue"]
               for o in boto3.client("cloudformation", **kw).describe_stacks(StackName="movierecs")["Stacks"][0]["Outputs"]}
    return {"s3": boto3.client("s3", **kw), "lambda": boto3.client("lambda", **kw), "sfn": boto3.client("stepfunctions", **kw),
            "bucket": outputs["ModelBucketName"]}


@pytest.fixture(scope="module")
def admin(api, admin_key):
    s = requests.Session()
    s.headers.update({"x-api-key": admin_key, "Content-Type": "application/json"})

    def call(method: str, path: str, body: Any = None) -> requests.Response:
        return s.request(method, f"{api}{path}", data=None if body is None else json.dumps(body), timeout=60)
    return call


def _current(admin) -> str:
    return admin("GET", "/admin/models").json()["current"]


@pytest.fixture(scope="module")
def versions(admin, aws, tmp_path_factory, model_version) -> tuple[str, str]:
    """(the promoted version, a copy of it under a new version id), the promoted one restored after."""
    from movierecs_serving import ModelStore, new_version

    store = ModelStore(aws["s3"], aws["bucket"])
    current = _current(admin)
    art = store.load(current, tmp_path_factory.mktemp("cache"))
    copy = tmp_path_factory.mktemp("copy") / "artifact"
    shutil.copytree(art.path, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["version"] = new_version()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    candidate = store.publish(copy)
    yield current, candidate
    running = [e for e in admin("GET", "/admin/experiments").json()["items"] if e["status"] == "running"]
    for e in running:
        admin("POST", f"/admin/experiments/{e['experiment_id']}/stop", {"decision": "keep"})
    assert admin("POST", "/admin/reload", {"version": current}).status_code == 200


@pytest.fixture()
def experiment(admin, versions):
    """Start an experiment; always ended again (keep) so no other test sees arms."""
    started: list[str] = []

    def start(**body: Any) -> dict[str, Any]:
        r = admin("POST", "/admin/experiments", body)
        assert r.status_code == 201, r.text
        started.append(r.json()["experiment_id"])
        time.sleep(2.5)  # every recommend environment re-reads the running experiment within 2 s
        return r.json()
    yield start
    for eid in started:
        r = admin("GET", f"/admin/experiments/{eid}")
        if r.json()["status"] == "running":
            admin("POST", f"/admin/experiments/{eid}/stop", {"decision": "keep"})


def _impression(ch, user: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = ch.query("SELECT request_id, model_version, arm, strategy, movie_ids, listing FROM impressions FINAL "
                        "WHERE user_id = {u:UInt32} ORDER BY ts", parameters={"u": user}).result_rows
        if rows:
            return rows
        time.sleep(0.2)
    return []


def test_impressions_of_a_served_list_arrive_in_clickhouse(api, http, ch, popular):
    user = random.randint(1_800_000_000, 1_899_999_999)
    body = http.get(f"{api}/recommendations", params={"user_id": user, "k": 7}, timeout=30).json()
    rows = _impression(ch, user)
    assert len(rows) == 1, rows
    _, version, arm, strategy, movies, listing = rows[0]
    assert (version, arm, strategy, listing) == (body["model_version"], "", "popular", "recommendations")
    assert list(movies) == [i["movie_id"] for i in body["items"]]
    http.get(f"{api}/movies/{popular[0]}/similar", params={"k": 3}, timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not ch.query(
            "SELECT count() FROM impressions WHERE listing = 'similar' AND source_movie = {m:UInt32}",
            parameters={"m": popular[0]}).result_rows[0][0]:
        time.sleep(0.2)
    assert ch.query("SELECT count() FROM impressions WHERE listing = 'similar' AND source_movie = {m:UInt32}",
                    parameters={"m": popular[0]}).result_rows[0][0] >= 1


def test_assignment_is_sticky_and_close_to_the_share(api, http, experiment, versions):
    control, candidate = versions
    exp = experiment(control=control, candidate=candidate, share=0.3)
    arms = {}
    for u in USERS:
        b = http.get(f"{api}/recommendations", params={"user_id": u, "k": 1}, timeout=30).json()
        assert b["experiment_id"] == exp["experiment_id"]
        assert b["model_version"] == (candidate if b["arm"] == "candidate" else control)
        arms[u] = b["arm"]
    share = sum(a == "candidate" for a in arms.values()) / len(arms)
    assert 0.2 < share < 0.4, share
    for u in list(USERS)[:30]:  # sticky
        assert http.get(f"{api}/recommendations", params={"user_id": u, "k": 1}, timeout=30).json()["arm"] == arms[u]


def test_a_like_of_a_shown_movie_counts_for_its_version_and_arm(api, http, admin, experiment, versions, wait):
    control, candidate = versions
    exp = experiment(control=control, candidate=candidate, share=0.5, min_impressions=10**6)
    liked = {}
    for arm in ("control", "candidate"):
        user = next(u for u in (random.randint(1_900_000_000, 1_999_999_999) for _ in range(100))
                    if http.get(f"{api}/recommendations", params={"user_id": u, "k": 1}, timeout=30).json()["arm"] == arm)
        shown = http.get(f"{api}/recommendations", params={"user_id": user, "k": 5}, timeout=30).json()
        assert shown["arm"] == arm
        r = http.post(f"{api}/likes", json={"user_id": user, "movie_id": shown["items"][2]["movie_id"]}, timeout=30)
        assert r.status_code == 202
        liked[arm] = user

    def counted():
        rep = admin("GET", f"/admin/experiments/{exp['experiment_id']}").json()
        return rep if all(rep["arms"][a]["converted"] >= 1 for a in liked) else None

    rep = wait(counted, timeout=20.0, interval=0.5)
    assert rep, admin("GET", f"/admin/experiments/{exp['experiment_id']}").json()
    assert rep["arms"]["candidate"]["version"] == candidate and rep["arms"]["control"]["version"] == control
    assert all(rep["arms"][a]["impressions"] >= 2 for a in liked)
    assert rep["rules"]["decision"] is None and "running" in rep["rules"]["reason"]
    online = {v["model_version"]: v for v in admin("GET", "/admin/stats?minutes=10").json()["online"]["versions"]}
    assert online[candidate]["by_arm"]["candidate"]["converted"] >= 1
    assert online[control]["by_arm"]["control"]["converted"] >= 1


def test_stopping_by_hand_serves_one_version_to_everyone(api, http, admin, experiment, versions):
    control, candidate = versions
    exp = experiment(control=control, candidate=candidate, share=0.5)
    r = admin("POST", f"/admin/experiments/{exp['experiment_id']}/stop", {"decision": "promote"})
    assert r.status_code == 200 and r.json()["status"] == "stopped" and r.json()["decision"] == "promote"
    assert _current(admin) == candidate
    time.sleep(2.5)
    bodies = [http.get(f"{api}/recommendations", params={"user_id": u, "k": 1}, timeout=30).json() for u in list(USERS)[:20]]
    assert {b["model_version"] for b in bodies} == {candidate} and not any("arm" in b for b in bodies)
    again = admin("POST", f"/admin/experiments/{exp['experiment_id']}/stop", {"decision": "keep"})
    assert again.status_code == 409 and "not running" in again.json()["error"]
    assert admin("POST", "/admin/reload", {"version": control}).status_code == 200


def test_the_scheduled_check_concludes_by_the_stopping_rules(api, http, admin, aws, experiment, versions):
    control, candidate = versions
    exp = experiment(control=control, candidate=candidate, share=0.5, min_impressions=10, max_hours=0.001)
    time.sleep(4)  # past max_hours (3.6 s) with no impressions: nothing learnt, the control stays
    out = json.loads(aws["lambda"].invoke(FunctionName="movierecs-experiments", Payload=b"{}")["Payload"].read())
    assert out["concluded"]["experiment_id"] == exp["experiment_id"] and out["concluded"]["decision"] == "keep", out
    rep = admin("GET", f"/admin/experiments/{exp['experiment_id']}").json()
    assert rep["status"] == "concluded" and "not enough evidence" in rep["reason"]
    assert _current(admin) == control
    out = json.loads(aws["lambda"].invoke(FunctionName="movierecs-experiments", Payload=b"{}")["Payload"].read())
    assert out == {"running": None}


def test_bad_experiment_requests_are_clear_4xx(api, admin, experiment, versions):
    control, candidate = versions
    for body, status, words in (
        ({"control": control, "candidate": "20991231T000000Z-deadbeef"}, 404, "does not exist"),
        ({"control": control, "candidate": candidate, "share": 0}, 400, "strictly between 0 and 1"),
        ({"control": control, "candidate": candidate, "share": 1}, 400, "strictly between 0 and 1"),
        ({"control": "latest", "candidate": candidate}, 400, "model version"),
    ):
        r = admin("POST", "/admin/experiments", body)
        assert r.status_code == status and words in r.json()["error"], (body, r.text)
    exp = experiment(control=control, candidate=candidate, share=0.2)
    r = admin("POST", "/admin/experiments", {"control": control, "candidate": candidate})
    assert r.status_code == 409 and exp["experiment_id"] in r.json()["error"]
    assert admin("GET", "/admin/experiments/exp-000000000000").status_code == 404
    assert admin("GET", "/admin/experiments/nope").status_code == 400
    r = admin("POST", f"/admin/experiments/{exp['experiment_id']}/stop", {"decision": "maybe"})
    assert r.status_code == 400 and "promote" in r.json()["error"]


def test_experiment_routes_refuse_without_the_admin_key(api, versions):
    for method, path in (("POST", "/admin/experiments"), ("GET", "/admin/experiments"),
                         ("GET", "/admin/experiments/exp-000000000000"),
                         ("POST", "/admin/experiments/exp-000000000000/stop")):
        for headers in ({}, {"x-api-key": "wrong-key-0123456789"}):
            r = requests.request(method, f"{api}{path}", headers=headers, json={}, timeout=30)
            assert r.status_code in (401, 403), (method, path, headers, r.status_code)


def test_a_canary_retrain_starts_an_experiment_and_ends_with_one_served_version(api, admin, aws, versions):
    control = _current(admin)
    r = admin("POST", "/admin/retrain", {"canary": {"share": 0.5, "min_impressions": 10, "max_hours": 0.001}})
    assert r.status_code == 202, r.text
    arn = r.json()["execution_arn"]
    deadline = time.monotonic() + 600
    while (d := aws["sfn"].describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the retrain did not finish in 10 min"
        time.sleep(2)
    assert d["status"] == "SUCCEEDED", d
    out = json.loads(d["output"])["run"]
    assert out["promoted_version"] == control and out["canary_experiment_id"]
    assert _current(admin) == control  # the pointer stays while the canary runs
    rep = admin("GET", f"/admin/experiments/{out['canary_experiment_id']}").json()
    assert rep["status"] == "running" and rep["control"] == control and rep["candidate"] == out["candidate_version"]
    time.sleep(4)  # past max_hours
    done = json.loads(aws["lambda"].invoke(FunctionName="movierecs-experiments", Payload=b"{}")["Payload"].read())
    decision = done["concluded"]["decision"]
    assert done["concluded"]["experiment_id"] == out["canary_experiment_id"] and decision in ("promote", "keep")
    assert _current(admin) == (out["candidate_version"] if decision == "promote" else control)
    assert not [e for e in admin("GET", "/admin/experiments").json()["items"] if e["status"] == "running"]
    assert admin("POST", "/admin/retrain", {"canary": "yes"}).status_code == 400
