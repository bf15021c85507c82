"""Pure pieces of the Kafka event source poller (infra/localstack_ext): event shape, commit
offsets, batching window, retry policy, on-failure documents. Plain record objects stand in
for kafka-python's ConsumerRecord."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import pytest

from movierecs_localstack.kafka_event import (
    Batcher,
    OffsetGuard,
    RetryPolicy,
    build_event,
    commit_offsets,
    failure_records,
    record_to_event,
    s3_failure_key,
)


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    value: bytes | None = b'{"a":1}'
    key: bytes | None = b"42"
    timestamp: int = 1_700_000_000_000
    timestamp_type: int = 0
    headers: list = field(default_factory=list)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_record_shape_matches_aws():
    rec = Rec("likes", 2, 7, headers=[("trace", b"ab")], timestamp_type=1)
    assert record_to_event(rec) == {
        "topic": "likes", "partition": 2, "offset": 7, "timestamp": 1_700_000_000_000,
        "timestampType": "LOG_APPEND_TIME",
        "key": base64.b64encode(b"42").decode(), "value": base64.b64encode(b'{"a":1}').decode(),
        "headers": [{"trace": [97, 98]}],
    }


def test_null_key_and_value_are_left_out():
    event = record_to_event(Rec("t", 0, 0, key=None, value=None))
    assert "key" not in event and "value" not in event
    assert event["timestampType"] == "CREATE_TIME"


def test_event_groups_by_topic_partition_in_offset_order():
    recs = [Rec("t", 1, 5), Rec("t", 0, 3), Rec("t", 1, 4), Rec("u", 0, 9)]
    event = build_event(recs, bootstrap_servers="b1:9092,b2:9092", event_source_arn=None)
    assert event["eventSource"] == "SelfManagedKafka"
    assert "eventSourceArn" not in event
    assert event["bootstrapServers"] == "b1:9092,b2:9092"
    assert list(event["records"]) == ["t-1", "t-0", "u-0"]
    assert [r["offset"] for r in event["records"]["t-1"]] == [4, 5]


def test_msk_event_names_the_cluster():
    arn = "arn:aws:kafka:us-east-1:000000000000:cluster/c/1"
    event = build_event([Rec("t", 0, 0)], bootstrap_servers="b:1", event_source_arn=arn)
    assert event["eventSource"] == "aws:kafka"
    assert event["eventSourceArn"] == arn


def test_commit_offsets_are_last_plus_one_per_partition():
    recs = [Rec("t", 0, 3), Rec("t", 0, 5), Rec("t", 1, 0), Rec("u", 0, 9)]
    assert commit_offsets(recs) == {("t", 0): 6, ("t", 1): 1, ("u", 0): 10}


def test_batcher_closes_on_batch_size_and_carries_the_rest():
    b = Batcher(batch_size=3, window_s=10, clock=Clock())
    b.add([Rec("t", 0, i) for i in range(5)])
    assert b.ready()
    assert [r.offset for r in b.take()] == [0, 1, 2]
    assert [r.offset for r in b.records] == [3, 4]
    assert not b.ready()  # window still open, batch not full


def test_batcher_closes_when_the_window_elapses():
    clock = Clock()
    b = Batcher(batch_size=100, window_s=0.5, clock=clock)
    assert b.window_left() is None and not b.ready()
    b.add([Rec("t", 0, 0)])
    assert b.window_left() == 0.5 and not b.ready()
    clock.now += 0.3
    b.add([Rec("t", 0, 1)])
    assert abs(b.window_left() - 0.2) < 1e-9  # measured from the first record
    clock.now += 0.2
    assert b.ready()
    assert len(b.take()) == 2
    assert b.window_left() is None


def test_batcher_window_zero_delivers_what_is_there():
    b = Batcher(batch_size=100, window_s=0, clock=Clock())
    b.add([Rec("t", 0, 0)])
    assert b.ready()


def test_batcher_respects_the_payload_limit():
    big = b"x" * 1000
    b = Batcher(batch_size=100, window_s=10, max_bytes=3000, clock=Clock())
    b.add([Rec("t", 0, i, value=big) for i in range(4)])
    first = b.take()
    assert 1 <= len(first) < 4
    rest = b.take() + b.take()
    assert [r.offset for r in first + rest] == [0, 1, 2, 3]


def test_batcher_room_counts_carried_records():
    b = Batcher(batch_size=4, window_s=10, clock=Clock())
    b.add([Rec("t", 0, i) for i in range(6)])
    assert b.room() == 0


def test_retry_policy_forever_by_default_and_bounded_when_set():
    assert not RetryPolicy().exhausted(1000)
    policy = RetryPolicy(maximum_retry_attempts=2)
    assert not policy.exhausted(1) and not policy.exhausted(2)
    assert policy.exhausted(3)  # first try + 2 retries failed
    assert RetryPolicy(maximum_retry_attempts=0).exhausted(1)


def test_retry_backoff_doubles_and_caps():
    policy = RetryPolicy(initial_s=0.5, max_s=3)
    assert [policy.backoff(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3, 3]


def test_failure_records_one_per_partition_with_batch_info():
    recs = [Rec("t", 0, 4), Rec("t", 0, 5), Rec("t", 2, 9)]
    docs = failure_records(recs, esm_uuid="u-1", function_arn="arn:fn", bootstrap_servers="b:1",
                           event_source_arn=None, attempts=3, status_code=200,
                           function_error="Unhandled")
    assert len(docs) == 2
    info = {d["KafkaBatchInfo"]["partition"]: d["KafkaBatchInfo"] for d in docs}
    assert info[0]["batchSize"] == 2 and info[0]["firstOffset"] == 4 and info[0]["lastOffset"] == 5
    assert info[2]["batchSize"] == 1 and info[2]["topic"] == "t"
    for doc in docs:
        assert doc["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert doc["requestContext"]["approximateInvokeCount"] == 3
        assert doc["responseContext"]["functionError"] == "Unhandled"
        assert "payload" not in doc


def test_s3_failure_key_layout():
    key = s3_failure_key("u-1", 2)
    assert key.startswith("aws/lambda/u-1/2/")
    assert len(key.split("/")) == 8


def test_kafka_mapping_detection():
    from movierecs_localstack.kafka_event import is_kafka_mapping

    assert is_kafka_mapping("kafka", {})
    assert is_kafka_mapping("", {"SelfManagedEventSource": {"Endpoints": {}}})
    assert not is_kafka_mapping("", {})
    assert not is_kafka_mapping("sqs", {"SelfManagedEventSource": {}})


def test_defaults_follow_aws_and_name_the_group_after_the_mapping():
    from movierecs_localstack.kafka_event import apply_kafka_defaults

    msk = {"UUID": "u-1"}
    apply_kafka_defaults(msk, "kafka")
    assert msk["BatchSize"] == 100 and msk["MaximumRetryAttempts"] == -1
    assert msk["StartingPosition"] == "TRIM_HORIZON"
    assert msk["AmazonManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "u-1"}
    own = {"UUID": "u-2"}
    apply_kafka_defaults(own, "")
    assert own["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": "u-2"}


def test_bootstrap_servers_and_consumer_group():
    from movierecs_localstack.kafka_event import bootstrap_servers_for, consumer_group_for

    own = {"UUID": "u", "SelfManagedEventSource": {
        "Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": ["a:1", "b:2"]}}}
    assert bootstrap_servers_for(own, {}) == "a:1,b:2"
    assert consumer_group_for(own) == "u"
    msk = {"UUID": "u", "EventSourceArn": "arn:aws:kafka:us-east-1:1:cluster/c/1",
           "AmazonManagedKafkaEventSourceConfig": {"ConsumerGroupId": "mine"}}
    assert bootstrap_servers_for(msk, {"MOVIERECS_MSK_BOOTSTRAP": "k:9"}) == "k:9"
    assert consumer_group_for(msk) == "mine"
    with pytest.raises(ValueError, match="MOVIERECS_MSK_BOOTSTRAP"):
        bootstrap_servers_for(msk, {})
    with pytest.raises(ValueError, match="KAFKA_BOOTSTRAP_SERVERS"):
        bootstrap_servers_for({"UUID": "u", "SelfManagedEventSource": {}}, {})


# --- OffsetGuard: re-reads are dropped, gaps are legitimate -----------------------------------
def offsets(records) -> list[int]:
    return [r.offset for r in records]


def test_guard_passes_a_run_from_the_committed_offset():
    guard = OffsetGuard()
    guard.start("tp", 5)
    assert offsets(guard.accept("tp", [Rec("t", 0, o) for o in (5, 6, 7)])) == [5, 6, 7]
    assert guard.expected["tp"] == 8


def test_guard_passes_gaps_at_once():
    """Transaction markers and compaction leave offset gaps in a real Kafka log: never waited on."""
    guard = OffsetGuard()
    guard.start("tp", 10)
    assert offsets(guard.accept("tp", [Rec("t", 0, o) for o in (10, 11, 13, 20)])) == [10, 11, 13, 20]
    assert guard.expected["tp"] == 21
    guard.start("tp2", 0)
    assert offsets(guard.accept("tp2", [Rec("t", 1, 4)])) == [4]  # a gap at the committed start too


def test_guard_drops_repeats_and_keeps_partitions_apart():
    guard = OffsetGuard()
    guard.start("a", 0)
    assert offsets(guard.accept("a", [Rec("t", 0, o) for o in (0, 1)])) == [0, 1]
    assert offsets(guard.accept("a", [Rec("t", 0, o) for o in (0, 1, 2)])) == [2]
    assert not guard.knows("b")
    assert offsets(guard.accept("b", [Rec("t", 1, 40)])) == [40]  # unknown start: first record
    assert guard.accept("a", []) == [] and guard.expected["a"] == 3
    guard.forget()
    assert not guard.knows("a") and not guard.knows("b")
