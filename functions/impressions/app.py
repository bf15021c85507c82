"""impressions: the Kafka event source mapping's target for topic ``impressions`` -> ClickHouse.

Every list the API served, stored once per request id (``movierecs_core.impressions``). Raises
when ClickHouse is unavailable, so the mapping retries the batch and commits nothing.
"""
from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from movierecs_core import impressions
from movierecs_core.config import settings
from movierecs_core.observability import make_tools
from movierecs_core.stores.clickhouse import get_client, reset_client

cfg = settings()
logger, metrics, tracer = make_tools("impressions")


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    decoded = impressions.decode_event(event)
    try:
        result = impressions.store(get_client(cfg.clickhouse_url), decoded)
    except Exception:
        reset_client(cfg.clickhouse_url)
        logger.exception("storing %d impressions failed (ClickHouse); failing the invocation so the batch is retried",
                         decoded.total)
        raise
    metrics.add_metric(name="ImpressionsInserted", unit=MetricUnit.Count, value=result["inserted"])
    if result["dead_letters"]:
        logger.warning("%d record(s) went to dead_letters", result["dead_letters"])
    logger.info("impressions stored", extra=result)
    return result
