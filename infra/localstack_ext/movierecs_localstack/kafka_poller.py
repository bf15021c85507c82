"""Kafka event source mappings (self-managed Apache Kafka and MSK) for LocalStack.

LocalStack's free edition polls only SQS, Kinesis and DynamoDB Streams; other sources come
from the ``lambda_create_event_source_poller`` hook. This module provides that poller.

Semantics (AWS's documented behaviour, see docs/local-cloud-extension.md):

* one consumer group per mapping: the mapping UUID, or ``ConsumerGroupId`` from
  ``SelfManagedKafkaEventSourceConfig`` / ``AmazonManagedKafkaEventSourceConfig``;
* batches close on ``BatchSize``, ``MaximumBatchingWindowInSeconds`` (default 0.5 s) or the
  6 MB payload limit; records grouped by ``topic-partition`` in offset order;
* offsets are committed only after the function succeeded; a failed batch is retried (the
  very same records, exponential backoff) and never skipped: with ``MaximumRetryAttempts``
  unset AWS retries Kafka batches forever; when set, after the retries the batch metadata
  goes to ``DestinationConfig.OnFailure`` (SQS, SNS or S3) and the offsets are committed;
* ``StartingPosition`` TRIM_HORIZON starts at the earliest offset; LATEST starts after the
  records that existed when the mapping was created (the broker's time index gives the
  first offset at or after the creation time; that position is committed at once);
* a record reaches the function once per poller (:class:`OffsetGuard` drops re-reads after a
  seek or a rebalance); offset gaps (transaction markers, compaction) are legitimate;
* the EsmWorker's shutdown (disable, update, delete) stops polling within ~0.2 s.

The EsmWorker calls :meth:`KafkaPoller.poll_events` in a loop with a 1 s pause after each
return; to keep throughput and latency, one call keeps consuming until the worker's shutdown
event is set (found through the worker thread), and only without that event returns after
an idle stretch or a while.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

import botocore.config
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from localstack.services.lambda_.event_source_mapping.pipe_utils import get_internal_client
from localstack.services.lambda_.event_source_mapping.pollers.poller import Poller
from localstack.utils.aws.arns import parse_arn

from movierecs_localstack.kafka_event import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BATCHING_WINDOW_S,
    Batcher,
    OffsetGuard,
    RetryPolicy,
    apply_kafka_defaults,
    bootstrap_servers_for,
    build_event,
    commit_offsets,
    consumer_group_for,
    failure_records,
    is_kafka_mapping,
    s3_failure_key,
)

LOG = logging.getLogger(__name__)
# kafka-python logs every join/rebalance at INFO: keep LocalStack's log readable.
logging.getLogger("kafka").setLevel(logging.WARNING)

#: Short, so a poller that died (LocalStack restarted) leaves the group within seconds and
#: its successor's join does not wait for it (6 s is the broker's group.min.session.timeout.ms).
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 1000
#: A poll_events call returns after this long so the EsmWorker loop gets control back.
MAX_POLL_EVENTS_S = 30.0
#: ... or after this long without records.
IDLE_RETURN_S = 5.0

#: Latest poller per mapping UUID: an update re-creates the poller, the old one must stop.
_CURRENT: dict[str, "KafkaPoller"] = {}
_CURRENT_LOCK = threading.Lock()


def set_defaults_hook(defaults: dict, request: dict, service: str) -> None:
    """``lambda_set_event_source_config_defaults``: AWS's defaults for Kafka mappings."""
    if is_kafka_mapping(service, request):
        apply_kafka_defaults(defaults, service)


def create_poller_hook(holder: Any, source_service: str, esm_config: dict) -> None:
    """``lambda_create_event_source_poller``: claim Kafka mappings."""
    if not is_kafka_mapping(source_service, esm_config):
        return

    def create(arn: str | None = None, client: Any = None, processor: Any = None) -> Poller:
        return KafkaPoller(esm_config, processor=processor)

    holder.create_poller_fn = create


