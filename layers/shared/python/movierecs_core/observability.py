"""Powertools Logger, Metrics (EMF) and Tracer for one function, built the same way everywhere.

When tracing is disabled (``POWERTOOLS_TRACE_DISABLED``, set locally where no X-Ray daemon
listens) the Tracer gets a no-op provider: the X-Ray SDK's import alone costs ~0.3 s of cold
start on these machines, for traces nobody receives.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider

NAMESPACE = "MovieRecs"


class _NoopSegment:
    """Accepts whatever the Tracer records on a subsegment, and drops it."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _NoopProvider(BaseProvider):
    """A tracing provider that records nothing (used when tracing is disabled)."""

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        return None

    def patch(self, modules: Any) -> None:
        return None

    def patch_all(self) -> None:
        return None

    @contextlib.contextmanager
    def in_subsegment(self, name: str = "", **kwargs: Any):
        yield _NoopSegment()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: str = "", **kwargs: Any):
        yield _NoopSegment()


def tracing_disabled() -> bool:
    """True where traces would go nowhere."""
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").lower() in ("1", "true")


def make_tools(service: str) -> tuple[Logger, Metrics, Tracer]:
    """Logger (JSON lines), Metrics (EMF to stdout) and Tracer for ``service``."""
    logger = Logger(service=service)
    metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE), service=service)
    if tracing_disabled():
        tracer = Tracer(service=service, provider=_NoopProvider(), auto_patch=False)
    else:  # pragma: no cover - real X-Ray on AWS
        tracer = Tracer(service=service)
    return logger, metrics, tracer
