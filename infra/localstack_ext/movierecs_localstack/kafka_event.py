"""Pure pieces of the Kafka event source mapping: event shape, batching, retry policy.

No LocalStack and no Kafka client imports, so unit tests exercise them with plain objects.
The shapes follow AWS's documentation for MSK and self-managed Apache Kafka event sources:

.. code-block:: json

    {"eventSource": "SelfManagedKafka" | "aws:kafka",
     "eventSourceArn": "<MSK cluster ARN>",            (MSK only)
     "bootstrapServers": "host1:9092,host2:9092",
     "records": {"<topic>-<partition>": [
         {"topic": "...", "partition": 0, "offset": 15, "timestamp": 1545084650987,
          "timestampType": "CREATE_TIME", "key": "<base64>", "value": "<base64>",
          "headers": [{"headerKey": [104, 101, ...]}]}]}}
"""

from __future__ import annotations

import base64
import datetime
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

#: AWS's default batch size for Kafka mappings and its maximum.
DEFAULT_BATCH_SIZE = 100
MAX_BATCH_SIZE = 10_000
#: AWS: "For Kafka event sources the default batching window is 500 ms".
DEFAULT_BATCHING_WINDOW_S = 0.5
#: Synchronous invoke payload limit is 6 MB; keep headroom for the JSON envelope.
MAX_PAYLOAD_BYTES = 5_800_000

TIMESTAMP_TYPES = {0: "CREATE_TIME", 1: "LOG_APPEND_TIME"}


class KafkaRecord(Protocol):
    """What we need from a consumed record (kafka-python's ``ConsumerRecord`` fits)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def record_to_event(record: KafkaRecord) -> dict[str, Any]:
    """One record in Lambda's Kafka event shape (key/value base64, headers as byte lists)."""
    event: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestampType": TIMESTAMP_TYPES.get(record.timestamp_type, "CREATE_TIME"),
    }
    if record.key is not None:
        event["key"] = base64.b64encode(record.key).decode("ascii")
    if record.value is not None:
        event["value"] = base64.b64encode(record.value).decode("ascii")
    event["headers"] = [{name: list(value or b"")} for name, value in (record.headers or [])]
    return event


def record_size(record: KafkaRecord) -> int:
    """Approximate bytes the record adds to the JSON payload (base64 grows by 4/3)."""
    raw = len(record.key or b"") + len(record.value or b"")
    headers = sum(len(n) + 4 * len(v or b"") for n, v in (record.headers or []))
    return raw * 4 // 3 + headers + 160


def build_event(records: Iterable[KafkaRecord], *, bootstrap_servers: str,
                event_source_arn: str | None) -> dict[str, Any]:
    """The whole invocation payload; records grouped under ``"<topic>-<partition>"`` keys in
    offset order, as Lambda sends them."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        grouped.setdefault(f"{record.topic}-{record.partition}", []).append(
            record_to_event(record))
    for items in grouped.values():
        items.sort(key=lambda r: r["offset"])
    event: dict[str, Any] = {}
    if event_source_arn:
        event["eventSource"] = "aws:kafka"
        event["eventSourceArn"] = event_source_arn
    else:
        event["eventSource"] = "SelfManagedKafka"
    event["bootstrapServers"] = bootstrap_servers
    event["records"] = grouped
    return event


def commit_offsets(records: Iterable[KafkaRecord]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset to commit after the batch succeeded: last + 1."""
    out: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        out[key] = max(out.get(key, -1), record.offset + 1)
    return out


