"""Settings the functions read from their environment (names fixed in docs/DESIGN.md).

One frozen object per process, so every module agrees on endpoints and nobody reads
``os.environ`` ad hoc.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


class SettingsError(RuntimeError):
    """An environment variable holds a value the functions cannot use (the message says which)."""


def _tolerance(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"PROMOTE_TOLERANCE={raw!r} is not a number (e.g. 0.02)") from None
    if not 0.0 <= value < 1.0:
        raise SettingsError(f"PROMOTE_TOLERANCE={raw!r} must be in [0, 1)")
    return value


def _share(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"EXPLORATION_SHARE={raw!r} is not a number (e.g. 0.1; 0 disables)") from None
    if not 0.0 <= value <= 0.5:
        raise SettingsError(f"EXPLORATION_SHARE={raw!r} must be in [0, 0.5]")
    return value


@dataclass(frozen=True)
class Settings:
    """Endpoints and names; defaults are the local stack's (docs/DESIGN.md, Ports)."""

    clickhouse_url: str = "http://127.0.0.1:18123"
    postgres_dsn: str = "postgresql://movierecs@127.0.0.1:15432/movierecs"
    kafka_bootstrap: str = "127.0.0.1:19092"
    kafka_topic: str = "interactions"
    # the consumer function's event source mapping reads the topic as this group (template.yaml)
    kafka_consumer_group: str = "movierecs-consumer"
    # every list served goes to this topic (issue 13); its own topic, so impressions never
    # queue in front of likes and their 5 s freshness
    impressions_topic: str = "impressions"
    impressions_enabled: bool = True
    # a like counts for an impression that showed the movie at most this long before it
    like_window_seconds: int = 1800
    model_bucket: str = ""
    model_prefix: str = "models/"
    model_cache_dir: str = "/tmp/movierecs-models"
    model_check_seconds: float = 2.0
    #: Share of a recommendation page's slots offered to movies added through the API that no
    #: model knows yet, when the user's taste matches them (issue 12, part 3); 0 disables.
    exploration_share: float = 0.1
    state_machine_arn: str = ""
    admin_api_key: str = ""
    function_log_groups: tuple[str, ...] = ()
    function_name: str = "local"
    telemetry_enabled: bool = True
    # retraining (functions/training): the promotion rule and the serving check
    promote_tolerance: float = 0.02
    # canary promotion (issue 13): a share > 0 makes the retrain start an experiment instead
    canary_share: float = 0.0
    canary_min_impressions: int = 2000
    canary_max_hours: float = 72.0
    serving_function: str = ""
    verify_timeout_s: float = 30.0

    def require(self, name: str) -> str:
        """The value of field ``name``; SettingsError naming its variable when it is empty."""
        value = getattr(self, name)
        if value in ("", None):
            raise SettingsError(f"environment variable {name.upper()} is not set (template.yaml sets it)")
        return value

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Settings":
        """Read the settings from ``env`` (default: ``os.environ``)."""
        e = os.environ if env is None else env
        d = cls()
        groups = tuple(g for g in e.get("FUNCTION_LOG_GROUPS", "").split(",") if g.strip())
        return cls(
            clickhouse_url=e.get("CLICKHOUSE_URL", d.clickhouse_url),
            postgres_dsn=e.get("POSTGRES_DSN", d.postgres_dsn),
            kafka_bootstrap=e.get("KAFKA_BOOTSTRAP", d.kafka_bootstrap),
            kafka_topic=e.get("KAFKA_TOPIC", d.kafka_topic),
            kafka_consumer_group=e.get("KAFKA_CONSUMER_GROUP", d.kafka_consumer_group),
            impressions_topic=e.get("KAFKA_IMPRESSIONS_TOPIC", d.impressions_topic),
            impressions_enabled=e.get("MOVIERECS_IMPRESSIONS", "1") not in ("0", "false", "no", "off"),
            like_window_seconds=int(e.get("LIKE_WINDOW_SECONDS", d.like_window_seconds)),
            model_bucket=e.get("MODEL_BUCKET", d.model_bucket),
            model_prefix=e.get("MODEL_PREFIX", d.model_prefix),
            model_cache_dir=e.get("MODEL_CACHE_DIR", d.model_cache_dir),
            model_check_seconds=float(e.get("MODEL_CHECK_SECONDS", d.model_check_seconds)),
            exploration_share=_share(e.get("EXPLORATION_SHARE", str(d.exploration_share))),
            state_machine_arn=e.get("STATE_MACHINE_ARN", d.state_machine_arn),
            admin_api_key=e.get("ADMIN_API_KEY", d.admin_api_key),
            function_log_groups=tuple(g.strip() for g in groups),
            function_name=e.get("AWS_LAMBDA_FUNCTION_NAME", d.function_name),
            telemetry_enabled=e.get("MOVIERECS_TELEMETRY", "1") not in ("0", "false", "no"),
            promote_tolerance=_tolerance(e.get("PROMOTE_TOLERANCE", str(d.promote_tolerance))),
            canary_share=float(e.get("CANARY_SHARE", d.canary_share) or 0),
            canary_min_impressions=int(e.get("CANARY_MIN_IMPRESSIONS", d.canary_min_impressions)),
            canary_max_hours=float(e.get("CANARY_MAX_HOURS", d.canary_max_hours)),
            serving_function=e.get("SERVING_FUNCTION", d.serving_function),
            verify_timeout_s=float(e.get("VERIFY_TIMEOUT_S", d.verify_timeout_s)),
        )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings (read once per execution environment)."""
    return Settings.from_env()
