"""Paths and ports of the local stack (one place, so tests can point it elsewhere)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# service -> (default port, env var that overrides it); see docs/DESIGN.md
PORTS: dict[str, tuple[int, str]] = {
    "postgres": (15432, "MOVIERECS_POSTGRES_PORT"),
    "clickhouse": (18123, "MOVIERECS_CLICKHOUSE_PORT"),
    "localstack": (4566, "MOVIERECS_LOCALSTACK_PORT"),
    "kafka": (19092, "MOVIERECS_KAFKA_PORT"),
    "kafka_controller": (19093, "MOVIERECS_KAFKA_CONTROLLER_PORT"),  # the broker's KRaft controller listener
    "frontend": (13000, "MOVIERECS_FRONTEND_PORT"),
}

LOCALSTACK_SERVICES = ("lambda,s3,iam,sts,logs,apigateway,stepfunctions,events,sqs,sns,cloudformation,"
                       "ssm,secretsmanager")
KAFKA_TOPIC = "interactions"
# every list the API served (issue 13); same partitions and retention as the likes topic
IMPRESSIONS_TOPIC = "impressions"
KAFKA_PARTITIONS = 3
HOST = "127.0.0.1"


def port_for(service: str, env: dict[str, str] | None = None) -> int:
    """The port of a service: its MOVIERECS_*_PORT env var, else the default."""
    default, var = PORTS[service]
    raw = (env if env is not None else os.environ).get(var)
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"{var}={raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise SystemExit(f"{var}={port} is out of range 1..65535")
    return port


@dataclass(frozen=True)
class Layout:
    """Where the stack keeps its state (all under <root>/.movierecs, git-ignored)."""

    root: Path = ROOT
    state: Path = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.state is None:
            object.__setattr__(self, "state", self.root / ".movierecs")

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def localstack_root(self) -> Path:
        return self.state / "localstack"

    @property
    def endpoints_file(self) -> Path:
        return self.state / "endpoints.json"

    @property
    def admin_key_file(self) -> Path:
        return self.state / "admin_api_key"

    @property
    def project_python(self) -> Path:
        return self.root / ".venv" / "bin" / "python"

    @property
    def localstack_python(self) -> Path:
        return self.state / "venvs" / "localstack" / "bin" / "python"

    @property
    def sam_bin(self) -> Path:
        return self.state / "venvs" / "sam" / "bin"