@dataclass
class Batcher:
    """Decides when a batch is complete: BatchSize reached, the batching window elapsed since
    the first record arrived, or the payload would exceed the invoke limit.

    Feed it with :meth:`add`; records that do not fit are kept in :attr:`carry` and start the
    next batch. ``clock`` is injectable for tests.
    """

    batch_size: int = DEFAULT_BATCH_SIZE
    window_s: float = DEFAULT_BATCHING_WINDOW_S
    max_bytes: int = MAX_PAYLOAD_BYTES
    clock: Callable[[], float] = time.monotonic
    records: list[Any] = field(default_factory=list)
    carry: list[Any] = field(default_factory=list)
    _bytes: int = 0
    _first_at: float | None = None

    def add(self, new_records: Iterable[Any]) -> None:
        for record in new_records:
            if self.carry or self.is_full():
                self.carry.append(record)
                continue
            size = record_size(record)
            if self.records and self._bytes + size > self.max_bytes:
                self.carry.append(record)
                continue
            if self._first_at is None:
                self._first_at = self.clock()
            self.records.append(record)
            self._bytes += size

    def is_full(self) -> bool:
        return len(self.records) >= self.batch_size or (
            bool(self.records) and self._bytes >= self.max_bytes) or bool(self.carry)

    def window_left(self) -> float | None:
        """Seconds until the window closes (None while empty; 0 when it is closed)."""
        if self._first_at is None:
            return None
        return max(0.0, self._first_at + self.window_s - self.clock())

    def ready(self) -> bool:
        if not self.records:
            return False
        return self.is_full() or self.window_left() == 0.0

    def room(self) -> int:
        return max(0, self.batch_size - len(self.records) - len(self.carry))

    def take(self) -> list[Any]:
        """Hand out the current batch and start the next one from the carried records."""
        batch = self.records
        carry = self.carry
        self.records, self.carry, self._bytes, self._first_at = [], [], 0, None
        self.add(carry)
        return batch


@dataclass
class OffsetGuard:
    """Drops records the poller already handed to the function, per partition.

    Why: after a seek, a consumer reset or a rebalance the consumer re-reads from the last
    committed offset, while records after it may still sit in the open batch; handing them
    out twice would make the function see duplicates within one invocation. The guard
    remembers the next offset per partition and passes only records at or after it.

    Gaps are passed through: a real Kafka log has legitimate offset gaps (transaction
    control records, compacted-away records), so a gap is never waited on.
    """

    expected: dict[Any, int] = field(default_factory=dict)

    def start(self, tp: Any, offset: int | None) -> None:
        """The partition's next offset as known from outside (e.g. the group's commit)."""
        if offset is not None:
            self.expected[tp] = offset

    def knows(self, tp: Any) -> bool:
        return tp in self.expected

    def accept(self, tp: Any, records: list[Any]) -> list[Any]:
        """The records not handed out before, in order; the partition's position moves past them."""
        want = self.expected.get(tp)
        keep = [r for r in records if want is None or r.offset >= want]
        if keep:
            self.expected[tp] = keep[-1].offset + 1
        return keep

    def forget(self) -> None:
        """A new consumer re-reads from the committed offsets: start over."""
        self.expected.clear()


@dataclass
class RetryPolicy:
    """Retries of a failed batch. AWS retries Kafka batches until they succeed unless
    ``MaximumRetryAttempts`` is set (>= 0); then, after that many retries, the batch goes to
    the on-failure destination (if any) and is committed. Backoff doubles from ``initial_s``
    up to ``max_s``."""

    maximum_retry_attempts: int = -1
    initial_s: float = 0.5
    max_s: float = 30.0

    def exhausted(self, failed_attempts: int) -> bool:
        """``failed_attempts`` counts the first try as well."""
        if self.maximum_retry_attempts is None or self.maximum_retry_attempts < 0:
            return False
        return failed_attempts > self.maximum_retry_attempts

    def backoff(self, failed_attempts: int) -> float:
        return min(self.max_s, self.initial_s * (2 ** max(0, failed_attempts - 1)))


