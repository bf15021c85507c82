"""Kafka event source mappings through the extension's poller, in the real stack of ``make up``
(LocalStack + Apache Kafka). The sink function (extension_fixtures/functions/kafka_sink.py) writes
every event it receives to S3, and fails on purpose while ``flags/<topic>`` exists.

Shows: every produced record delivered exactly once in AWS's Kafka event shape; a failed
batch redelivered unchanged with nothing committed meanwhile; MaximumRetryAttempts + an SQS
on-failure destination; disable/enable/delete through the Lambda API; an MSK mapping.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

SUBNET = [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-local"}]


@pytest.fixture(scope="module")
def producer(kafka_bootstrap):
    prod = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    yield prod
    prod.close()


@pytest.fixture
def topic(kafka_bootstrap):
    name = f"ext-test-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    finally:
        admin.close()
    return name


@pytest.fixture
def mappings(aws):
    """Mapping UUIDs created by a test; deleted afterwards."""
    created: list[str] = []
    yield created
    for mapping_uuid in created:
        try:
            aws("lambda").delete_event_source_mapping(UUID=mapping_uuid)
        except Exception:
            pass


def _create_mapping(aws, stack, kafka_bootstrap, topic, mappings, **extra) -> dict:
    kwargs = dict(FunctionName=stack["KafkaSinkFunctionName"], Topics=[topic],
                  StartingPosition="TRIM_HORIZON", BatchSize=20,
                  MaximumBatchingWindowInSeconds=1)
    if "EventSourceArn" not in extra:
        kwargs.update(SelfManagedEventSource={"Endpoints": {
            "KAFKA_BOOTSTRAP_SERVERS": [kafka_bootstrap]}}, SourceAccessConfigurations=SUBNET)
    kwargs.update(extra)
    mapping = aws("lambda").create_event_source_mapping(**kwargs)
    mappings.append(mapping["UUID"])
    return mapping


def _produce(producer, topic: str, n: int, start: int = 0) -> dict[str, dict]:
    pending = []
    for i in range(start, start + n):
        key = f"user-{i}".encode()
        value = json.dumps({"i": i, "topic": topic}).encode()
        future = producer.send(topic, key=key, value=value, partition=i % 3,
                               headers=[("trace", f"t{i}".encode())])
        pending.append((future, {"key": key, "value": value, "i": i}))
    producer.flush()
    sent = {}
    for future, record in pending:
        meta = future.get(timeout=30)
        sent[f"{meta.partition}:{meta.offset}"] = record
    return sent


def _deliveries(aws, bucket: str, topic: str) -> list[dict]:
    """Every invocation the sink saw for the topic (failed or not), oldest first."""
    s3 = aws("s3")
    objs = s3.list_objects_v2(Bucket=bucket, Prefix=f"kafka/{topic}/").get("Contents", [])
    docs = []
    for obj in sorted(objs, key=lambda o: o["LastModified"]):
        docs.append(json.loads(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
    return docs


def _records(docs: list[dict]) -> list[dict]:
    return [r for d in docs for recs in d["event"]["records"].values() for r in recs]


def _wait(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


def _committed(kafka_bootstrap: str, group: str, topic: str) -> dict[int, int | None]:
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        return {p: consumer.committed(TopicPartition(topic, p)) for p in range(3)}
    finally:
        consumer.close(autocommit=False)


def _state(aws, mapping_uuid: str) -> str:
    return aws("lambda").get_event_source_mapping(UUID=mapping_uuid)["State"]


def test_every_record_delivered_once_in_aws_kafka_shape(aws, extension_stack, kafka_bootstrap,
                                                        producer, topic, mappings):
    bucket = extension_stack["OutputBucketName"]
    sent = _produce(producer, topic, 45)
    mapping = _create_mapping(aws, extension_stack, kafka_bootstrap, topic, mappings)
    assert mapping["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == mapping["UUID"]
    _wait(lambda: len(_records(_deliveries(aws, bucket, topic))) >= 45, 60, "45 records")
    _wait(lambda: _committed(kafka_bootstrap, mapping["UUID"], topic) == {0: 15, 1: 15, 2: 15},
          20, "offsets committed after success")
    docs = _deliveries(aws, bucket, topic)
    assert all(not d["failed"] for d in docs)
    records = _records(docs)
    seen = [f"{r['partition']}:{r['offset']}" for r in records]
    assert sorted(seen) == sorted(sent), "every record exactly once"
    assert len(seen) == len(set(seen))
    for doc in docs:
        event = doc["event"]
        assert event["eventSource"] == "SelfManagedKafka"
        assert event["bootstrapServers"] == kafka_bootstrap
        assert 1 <= sum(len(v) for v in event["records"].values()) <= 20  # BatchSize
        for group_key, recs in event["records"].items():
            assert {f"{r['topic']}-{r['partition']}" for r in recs} == {group_key}
            offsets = [r["offset"] for r in recs]
            assert offsets == sorted(offsets)
    for record in records:
        expected = sent[f"{record['partition']}:{record['offset']}"]
        assert record["topic"] == topic
        assert base64.b64decode(record["key"]) == expected["key"]
        assert base64.b64decode(record["value"]) == expected["value"]
        assert record["headers"] == [{"trace": list(f"t{expected['i']}".encode())}]
        assert record["timestampType"] in ("CREATE_TIME", "LOG_APPEND_TIME")
        assert isinstance(record["timestamp"], int) and record["timestamp"] > 1_600_000_000_000

    # disable: the state moves to Disabled and new records wait
    lam = aws("lambda")
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    _wait(lambda: _state(aws, mapping["UUID"]) == "Disabled", 20, "state Disabled")
    more = _produce(producer, topic, 6, start=100)
    time.sleep(3)
    assert len(_records(_deliveries(aws, bucket, topic))) == 45
    # enable: delivery resumes from the committed offsets, still exactly once
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    _wait(lambda: _state(aws, mapping["UUID"]) == "Enabled", 20, "state Enabled")
    _wait(lambda: len(_records(_deliveries(aws, bucket, topic))) >= 51, 60, "records after enable")
    seen = [f"{r['partition']}:{r['offset']}" for r in _records(_deliveries(aws, bucket, topic))]
    assert sorted(seen) == sorted({**sent, **more})
    # delete: Deleting, then gone
    resp = lam.delete_event_source_mapping(UUID=mapping["UUID"])
    assert resp["State"] == "Deleting"
    mappings.remove(mapping["UUID"])

    def gone():
        try:
            lam.get_event_source_mapping(UUID=mapping["UUID"])
            return False
        except lam.exceptions.ResourceNotFoundException:
            return True

    _wait(gone, 20, "mapping deleted")


def test_failed_batch_is_redelivered_and_not_committed(aws, extension_stack, kafka_bootstrap,
                                                       producer, topic, mappings):
    bucket = extension_stack["OutputBucketName"]
    s3 = aws("s3")
    s3.put_object(Bucket=bucket, Key=f"flags/{topic}", Body=b"fail")
    sent = _produce(producer, topic, 6)
    mapping = _create_mapping(aws, extension_stack, kafka_bootstrap, topic, mappings,
                              BatchSize=100)
    failed = _wait(lambda: [d for d in _deliveries(aws, bucket, topic) if d["failed"]][:2]
                   if len([d for d in _deliveries(aws, bucket, topic) if d["failed"]]) >= 2
                   else None, 60, "two failed attempts")
    first, second = (sorted(f"{r['partition']}:{r['offset']}" for r in _records([d]))
                     for d in failed)
    assert first == second, "the retry carries the same batch"
    assert _committed(kafka_bootstrap, mapping["UUID"], topic) == {0: None, 1: None, 2: None}
    s3.delete_object(Bucket=bucket, Key=f"flags/{topic}")
    # the first batch may not have held every record; all records arrive successfully once
    _wait(lambda: len(_records([d for d in _deliveries(aws, bucket, topic)
                                if not d["failed"]])) >= 6, 60, "a successful redelivery")
    delivered = sorted(f"{r['partition']}:{r['offset']}" for r in _records(
        [d for d in _deliveries(aws, bucket, topic) if not d["failed"]]))
    assert delivered == sorted(sent)
    assert set(first) <= set(delivered)
    _wait(lambda: _committed(kafka_bootstrap, mapping["UUID"], topic) == {0: 2, 1: 2, 2: 2},
          20, "offsets committed after the successful retry")


def test_retries_exhausted_go_to_on_failure_destination(aws, extension_stack, kafka_bootstrap,
                                                        producer, topic, mappings):
    bucket = extension_stack["OutputBucketName"]
    aws("s3").put_object(Bucket=bucket, Key=f"flags/{topic}", Body=b"fail")
    _produce(producer, topic, 3)
    group = f"ext-test-group-{uuid.uuid4().hex[:8]}"
    mapping = _create_mapping(
        aws, extension_stack, kafka_bootstrap, topic, mappings, BatchSize=100,
        MaximumRetryAttempts=1,
        DestinationConfig={"OnFailure": {"Destination": extension_stack["FailureQueueArn"]}},
        SelfManagedKafkaEventSourceConfig={"ConsumerGroupId": group})
    assert mapping["SelfManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == group
    sqs = aws("sqs")
    infos: list[dict] = []

    def failure_messages():
        msgs = sqs.receive_message(QueueUrl=extension_stack["FailureQueueUrl"],
                                   MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for m in msgs:
            doc = json.loads(m["Body"])
            if doc["KafkaBatchInfo"]["topic"] == topic:
                infos.append(doc)
            sqs.delete_message(QueueUrl=extension_stack["FailureQueueUrl"],
                               ReceiptHandle=m["ReceiptHandle"])
        return sum(d["KafkaBatchInfo"]["batchSize"] for d in infos) >= 3

    _wait(failure_messages, 60, "on-failure records in SQS", interval=0)
    for doc in infos:
        assert doc["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert doc["requestContext"]["functionArn"] == extension_stack["KafkaSinkFunctionArn"]
        assert doc["responseContext"]["functionError"] == "Unhandled"
        info = doc["KafkaBatchInfo"]
        assert info["firstOffset"] == 0 and info["lastOffset"] == info["batchSize"] - 1
        assert info["bootstrapServers"] == kafka_bootstrap
    # MaximumRetryAttempts=1: every record was tried exactly twice (one try + one retry)
    attempts = [d for d in _deliveries(aws, bucket, topic) if d["failed"]]
    tries: dict[str, int] = {}
    for record in _records(attempts):
        key = f"{record['partition']}:{record['offset']}"
        tries[key] = tries.get(key, 0) + 1
    assert tries == {"0:0": 2, "1:0": 2, "2:0": 2}
    _wait(lambda: _committed(kafka_bootstrap, group, topic) == {0: 1, 1: 1, 2: 1}, 20,
          "offsets committed after the on-failure destination")


def test_msk_mapping_uses_aws_kafka_shape(aws, extension_stack, kafka_bootstrap, producer,
                                          topic, mappings):
    """MSK mappings reach the local broker through LocalStack's MOVIERECS_MSK_BOOTSTRAP."""
    bucket = extension_stack["OutputBucketName"]
    sent = _produce(producer, topic, 4)
    cluster_arn = f"arn:aws:kafka:us-east-1:000000000000:cluster/local/{uuid.uuid4()}"
    mapping = _create_mapping(aws, extension_stack, kafka_bootstrap, topic, mappings,
                              EventSourceArn=cluster_arn)
    assert mapping["AmazonManagedKafkaEventSourceConfig"]["ConsumerGroupId"] == mapping["UUID"]
    _wait(lambda: len(_records(_deliveries(aws, bucket, topic))) >= 4, 60,
          "MSK deliveries (is LocalStack started with MOVIERECS_MSK_BOOTSTRAP?)")
    docs = _deliveries(aws, bucket, topic)
    assert sorted(f"{r['partition']}:{r['offset']}" for r in _records(docs)) == sorted(sent)
    for doc in docs:
        assert doc["event"]["eventSource"] == "aws:kafka"
        assert doc["event"]["eventSourceArn"] == cluster_arn


