"""Kafka event source mappings through the extension's poller, in the real stack of ``make up``
(LocalStack + Tansu). The sink function (extension_fixtures/functions/kafka_sink.py) writes
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
    # no idempotent producer: Tansu with s3:// storage answers UnknownProducerId to it
    prod = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5, enable_idempotence=False)
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


def test_a_hole_in_the_log_is_waited_for_not_read_past(aws, extension_stack, kafka_bootstrap,
                                                       producer, topic, mappings):
    """Tansu assigns a batch its offset before it writes the batch: batch N+1 can be readable
    while N is not yet. Made here on purpose, in Tansu's own storage (s3lite): the watermark is
    moved one offset on (offset 2 assigned, never written), a record lands at 3; the mapping
    must deliver 0 and 1, hold 3 back, and deliver 2 and 3 in order once 2 appears."""
    import boto3

    from movierecs_stack.config import TANSU_BUCKET, port_for

    s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port_for('kafka_s3')}",
                      region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    partition = f"clusters/tansu_cluster/topics/{topic}/partitions/0000000000"
    bucket = extension_stack["OutputBucketName"]
    for i in range(2):
        producer.send(topic, value=json.dumps({"i": i}).encode(), partition=0).get(timeout=30)
    watermark = json.loads(s3.get_object(Bucket=TANSU_BUCKET, Key=f"{partition}/watermark.json")["Body"].read())
    assert watermark["high"] == 2, watermark
    s3.put_object(Bucket=TANSU_BUCKET, Key=f"{partition}/watermark.json",
                  Body=json.dumps({**watermark, "high": 3}).encode())
    meta = producer.send(topic, value=b'{"i": 3}', partition=0).get(timeout=30)
    assert meta.offset == 3, "the broker did not take the moved watermark"

    _create_mapping(aws, extension_stack, kafka_bootstrap, topic, mappings)
    _wait(lambda: len(_records(_deliveries(aws, bucket, topic))) >= 2, 60, "offsets 0 and 1")
    time.sleep(3)
    assert [r["offset"] for r in _records(_deliveries(aws, bucket, topic))] == [0, 1], \
        "the poller read past the hole at offset 2"

    batch3 = s3.get_object(Bucket=TANSU_BUCKET, Key=f"{partition}/records/{3:020d}.batch")["Body"].read()
    s3.put_object(Bucket=TANSU_BUCKET, Key=f"{partition}/records/{2:020d}.batch", Body=batch3)
    _wait(lambda: len(_records(_deliveries(aws, bucket, topic))) >= 4, 30, "offsets 2 and 3")
    time.sleep(1)
    assert sorted(r["offset"] for r in _records(_deliveries(aws, bucket, topic))) == [0, 1, 2, 3]
