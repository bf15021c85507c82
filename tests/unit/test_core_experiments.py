"""Unit tests of experiments: request validation, sticky assignment close to the share, the
confidence sequence (covers the truth, shrinks with data, valid under repeated looks in an
A/A simulation), the stopping rules, and the online metric's Wilson interval."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from movierecs_core import experiments as ex
from movierecs_core import online
from movierecs_core.errors import ApiError

V1, V2 = "20261127T000000Z-00000001", "20261127T010000Z-00000002"
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def exp(**kw) -> ex.Experiment:
    base = dict(experiment_id="exp-0123456789ab", control=V1, candidate=V2, share=0.3, min_impressions=100,
                max_hours=24.0, alpha=0.05, status="running", created_at=NOW)
    return ex.Experiment(**{**base, **kw})


def test_requests_are_validated_with_clear_messages():
    row = ex.new_experiment({"control": V1, "candidate": V2, "share": 0.2}, {V1, V2}, NOW)
    assert row["share"] == 0.2 and row["experiment_id"].startswith("exp-") and row["created_at"] == NOW
    assert ex.new_experiment({"control": V1, "candidate": V1}, {V1}, NOW)["candidate"] == V1  # A/A is allowed
    for body, status, words in (
        ({"control": V1, "candidate": "20991231T000000Z-deadbeef"}, 404, "does not exist"),
        ({"control": V1, "candidate": "latest"}, 400, "must be a model version"),
        ({"control": V1, "candidate": V2, "share": 0}, 400, "strictly between 0 and 1"),
        ({"control": V1, "candidate": V2, "share": 1.5}, 400, "strictly between 0 and 1"),
        ({"control": V1, "candidate": V2, "share": "half"}, 400, "must be a number"),
        ({"control": V1, "candidate": V2, "min_impressions": 2.5}, 400, "integer"),
        ({"control": V1, "candidate": V2, "colour": "red"}, 400, "unknown field"),
        ([], 400, "JSON object"),
    ):
        with pytest.raises(ApiError) as e:
            ex.new_experiment(body, {V1, V2}, NOW)
        assert e.value.status == status and words in e.value.message, body
    assert ex.stop_request({"decision": "keep"}) == "keep"
    with pytest.raises(ApiError):
        ex.stop_request({"decision": "maybe"})
    with pytest.raises(ApiError):
        ex.check_id("../etc")


def test_assignment_is_sticky_and_close_to_the_share():
    e = exp(share=0.3)
    arms = [e.arm(u) for u in range(1, 20001)]
    assert arms == [e.arm(u) for u in range(1, 20001)]
    assert abs(arms.count("candidate") / len(arms) - 0.3) < 0.015
    other = exp(experiment_id="exp-ba9876543210")  # another experiment reshuffles users
    assert sum(a != other.arm(u) for u, a in enumerate(arms, 1)) > 4000


def _arms(rates: dict[str, float], users: int, share: float, rng: random.Random, lists: int = 3) -> dict[str, ex.ArmStats]:
    acc = {a: [0, 0, 0, 0.0, 0.0] for a in ex.ARMS}
    for _ in range(users):
        arm = "candidate" if rng.random() < share else "control"
        k = sum(rng.random() < rates[arm] for _ in range(lists))
        r = k / lists
        a = acc[arm]
        a[0] += 1; a[1] += lists; a[2] += k; a[3] += r; a[4] += r * r
    return {arm: ex.ArmStats(*v) for arm, v in acc.items()}


def test_the_confidence_sequence_covers_the_difference_and_shrinks():
    rng = random.Random(1)
    widths = []
    for users in (500, 5000, 50000):
        a = _arms({"control": 0.10, "candidate": 0.13}, users, 0.5, rng)
        diff, (lo, hi) = ex.confidence_sequence(a["control"], a["candidate"], 0.5, 0.05, 1000)
        assert lo < 0.03 < hi
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2]


def test_an_aa_test_looked_at_every_step_rarely_declares_a_winner():
    """Repeated looks: the always-valid interval keeps false winners under alpha."""
    rng = random.Random(7)
    false_winners = 0
    runs = 60
    for _ in range(runs):
        acc = {a: [0, 0, 0, 0.0, 0.0] for a in ex.ARMS}
        for step in range(20):  # 20 looks of 100 users each
            for arm, stats in _arms({"control": 0.1, "candidate": 0.1}, 100, 0.5, rng).items():
                acc[arm] = [x + y for x, y in zip(acc[arm], (stats.users, stats.impressions, stats.converted, stats.s1, stats.s2))]
            cs = ex.confidence_sequence(ex.ArmStats(*acc["control"]), ex.ArmStats(*acc["candidate"]), 0.5, 0.05, 600)
            if cs and (cs[1][0] > 0 or cs[1][1] < 0):
                false_winners += 1
                break
    assert false_winners / runs <= 0.1  # alpha 0.05 plus simulation noise


def test_the_stopping_rules():
    rng = random.Random(3)
    better = _arms({"control": 0.05, "candidate": 0.25}, 4000, 0.3, rng)
    worse = _arms({"control": 0.25, "candidate": 0.05}, 4000, 0.3, rng)
    same = _arms({"control": 0.1, "candidate": 0.1}, 300, 0.3, rng)
    e = exp(min_impressions=100)
    assert ex.verdict(e, better["control"], better["candidate"], NOW).decision == "promote"
    assert ex.verdict(e, worse["control"], worse["candidate"], NOW).decision == "keep"
    running = ex.verdict(e, same["control"], same["candidate"], NOW + timedelta(hours=1))
    assert running.decision is None and "running" in running.reason
    late = NOW + timedelta(hours=25)
    assert ex.verdict(e, same["control"], same["candidate"], late).decision == "promote"  # not worse
    assert ex.verdict(exp(min_impressions=10**6), same["control"], same["candidate"], late).decision == "keep"
    empty = ex.verdict(e, ex.ArmStats(), ex.ArmStats(), late)
    assert empty.decision == "keep" and "not enough" in empty.reason
    assert ex.report(e, better, NOW)["rules"]["decision"] == "promote"


def test_the_running_experiment_is_cached_and_survives_a_failed_read():
    t = [0.0]
    calls = []

    def read():
        calls.append(1)
        if len(calls) == 3:
            raise ConnectionError("PostgreSQL down")
        return {**exp().to_json(), "created_at": NOW, "ended_at": None}

    r = ex.Running(read, ttl=2.0, clock=lambda: t[0])
    assert r.get().experiment_id == "exp-0123456789ab" and r.get() is not None and len(calls) == 1
    t[0] = 3.0
    r.get()
    t[0] = 6.0
    assert r.get() is not None and len(calls) == 3  # the failed read keeps the last known one


def test_wilson_interval_and_online_rows():
    lo, hi = online.wilson(0, 10)
    assert lo == 0 and 0.2 < hi < 0.35
    lo, hi = online.wilson(50, 100)
    assert lo < 0.5 < hi and hi - lo < 0.2
    rows = [(V1, "", "personal", NOW, 10, 2, 3), (V1, "", "popular", NOW, 5, 0, 0),
            (V2, "candidate", "personal", NOW + timedelta(hours=1), 4, 1, 1)]
    out = online.by_version(rows, 1800)
    v1, v2 = out["versions"]
    assert v1["model_version"] == V1 and v1["impressions"] == 15 and v1["converted"] == 2 and v1["likes"] == 3
    assert v1["by_strategy"]["personal"]["rate"] == 0.2 and v2["by_arm"]["candidate"]["impressions"] == 4
    assert [h["t"] for h in v2["hourly"]] == ["2026-12-03T13:00:00Z"] and out["window_seconds"] == 1800