class KafkaPoller(Poller):
    """Consumes the mapping's topics and invokes the function with Kafka-shaped events."""

    def __init__(self, esm_config: dict[str, Any], processor: Any = None) -> None:
        source_arn = esm_config.get("EventSourceArn") or None
        super().__init__(source_arn=None, source_parameters={}, processor=processor)
        self.source_arn = source_arn
        self.aws_region = parse_arn(esm_config["FunctionArn"])["region"]
        self.esm_config = esm_config
        self.uuid: str = esm_config["UUID"]
        self.function_arn: str = esm_config["FunctionArn"]
        self.topics: list[str] = list(esm_config.get("Topics") or [])
        self.batch_size = int(esm_config.get("BatchSize") or DEFAULT_BATCH_SIZE)
        window = esm_config.get("MaximumBatchingWindowInSeconds")
        self.window_s = DEFAULT_BATCHING_WINDOW_S if window is None else float(window)
        self.starting_position = esm_config.get("StartingPosition") or "TRIM_HORIZON"
        retries = esm_config.get("MaximumRetryAttempts")
        self.retry = RetryPolicy(maximum_retry_attempts=-1 if retries is None else int(retries))
        self.on_failure = ((esm_config.get("DestinationConfig") or {}).get("OnFailure") or {}
                           ).get("Destination")
        self.group_id = consumer_group_for(esm_config)
        self.bootstrap = ""
        self.consumer: KafkaConsumer | None = None
        self.batcher = Batcher(batch_size=self.batch_size, window_s=self.window_s)
        self.guard = OffsetGuard()
        self.pending: list[Any] | None = None  # a failed batch awaiting retry
        self.failed_attempts = 0
        self.last_failure: tuple[int, str | None] = (200, None)
        self._lambda = None
        self._service: Any = None
        self._stop_event: threading.Event | None = None
        self._closed = False
        # LATEST: partitions without a committed offset start at the mapping's creation time
        created = esm_config.get("LastModified")
        self.created_ms = int((created.timestamp() if hasattr(created, "timestamp")
                               else time.time()) * 1000)
        with _CURRENT_LOCK:
            _CURRENT[self.uuid] = self

    def event_source(self) -> str:
        return "aws:kafka" if self.source_arn else "SelfManagedKafka"

    # -------------------------------------------------------------------------- lifecycle
    def _should_stop(self) -> bool:
        if self._closed:
            return True
        if self._stop_event is not None and self._stop_event.is_set():
            return True
        with _CURRENT_LOCK:
            return _CURRENT.get(self.uuid) is not self

    def _find_stop_event(self) -> None:
        # poll_events runs in the EsmWorker's FuncThread(worker.poller_loop): its shutdown
        # event is the exact "disable/update/delete happened" signal.
        func = getattr(threading.current_thread(), "func", None)
        worker = getattr(func, "__self__", None)
        event = getattr(worker, "_shutdown_event", None)
        if isinstance(event, threading.Event):
            self._stop_event = event

    def _ensure_consumer(self) -> KafkaConsumer:
        if self.consumer is not None:
            return self.consumer
        self.bootstrap = bootstrap_servers_for(self.esm_config)
        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap.split(","),
            group_id=self.group_id,
            client_id=f"lambda-esm-{self.uuid[:8]}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=SESSION_TIMEOUT_MS,
            heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
            # A batch may wait for a slow function plus retries: do not leave the group.
            max_poll_interval_ms=3_600_000,
            max_poll_records=max(self.batch_size, 500),
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_wait_ms=100,
            receive_buffer_bytes=4 * 1024 * 1024,
        )
        # Learn the topics' partitions before joining: a join without them assigns nothing and
        # rejoins at once when the metadata arrives (a second rebalance on every start).
        for topic in self.topics:
            consumer.partitions_for_topic(topic)
        consumer.subscribe(self.topics)
        self.consumer = consumer
        if self.starting_position == "LATEST":
            self._start_at_latest(consumer)
        return consumer

    def _start_at_latest(self, consumer: KafkaConsumer) -> None:
        """LATEST for partitions the group never committed: start at the first record written
        after the mapping was created (the broker's time index), or at the log end, and commit
        that position so a later poller starts there too."""
        deadline = time.monotonic() + 30
        while not consumer.assignment() and time.monotonic() < deadline and not self._should_stop():
            consumer.poll(timeout_ms=200, max_records=1)
        committed = {tp: self._committed(consumer, tp) for tp in consumer.assignment()}
        fresh = [tp for tp, offset in committed.items() if offset is None]
        for tp, offset in committed.items():
            if offset is not None:
                consumer.seek(tp, offset)  # undo whatever the probe poll consumed
        if not fresh:
            return
        by_time = consumer.offsets_for_times({tp: self.created_ms for tp in fresh})
        ends = consumer.end_offsets(fresh)
        start = {tp: (by_time[tp].offset if by_time.get(tp) is not None else ends[tp]) for tp in fresh}
        for tp, offset in start.items():
            consumer.seek(tp, offset)
        consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in start.items()})

    @staticmethod
    def _committed(consumer: KafkaConsumer, tp: TopicPartition) -> int | None:
        """The group's committed offset of ``tp`` (None if none); bounded, so a broker outage
        raises (and poll_events resets the consumer) instead of hanging the poller."""
        return consumer.committed(tp, timeout_ms=5000)

    def close(self) -> None:
        self._closed = True
        consumer, self.consumer = self.consumer, None
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception as exc:  # closing must not fail the EsmWorker
                LOG.debug("closing Kafka consumer of %s: %s", self.uuid, exc)
        with _CURRENT_LOCK:
            if _CURRENT.get(self.uuid) is self:
                del _CURRENT[self.uuid]

    # ------------------------------------------------------------------------------ polling
    def poll_events(self) -> None:
        """Consume and deliver until shutdown, idleness or MAX_POLL_EVENTS_S. Never raises
        (an exception would end the EsmWorker loop for a mapping without EventSourceArn)."""
        if self._stop_event is None:
            self._find_stop_event()
        started = time.monotonic()
        last_record = started
        # With the worker's shutdown event at hand there is no reason to hand control back
        # (the worker would pause 1 s before calling again); without it, return now and then.
        limit = float("inf") if self._stop_event is not None else MAX_POLL_EVENTS_S
        idle_limit = float("inf") if self._stop_event is not None else IDLE_RETURN_S
        while not self._should_stop() and time.monotonic() - started < limit:
            try:
                if self.pending is not None:
                    self._retry_pending()
                    last_record = time.monotonic()
                    continue
                consumer = self._ensure_consumer()
                if self._fill_batch(consumer):
                    batch = self.batcher.take()
                    self._deliver_new(batch)
                    last_record = time.monotonic()
                elif not self.batcher.records and time.monotonic() - last_record > idle_limit:
                    return
            except Exception as exc:
                LOG.warning("Kafka mapping %s: %s", self.uuid, exc,
                            exc_info=LOG.isEnabledFor(logging.DEBUG))
                self._reset_consumer()
                self._wait(2.0)

    def _fill_batch(self, consumer: KafkaConsumer) -> bool:
        """Poll until the batcher says the batch is complete; False if nothing came in ~0.2 s."""
        while not self._should_stop():
            if self.batcher.ready():
                return True
            left = self.batcher.window_left()
            timeout_ms = 200 if left is None else max(0, int(left * 1000))
            polled = consumer.poll(timeout_ms=timeout_ms, max_records=max(1, self.batcher.room()),
                                   update_offsets=True)
            for tp, records in polled.items():
                self.batcher.add(self._unseen(consumer, tp, records))
            if not polled and left is None:
                return False
        return False

    def _unseen(self, consumer: KafkaConsumer, tp: TopicPartition, records: list[Any]) -> list[Any]:
        """``records`` less those this poller already handed out (see OffsetGuard)."""
        if not self.guard.knows(tp):
            self.guard.start(tp, self._committed(consumer, tp))
        return self.guard.accept(tp, records)

    def _reset_consumer(self) -> None:
        consumer, self.consumer = self.consumer, None
        # Nothing of the in-flight batch was committed: the new consumer re-reads it.
        self.batcher = Batcher(batch_size=self.batch_size, window_s=self.window_s)
        self.guard.forget()
        self.pending, self.failed_attempts = None, 0
        if consumer is not None:
            try:
                consumer.close(autocommit=False)
            except Exception:
                pass

    def _wait(self, seconds: float) -> None:
        if self._stop_event is not None:
            self._stop_event.wait(seconds)
        else:
            time.sleep(seconds)

    # ----------------------------------------------------------------------------- delivery
    def _lambda_client(self):
        if self._lambda is None:
            self._lambda = get_internal_client(
                arn=self.function_arn,
                client_config=botocore.config.Config(
                    retries={"total_max_attempts": 1}, read_timeout=905, tcp_keepalive=True,
                    max_pool_connections=2),
            )
        return self._lambda

    def _lambda_service(self):
        """LocalStack's in-process Lambda service (what the Invoke API calls), or None.

        An ESM invokes its function from inside the Lambda service on AWS too; going through
        the gateway instead (boto3 client: serialize, sign, HTTP, parse) costs about a third
        of the time per batch at BatchSize 1000.
        """
        if self._service is None:
            try:
                from localstack.services.plugins import SERVICE_PLUGINS

                provider = getattr(SERVICE_PLUGINS.get_service("lambda"), "_provider", None)
                self._service = getattr(provider, "lambda_service", None) or False
            except Exception:
                self._service = False
        return self._service or None

    def _invoke(self, batch: list[Any]) -> bool:
        """Invoke the function synchronously with the batch; True when it succeeded."""
        event = build_event(batch, bootstrap_servers=self.bootstrap,
                            event_source_arn=self.source_arn)
        payload = json.dumps(event).encode()
        service = self._lambda_service()
        try:
            if service is not None:
                return self._invoke_in_process(service, payload)
            result = self._lambda_client().invoke(FunctionName=self.function_arn,
                                                  InvocationType="RequestResponse",
                                                  Payload=payload)
        except Exception as exc:  # throttling, function deleted, ...: a failed attempt
            LOG.warning("Kafka mapping %s: invoke failed: %s", self.uuid, exc)
            self.last_failure = (500, "Unhandled")
            return False
        result["Payload"].read()
        if result.get("FunctionError"):
            self.last_failure = (int(result.get("StatusCode", 200)), result["FunctionError"])
            return False
        return True

    def _invoke_in_process(self, service: Any, payload: bytes) -> bool:
        arn = parse_arn(self.function_arn)
        parts = arn["resource"].split(":")  # function:<name>[:<qualifier>]
        result = service.invoke(
            function_name=parts[1],
            qualifier=parts[2] if len(parts) > 2 else None,
            region=arn["region"],
            account_id=arn["account"],
            invocation_type="RequestResponse",
            client_context=None,
            request_id=str(uuid.uuid4()),
            payload=payload,
        )
        if result is None or result.is_error:
            self.last_failure = (200, "Unhandled")
            return False
        return True

    def _deliver_new(self, batch: list[Any]) -> None:
        if self._invoke(batch):
            self._commit(batch)
            return
        self.pending, self.failed_attempts = batch, 1
        self._after_failure()

    def _retry_pending(self) -> None:
        self._wait(self.retry.backoff(self.failed_attempts))
        if self._should_stop():
            return  # uncommitted: the next poller re-reads the batch from the group offsets
        batch = self.pending
        if self._invoke(batch):
            self._commit(batch)
            self.pending, self.failed_attempts = None, 0
            return
        self.failed_attempts += 1
        self._after_failure()

    def _after_failure(self) -> None:
        LOG.info("Kafka mapping %s: batch of %d failed (attempt %d)", self.uuid,
                 len(self.pending), self.failed_attempts)
        if not self.retry.exhausted(self.failed_attempts):
            return
        batch = self.pending
        if self.on_failure:
            self._send_on_failure(batch)
        else:
            LOG.warning("Kafka mapping %s: batch of %d records dropped after %d attempts "
                        "(MaximumRetryAttempts=%s, no OnFailure destination)", self.uuid,
                        len(batch), self.failed_attempts, self.retry.maximum_retry_attempts)
        self._commit(batch)
        self.pending, self.failed_attempts = None, 0

    def _send_on_failure(self, batch: list[Any]) -> None:
        arn = self.on_failure
        service = parse_arn(arn)["service"]
        status, function_error = self.last_failure
        payload = None
        if service == "s3":
            payload = build_event(batch, bootstrap_servers=self.bootstrap,
                                  event_source_arn=self.source_arn)
        docs = failure_records(batch, esm_uuid=self.uuid, function_arn=self.function_arn,
                               bootstrap_servers=self.bootstrap, event_source_arn=self.source_arn,
                               attempts=self.failed_attempts, status_code=status,
                               function_error=function_error, payload=payload)
        client = get_internal_client(arn)
        for doc in docs:
            body = json.dumps(doc)
            if service == "sqs":
                queue_url = client.get_queue_url(
                    QueueName=parse_arn(arn)["resource"],
                    QueueOwnerAWSAccountId=parse_arn(arn)["account"])["QueueUrl"]
                client.send_message(QueueUrl=queue_url, MessageBody=body)
            elif service == "sns":
                client.publish(TopicArn=arn, Message=body)
            elif service == "s3":
                bucket = parse_arn(arn)["resource"]
                key = s3_failure_key(self.uuid, doc["KafkaBatchInfo"]["partition"])
                client.put_object(Bucket=bucket, Key=key, Body=body.encode())
            else:
                LOG.warning("Kafka mapping %s: unsupported OnFailure destination %s",
                            self.uuid, arn)
                return

    def _commit(self, batch: list[Any]) -> None:
        offsets = {TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                   for (t, p), o in commit_offsets(batch).items()}
        if self.consumer is None:
            return
        try:
            self.consumer.commit(offsets)
        except Exception as exc:  # e.g. rebalance: the batch may be redelivered (at least once)
            LOG.warning("Kafka mapping %s: commit failed: %s", self.uuid, exc)
