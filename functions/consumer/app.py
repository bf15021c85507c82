"""consumer: the Kafka event source mapping's target (topic ``interactions`` -> ClickHouse,
the history, and PostgreSQL, the serving state).

Raises when either store is unavailable, so the mapping retries the batch and commits nothing.
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from movierecs_core.config import settings
from movierecs_core.consumer import decode_event, store
from movierecs_core.observability import make_tools
from movierecs_core.stores.clickhouse import get_client, reset_client
from movierecs_core.stores.postgres import Postgres

cfg = settings()
logger, metrics, tracer = make_tools("consumer")
serving_state = Postgres(cfg.postgres_dsn)  # one connection per execution environment


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    decoded = decode_event(event)
    try:
        result = store(get_client(cfg.clickhouse_url), serving_state, decoded)
    except Exception:
        reset_client(cfg.clickhouse_url)
        logger.exception(
            "storing a batch of %d records failed (ClickHouse or PostgreSQL); failing the invocation so the "
            "batch is retried", decoded.total,
        )
        raise
    metrics.add_metric(name="LikesInserted", unit=MetricUnit.Count, value=result.inserted)
    metrics.add_metric(name="LikesDuplicate", unit=MetricUnit.Count, value=result.already_stored + result.duplicates_in_batch)
    metrics.add_metric(name="DeadLetters", unit=MetricUnit.Count, value=result.dead_letters)
    if result.dead_letters:
        logger.warning("%d record(s) went to dead_letters", result.dead_letters)
    logger.info("batch stored", extra=result.as_dict())
    return result.as_dict()
