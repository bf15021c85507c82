"""Unit tests of the admin logic: key check, reload, models, retrain, stats and error lines."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from movierecs_core import admin
from movierecs_core.errors import ApiError
from movierecs_serving import ArtifactError, ModelNotFoundError, is_valid_version

V1 = "20261127T000000Z-00000001"
V2 = "20261127T010000Z-00000002"


def test_key_check():
    admin.check_key("s3cret-key-0123456789", "s3cret-key-0123456789")
    for provided, status in [(None, 401), ("", 401), ("wrong", 403)]:
        with pytest.raises(ApiError) as e:
            admin.check_key(provided, "s3cret-key-0123456789")
        assert e.value.status == status
    with pytest.raises(ApiError) as e:
        admin.check_key("anything", "")
    assert e.value.status == 403


class Store:
    NotFound, Invalid, is_valid_version = ModelNotFoundError, ArtifactError, staticmethod(is_valid_version)

    def __init__(self, versions, current=V1, corrupt=()):
        self.versions, self.current, self.corrupt, self.promoted = versions, current, corrupt, []

    def current_version(self):
        return self.current

    def load(self, version, cache_dir):
        if version not in self.versions:
            raise ModelNotFoundError(version)
        if version in self.corrupt:
            raise ArtifactError("sha256 mismatch")
        return object()

    def promote(self, version):
        self.promoted.append(version)
        self.current = version

    def list_versions(self):
        return [{"version": v, "created_at": "t", "promoted": v == self.current, "status": "available",
                 "metrics": {"map10": 0.1}, "data": {}} for v in sorted(self.versions, reverse=True)]


def test_reload_moves_pointer_after_verification():
    s = Store({V1, V2})
    assert admin.reload(s, V2, "/tmp/x") == {"model_version": V2}
    assert s.promoted == [V2]
    assert admin.reload(s, None, "/tmp/x") == {"model_version": V2}


@pytest.mark.parametrize("version,status", [("20990101T000000Z-deadbeef", 404), ("nonsense", 400), (12, 400), (V2, 409)])
def test_reload_refusals(version, status):
    s = Store({V1, V2}, corrupt={V2})
    with pytest.raises(ApiError) as e:
        admin.reload(s, version, "/tmp/x")
    assert e.value.status == status
    assert s.promoted == []


def test_models_shape():
    out = admin.models(Store({V1, V2}))
    assert out["current"] == V1
    assert [v["version"] for v in out["versions"]] == [V2, V1]
    assert set(out["versions"][0]) == {"version", "created_at", "promoted", "metrics", "status"}


def test_retrain_starts_execution():
    class Sfn:
        def start_execution(self, **kw):
            self.kw = kw
            return {"executionArn": "arn:exec:1"}

    sfn = Sfn()
    assert admin.retrain(sfn, "arn:sm") == {"execution_arn": "arn:exec:1"}
    assert sfn.kw["stateMachineArn"] == "arn:sm"
    with pytest.raises(ApiError) as e:
        admin.retrain(sfn, "")
    assert e.value.status == 503


def test_stats_fills_every_minute():
    now = datetime(2026, 11, 27, 12, 0, 30, tzinfo=timezone.utc)

    class Ch:
        def query(self, sql, parameters):
            assert parameters["since"] == datetime(2026, 11, 27, 11, 58, tzinfo=timezone.utc)
            if "FROM requests" in sql:
                rows = [(datetime(2026, 11, 27, 11, 59), 10, 1, 5.0, 20.0)]
            else:
                rows = [(datetime(2026, 11, 27, 12, 0), 3)]
            return type("R", (), {"result_rows": rows})()

    out = admin.stats(Ch(), 3, now=now)
    assert [p["t"] for p in out["requests"]] == ["2026-11-27T11:58:00Z", "2026-11-27T11:59:00Z", "2026-11-27T12:00:00Z"]
    assert [p["v"] for p in out["requests"]] == [0, 10, 0]
    assert [p["v"] for p in out["errors"]] == [0, 1, 0]
    assert out["latency_p95_ms"] == [{"t": "2026-11-27T11:59:00Z", "v": 20.0}]
    assert [p["v"] for p in out["likes"]] == [0, 0, 3]


def test_errors_newest_first_from_json_and_text_lines():
    class Logs:
        calls = []

        def filter_log_events(self, logGroupName, **kw):
            self.calls.append((logGroupName, kw["startTime"]))
            if logGroupName.endswith("recommend"):
                return {"events": [
                    {"timestamp": 1000, "message": json.dumps({"level": "ERROR", "message": "boom", "request_id": "r1"})},
                    {"timestamp": 3000, "message": json.dumps({"level": "INFO", "message": "ERROR word in info"})},
                ]}
            return {"events": [{"timestamp": 2000, "message": "[ERROR] 2026 abcdef01-2345-6789-abcd-ef0123456789 Traceback"}]}

    groups = ["/aws/lambda/movierecs-recommend", "/aws/lambda/movierecs-consumer"]
    logs = Logs()
    out = admin.errors(logs, groups, 10, clock=lambda: 100000.0)
    assert [i["function"] for i in out["items"]] == ["movierecs-consumer", "movierecs-recommend"]
    assert out["items"][1] == {"ts": "1970-01-01T00:00:01.000Z", "function": "movierecs-recommend", "message": "boom", "request_id": "r1"}
    assert out["items"][0]["request_id"] == "abcdef01-2345-6789-abcd-ef0123456789"
    # 2 lines < limit 10: the look-back widened through all three windows
    assert sorted({t for _, t in logs.calls}) == [(100000 - m * 60) * 1000 for m in (1440, 120, 15)]
    logs.calls.clear()
    assert len(admin.errors(logs, groups, 1, clock=lambda: 100000.0)["items"]) == 1
    assert len(logs.calls) == 2  # enough in the first window: no widening


def test_errors_keeps_the_last_complete_window_when_a_wider_one_is_too_big():
    now = 100000.0

    class Logs:
        def filter_log_events(self, logGroupName, startTime, filterPattern, nextToken=None):
            if startTime >= (now - 15 * 60) * 1000:  # the 15-minute window: one page, one error
                return {"events": [{"timestamp": int(now * 1000) - 1, "message": '{"level": "ERROR", "message": "recent"}'}]}
            return {"events": [], "nextToken": "more"}  # wider windows never end

    out = admin.errors(Logs(), ["/aws/lambda/movierecs-recommend"], 10, clock=lambda: now, max_pages=3)
    assert [i["message"] for i in out["items"]] == ["recent"]


def test_consumer_lag_sums_partitions_and_survives_a_broker_outage():
    rows = [{"partition": 0, "committed": 5, "end": 9, "lag": 4}, {"partition": 1, "committed": 3, "end": 3, "lag": 0}]
    out = admin.consumer_lag("b:1", "g", "t", lag_of=lambda b, g, t: rows)
    assert out == {"group": "g", "topic": "t", "total": 4, "partitions": rows}

    def down(b, g, t):
        raise ConnectionError("no broker")

    out = admin.consumer_lag("b:1", "g", "t", lag_of=down)
    assert out["total"] is None and out["partitions"] == [] and "ConnectionError" in out["error"]


def test_feedback_stats_count_each_type_and_the_deletions_per_minute():
    now = datetime(2026, 11, 27, 12, 0, 30, tzinfo=timezone.utc)
    since = datetime(2026, 11, 27, 11, 58, tzinfo=timezone.utc)

    class Ch:
        def query(self, sql, parameters):
            assert parameters["since"] == since and "GROUP BY t, type" in sql
            rows = [(datetime(2026, 11, 27, 11, 59), "like", 4), (datetime(2026, 11, 27, 11, 59), "unlike", 1),
                    (datetime(2026, 11, 27, 12, 0), "not_interested", 2), (datetime(2026, 11, 27, 12, 0), "view", 9)]
            return type("R", (), {"result_rows": rows})()

    class Db:
        def run(self, sql, since):
            assert "deleted_users" in sql and since == "2026-11-27T11:58:00+00:00"
            return [(datetime(2026, 11, 27, 12, 0, tzinfo=timezone.utc), 3)]

    out = admin.feedback_stats(Ch(), Db(), 3, now=now)
    assert set(out["feedback"]) == {"like", "unlike", "not_interested"}
    assert [p["v"] for p in out["feedback"]["like"]] == [0, 4, 0]
    assert [p["v"] for p in out["feedback"]["unlike"]] == [0, 1, 0]
    assert [p["v"] for p in out["feedback"]["not_interested"]] == [0, 0, 2]
    assert [p["v"] for p in out["deletions"]] == [0, 0, 3]
    assert [p["t"] for p in out["deletions"]] == ["2026-11-27T11:58:00Z", "2026-11-27T11:59:00Z", "2026-11-27T12:00:00Z"]
