"""plux plugin objects (the entry points in pyproject.toml point here).

Kept import-light: LocalStack loads every plugin module of a namespace while resolving names,
so the heavy modules are imported only when the plugin is actually used.
"""

from __future__ import annotations

from typing import Any

from localstack.runtime import hooks as runtime_hooks
from localstack.services.lambda_ import hooks as lambda_hooks
from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class MovieRecsProcessExecutorPlugin(RuntimeExecutorPlugin):
    """``LAMBDA_RUNTIME_EXECUTOR=movierecs-process``."""

    name = "movierecs-process"

    def load(self, *args: Any, **kwargs: Any):
        from movierecs_localstack.executor import ProcessRuntimeExecutor

        return ProcessRuntimeExecutor


@lambda_hooks.create_event_source_poller()
def movierecs_kafka_poller(poller_holder: Any, source_service: str, esm_config: dict) -> None:
    """Provide a poller for self-managed Kafka and MSK event source mappings."""
    from movierecs_localstack.kafka_poller import create_poller_hook

    create_poller_hook(poller_holder, source_service, esm_config)


@lambda_hooks.set_event_source_config_defaults()
def movierecs_kafka_defaults(defaults: dict, request: dict, service: str) -> None:
    """AWS's defaults for Kafka mappings (batch size, consumer group, retries)."""
    from movierecs_localstack.kafka_poller import set_defaults_hook

    set_defaults_hook(defaults, request, service)


@runtime_hooks.on_runtime_create()
def movierecs_bind_gateway_to_loopback() -> None:
    """Bind the gateway to GATEWAY_LISTEN's host (127.0.0.1), not every interface."""
    from movierecs_localstack.loopback import bind_gateway_to_configured_host

    bind_gateway_to_configured_host()


@runtime_hooks.on_runtime_create()
def movierecs_release_finished_threads() -> None:
    """Let finished threads go (LocalStack's TMP_THREADS pins their stacks on Python 3.13)."""
    from movierecs_localstack.threads import release_finished_threads

    release_finished_threads()
