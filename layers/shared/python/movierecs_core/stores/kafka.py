"""Kafka: the producer of an execution environment (kafka-python), created once and reused.

``send_and_wait`` returns only after the broker acknowledged the record (acks='all'), so the
API's 202 is never a lie; when the broker is unreachable it raises the neutral
``Unavailable`` (the web layer answers 503). The consumer side is the event source mapping:
records arrive as a Lambda event (``movierecs_core.consumer``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import Shared, Unavailable


def _new_producer(bootstrap: str) -> Any:
    from kafka import KafkaProducer

    return KafkaProducer(
        bootstrap_servers=[s.strip() for s in bootstrap.split(",") if s.strip()],
        acks="all",
        # Idempotent: a retry after a lost ack does not write the like twice (the consumer
        # would drop the copy by event id anyway).
        enable_idempotence=True,
        linger_ms=0,
        retries=3,
        request_timeout_ms=4000,
        max_block_ms=4000,
        reconnect_backoff_max_ms=1000,
        client_id="movierecs-like-ingest",
    )


def _make(bootstrap: str) -> Any:
    try:
        return _new_producer(bootstrap)
    except Exception as exc:
        raise Unavailable(
            f"the event broker is unavailable ({type(exc).__name__}); the like was not recorded, retry shortly"
        ) from exc


_producers: Shared[Any] = Shared(_make, lambda p: p.close(timeout=0))


def get_producer(bootstrap: str) -> Any:
    """The shared producer (connects on first use)."""
    return _producers.get(bootstrap)


def reset_producer(bootstrap: str) -> None:
    """Drop a producer that failed, so the next request builds a fresh one."""
    _producers.reset(bootstrap)


def send_and_wait(bootstrap: str, topic: str, key: bytes, value: bytes, timeout: float = 5.0) -> Any:
    """Produce one record and wait for the broker's acknowledgement; returns its metadata."""
    producer = get_producer(bootstrap)
    try:
        return producer.send(topic, key=key, value=value).get(timeout=timeout)
    except Exception as exc:
        reset_producer(bootstrap)
        raise Unavailable(
            f"the event broker did not acknowledge the like ({type(exc).__name__}); it was not recorded, retry shortly"
        ) from exc


def send_batch(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], timeout: float = 10.0) -> None:
    """Produce ``(key, value)`` records and wait until the broker acknowledged every one; any
    failure raises ``Unavailable`` (the caller keeps the batch and retries: the consumer
    de-duplicates what an earlier attempt already wrote)."""
    producer = get_producer(bootstrap)
    try:
        futures = [producer.send(topic, key=k, value=v) for k, v in records]
        for f in futures:
            f.get(timeout=timeout)
    except Exception as exc:
        reset_producer(bootstrap)
        raise Unavailable(f"the event broker did not acknowledge {len(records)} records ({type(exc).__name__})") from exc


def consumer_lag(bootstrap: str, group: str, topic: str, timeout_ms: int = 3000) -> list[dict[str, int]]:
    """Per partition of ``topic``: the group's committed offset, the log end and the lag.

    What an operator asks first when likes arrive late: is the consumer behind, and where?
    A partition the group never committed counts from the log start (TRIM_HORIZON).
    """
    from kafka import KafkaAdminClient, TopicPartition
    from kafka.admin import OffsetSpec

    admin = KafkaAdminClient(bootstrap_servers=[s.strip() for s in bootstrap.split(",") if s.strip()],
                             request_timeout_ms=timeout_ms, client_id="movierecs-lag")
    try:
        described = [t for t in admin.describe_topics([topic]) if not t.get("error_code")]
        parts = sorted(p["partition"] if "partition" in p else p["partition_index"]
                       for t in described for p in (t.get("partitions") or []))
        tps = [TopicPartition(topic, p) for p in parts]
        if not tps:
            return []
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps}, timeout_ms=timeout_ms)
        starts = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in tps}, timeout_ms=timeout_ms)
        committed = admin.list_group_offsets({group: tps}).get(group, {})
        out = []
        for tp in tps:
            end, start = ends[tp].offset, starts[tp].offset
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else start
            out.append({"partition": tp.partition, "committed": done, "end": end, "lag": max(0, end - max(done, start))})
        return out
    finally:
        admin.close()
