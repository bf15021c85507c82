"""Unit tests of the impressions path with fakes: the record of a served list, its Kafka
message and back, decoding a batch (dead letters, duplicates), storing each request id once,
and the publisher keeping a batch the broker did not acknowledge."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from movierecs_core import impressions
from movierecs_core.stores.clickhouse import IMPRESSION_COLUMNS
from tests.unit.test_core_consumer import b64, kafka_event

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
BODY = {"user_id": 42, "k": 3, "model_version": "v1", "strategy": "personal", "arm": "candidate",
        "experiment_id": "e1", "items": [{"movie_id": 5}, {"movie_id": 7}, {"movie_id": 1}]}


def test_a_served_list_round_trips_through_its_kafka_message():
    imp = impressions.of_listing("req-9", "recommendations", BODY, NOW)
    key, value = imp.as_tuple()
    assert key == b"42" and imp.movie_ids == (5, 7, 1) and imp.arm == "candidate"
    assert impressions.from_message(json.loads(value)) == imp
    row = imp.row(NOW)
    assert len(row) == len(IMPRESSION_COLUMNS) and row[IMPRESSION_COLUMNS.index("movie_ids")] == [5, 7, 1]
    sim = impressions.of_listing("req-10", "similar", {"movie_id": 3, "model_version": "v1", "items": []}, NOW)
    assert (sim.user_id, sim.source_movie, sim.strategy, sim.movie_ids) == (0, 3, "similar", ())


@pytest.mark.parametrize("bad", [
    [], {"request_id": ""}, {"movie_ids": ["1"]}, {"movie_ids": list(range(1, 200))}, {"listing": "home"},
    {"arm": "treatment"}, {"user_id": -1}, {"ts": "yesterday"}, {"request_id": "x" * 65},
])
def test_invalid_messages_are_refused_with_the_field_named(bad):
    good = impressions.of_listing("req-1", "recommendations", BODY, NOW).to_message()
    value = bad if isinstance(bad, list) else {**good, **bad}
    with pytest.raises(impressions.InvalidEvent):
        impressions.from_message(value)


class FakeClickHouse:
    def __init__(self, stored: set[str] | None = None, fail: bool = False):
        self.stored, self.fail, self.inserts = set(stored or ()), fail, []

    def query(self, sql, parameters=None):
        if self.fail:
            raise ConnectionError("ClickHouse down")
        return type("R", (), {"result_rows": [(r,) for r in parameters["ids"] if r in self.stored]})()

    def insert(self, table, rows, column_names):
        if self.fail:
            raise ConnectionError("ClickHouse down")
        self.inserts.append((table, rows))
        if table == "impressions":
            self.stored |= {r[1] for r in rows}


def _event(messages):
    return kafka_event(messages)


def test_each_request_id_is_stored_once_and_bad_records_are_dead_letters():
    a = impressions.of_listing("req-a", "recommendations", BODY, NOW).to_message()
    b = impressions.of_listing("req-b", "recommendations", BODY, NOW).to_message()
    decoded = impressions.decode_event(_event([a, b, a, {"nope": 1}, "raw:" + b64("{not json")]))
    assert [i.request_id for i in decoded.events] == ["req-a", "req-b"] and decoded.duplicates_in_batch == 1
    assert len(decoded.dead) == 2 and "invalid impression" in decoded.dead[0].reason
    ch = FakeClickHouse(stored={"req-a"})
    got = impressions.store(ch, decoded, NOW)
    assert got == {"received": 5, "inserted": 1, "already_stored": 1, "duplicates_in_batch": 1, "dead_letters": 2}
    assert [t for t, _ in ch.inserts] == ["impressions", "dead_letters"]
    again = impressions.store(ch, decoded, NOW)  # a redelivered batch writes nothing new
    assert again["inserted"] == 0 and again["already_stored"] == 2
    with pytest.raises(ConnectionError):
        impressions.store(FakeClickHouse(fail=True), decoded, NOW)


def test_the_publisher_keeps_what_the_broker_did_not_acknowledge():
    sent, fail = [], [True]

    def send(batch):
        if fail[0]:
            raise ConnectionError("broker down")
        sent.extend(batch)

    pub = impressions.Recorder(send, start_thread=False)
    for n in range(3):
        pub.record(impressions.of_listing(f"req-{n}", "recommendations", BODY, NOW))
    assert pub.flush(force=True) == 0 and pub.pending() == 3 and pub.failures == 1
    fail[0] = False
    assert pub.flush(force=True) == 3 and pub.pending() == 0
    assert [json.loads(v)["request_id"] for _, v in sent] == ["req-0", "req-1", "req-2"]