def failure_records(records: list[KafkaRecord], *, esm_uuid: str, function_arn: str,
                    bootstrap_servers: str, event_source_arn: str | None, attempts: int,
                    status_code: int, function_error: str | None,
                    payload: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """On-failure destination documents, one per topic-partition of the failed batch, in the
    shape AWS documents for Kafka (``requestContext``/``responseContext``/``KafkaBatchInfo``).
    ``payload`` (the invocation event) is included for S3 destinations, as AWS does."""
    now = datetime.datetime.now(datetime.timezone.utc)
    out = []
    per_tp: dict[tuple[str, int], list[KafkaRecord]] = {}
    for record in records:
        per_tp.setdefault((record.topic, record.partition), []).append(record)
    for (topic, partition), recs in per_tp.items():
        recs.sort(key=lambda r: r.offset)
        info: dict[str, Any] = {
            "batchSize": len(recs),
            "topic": topic,
            "partition": partition,
            "firstOffset": recs[0].offset,
            "lastOffset": recs[-1].offset,
            "firstRecordTimestamp": _iso_ms(recs[0].timestamp),
            "lastRecordTimestamp": _iso_ms(recs[-1].timestamp),
            "bootstrapServers": bootstrap_servers,
        }
        if event_source_arn:
            info["eventSourceArn"] = event_source_arn
        doc: dict[str, Any] = {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": function_arn,
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": attempts,
            },
            "responseContext": {
                "statusCode": status_code,
                "executedVersion": "$LATEST",
                "functionError": function_error or "Unhandled",
            },
            "version": "1.0",
            "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
            "KafkaBatchInfo": info,
            "esmUuid": esm_uuid,
        }
        if payload is not None:
            doc["payload"] = payload
        out.append(doc)
    return out


def _iso_ms(ts_ms: int) -> str:
    dt = datetime.datetime.fromtimestamp(ts_ms / 1000, datetime.timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def s3_failure_key(esm_uuid: str, partition: int, now: datetime.datetime | None = None) -> str:
    """Object key AWS uses for Kafka on-failure records in S3."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return (f"aws/lambda/{esm_uuid}/{partition}/{now:%Y/%m/%d}/"
            f"{now:%Y-%m-%dT%H.%M.%S}-{uuid.uuid4()}")


# ------------------------------------------------------------------- mapping configuration
def is_kafka_mapping(source_service: str, config: dict[str, Any]) -> bool:
    """LocalStack passes ``"kafka"`` for an MSK cluster ARN and ``""`` for a mapping without
    EventSourceArn (self-managed Kafka)."""
    if source_service == "kafka":
        return True
    return not source_service and bool(config.get("SelfManagedEventSource"))


def apply_kafka_defaults(defaults: dict[str, Any], service: str) -> None:
    """AWS's defaults for a Kafka mapping (the request's own values are merged over these):
    BatchSize 100, retries forever, TRIM_HORIZON, consumer group = the mapping UUID."""
    defaults.setdefault("BatchSize", DEFAULT_BATCH_SIZE)
    defaults.setdefault("MaximumRetryAttempts", -1)
    defaults.setdefault("StartingPosition", "TRIM_HORIZON")
    key = ("AmazonManagedKafkaEventSourceConfig" if service == "kafka"
           else "SelfManagedKafkaEventSourceConfig")
    defaults.setdefault(key, {"ConsumerGroupId": defaults["UUID"]})


def bootstrap_servers_for(config: dict[str, Any], environ: dict[str, str] | None = None) -> str:
    """Self-managed: the mapping's KAFKA_BOOTSTRAP_SERVERS; MSK: ``MOVIERECS_MSK_BOOTSTRAP``
    (there is no MSK emulator; the local broker stands in for every cluster ARN)."""
    environ = os.environ if environ is None else environ
    if config.get("EventSourceArn"):
        servers = environ.get("MOVIERECS_MSK_BOOTSTRAP", "")
        if not servers:
            raise ValueError("MSK mapping needs MOVIERECS_MSK_BOOTSTRAP (host:port of the local "
                             "Kafka broker) in LocalStack's environment")
        return servers
    endpoints = (config.get("SelfManagedEventSource") or {}).get("Endpoints") or {}
    servers = endpoints.get("KAFKA_BOOTSTRAP_SERVERS") or []
    if not servers:
        raise ValueError("SelfManagedEventSource.Endpoints.KAFKA_BOOTSTRAP_SERVERS is empty")
    return ",".join(servers)


def consumer_group_for(config: dict[str, Any]) -> str:
    """ConsumerGroupId of the mapping's Kafka config, else the mapping UUID (AWS's rule)."""
    for key in ("SelfManagedKafkaEventSourceConfig", "AmazonManagedKafkaEventSourceConfig"):
        group = (config.get(key) or {}).get("ConsumerGroupId")
        if group:
            return group
    return config["UUID"]