def test_latest_starts_after_existing_records(aws, extension_stack, kafka_bootstrap, producer,
                                              topic, mappings):
    bucket = extension_stack["OutputBucketName"]
    _produce(producer, topic, 9)  # 3 per partition, older than the mapping
    time.sleep(0.05)
    mapping = _create_mapping(aws, extension_stack, kafka_bootstrap, topic, mappings,
                              StartingPosition="LATEST")
    # the skipped position is committed: the group starts after the old records
    _wait(lambda: _committed(kafka_bootstrap, mapping["UUID"], topic) == {0: 3, 1: 3, 2: 3},
          30, "LATEST position committed")
    new = _produce(producer, topic, 6, start=50)
    _wait(lambda: len(_records(_deliveries(aws, bucket, topic))) >= 6, 60, "new records")
    time.sleep(1)
    seen = sorted(f"{r['partition']}:{r['offset']}" for r in
                  _records(_deliveries(aws, bucket, topic)))
    assert seen == sorted(new)


def test_transaction_markers_leave_gaps_that_are_not_waited_on(aws, extension_stack, kafka_bootstrap,
                                                                topic, mappings):
    """A committed transaction ends with a control record, so the log's offsets have a gap the
    consumer never sees (offsets 0-2 data, 3 the marker, 4 the next record). The mapping must
    deliver 0, 1, 2 and 4 promptly: a gap in a real Kafka log is legitimate, not a hole to wait for."""
    bucket = extension_stack["OutputBucketName"]
    tx = KafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"tx-{uuid.uuid4().hex[:8]}")
    try:
        tx.init_transactions()
        tx.begin_transaction()
        for i in range(3):
            tx.send(topic, value=json.dumps({"i": i}).encode(), partition=0)
        tx.commit_transaction()
    finally:
        tx.close()
    plain = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        meta = plain.send(topic, value=b'{"i": 4}', partition=0).get(timeout=30)
    finally:
        plain.close()
    assert meta.offset == 4, "the transaction's commit marker should have taken offset 3"

    _create_mapping(aws, extension_stack, kafka_bootstrap, topic, mappings)
    _wait(lambda: len(_records(_deliveries(aws, bucket, topic))) >= 4, 60, "offsets 0, 1, 2 and 4")
    time.sleep(1)
    assert sorted(r["offset"] for r in _records(_deliveries(aws, bucket, topic))) == [0, 1, 2, 4]
    _wait(lambda: _committed(kafka_bootstrap, mappings[-1], topic).get(0) == 5, 30, "offset 5 committed")
