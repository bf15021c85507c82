"""experiments: the scheduled rule's target (EventBridge, every few minutes). Concludes the
running experiment when its stopping rules decide: promote the candidate or keep the control
(``movierecs_core.experiments.check``); one version is then served to everyone."""
from __future__ import annotations

from typing import Any

from movierecs_core import experiments
from movierecs_core.config import settings
from movierecs_core.observability import make_tools
from movierecs_core.stores.aws import s3_client
from movierecs_core.stores.clickhouse import get_client
from movierecs_core.stores.postgres import Postgres
from movierecs_serving import ModelStore

cfg = settings()
logger, metrics, tracer = make_tools("experiments")
db = Postgres(cfg.postgres_dsn)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    store = ModelStore(s3_client(), cfg.model_bucket, prefix=cfg.model_prefix)
    result = experiments.check(db, store, get_client(cfg.clickhouse_url), cfg.like_window_seconds, cfg.model_cache_dir)
    logger.info("experiment check", extra={"result": result})
    return result
