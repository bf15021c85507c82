"""The local Apache Kafka broker: settings, its server.properties, first-time format, topic.

One combined broker/controller in KRaft mode, the same broker MSK and compose.yaml run
(version pinned in infra/kafka/pom.xml, jars in ``.movierecs/kafka/libs``). Everything here
is plain data and subprocess calls, so the unit tests check the settings and the rendered
configuration without a JVM.

Why these JVM and broker settings: the whole local stack should idle near 1 GB. Kafka's
defaults assume a server (1 GB heap, a 128 MB log-cleaner buffer); a 1-partition-per-
thread local broker needs a fraction of that. The log cleaner must keep a small buffer or
the capped heap runs out when it starts (``__consumer_offsets`` is compacted).
"""
from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .config import HOST, KAFKA_PARTITIONS, KAFKA_TOPIC

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"

#: MSK's defaults for comparison (docs/local-cloud.md): log.retention.hours=168, retention.bytes=-1.
DEFAULT_RETENTION_MS = 7 * 24 * 3600 * 1000
#: Per partition; MSK leaves it unbounded (-1). Locally the disk is bounded instead.
DEFAULT_RETENTION_BYTES = 1024**3
#: Smaller than Kafka's 1 GiB so retention (which deletes whole closed segments) acts in steps
#: a laptop disk notices.
DEFAULT_SEGMENT_BYTES = 64 * 1024**2
DEFAULT_HEAP_MB = 192

#: env var -> (what it sets, default); each must be a positive whole number.
SETTINGS_ENV: dict[str, tuple[str, int]] = {
    "MOVIERECS_KAFKA_RETENTION_MS": ("retention.ms of the topic", DEFAULT_RETENTION_MS),
    "MOVIERECS_KAFKA_RETENTION_BYTES": ("retention.bytes per partition of the topic", DEFAULT_RETENTION_BYTES),
    "MOVIERECS_KAFKA_SEGMENT_BYTES": ("segment.bytes of the topic", DEFAULT_SEGMENT_BYTES),
    "MOVIERECS_KAFKA_PARTITIONS": ("partition count of the topic", KAFKA_PARTITIONS),
    "MOVIERECS_KAFKA_HEAP_MB": ("the broker's maximum Java heap in MB", DEFAULT_HEAP_MB),
}


class BrokerConfigError(ValueError):
    """A broker setting or prerequisite is wrong; the message names it and what to do."""


def _positive(env: dict[str, str], var: str) -> int:
    what, default = SETTINGS_ENV[var]
    raw = env.get(var, "").strip()
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) <= 0:
        raise BrokerConfigError(f"{var}={raw!r} is not a positive whole number ({what}; default {default}). "
                                f"Unset it or set e.g. {var}={default}.")
    return int(raw)


@dataclass(frozen=True)
class BrokerSettings:
    """What the operator can set (``MOVIERECS_KAFKA_*``), validated once."""

    retention_ms: int = DEFAULT_RETENTION_MS
    retention_bytes: int = DEFAULT_RETENTION_BYTES
    segment_bytes: int = DEFAULT_SEGMENT_BYTES
    partitions: int = KAFKA_PARTITIONS
    heap_mb: int = DEFAULT_HEAP_MB

    @classmethod
    def from_env(cls, env: dict[str, str]) -> "BrokerSettings":
        s = cls(retention_ms=_positive(env, "MOVIERECS_KAFKA_RETENTION_MS"),
                retention_bytes=_positive(env, "MOVIERECS_KAFKA_RETENTION_BYTES"),
                segment_bytes=_positive(env, "MOVIERECS_KAFKA_SEGMENT_BYTES"),
                partitions=_positive(env, "MOVIERECS_KAFKA_PARTITIONS"),
                heap_mb=_positive(env, "MOVIERECS_KAFKA_HEAP_MB"))
        if s.segment_bytes < 1024**2:
            raise BrokerConfigError(f"MOVIERECS_KAFKA_SEGMENT_BYTES={s.segment_bytes} is below Kafka's minimum "
                                    f"segment size (1048576 bytes).")
        if s.heap_mb < 96:
            raise BrokerConfigError(f"MOVIERECS_KAFKA_HEAP_MB={s.heap_mb} is too small for the broker (96 or more).")
        return s

    def topic_configs(self) -> dict[str, str]:
        """The topic-level configuration the stack keeps ``interactions`` at."""
        return {"retention.ms": str(self.retention_ms), "retention.bytes": str(self.retention_bytes),
                "segment.bytes": str(self.segment_bytes), "cleanup.policy": "delete"}


@dataclass(frozen=True)
class BrokerLayout:
    """Where the broker's files live (all under ``.movierecs``)."""

    state: Path

    @property
    def libs(self) -> Path:
        return self.state / "kafka" / "libs"

    @property
    def config_dir(self) -> Path:
        return self.state / "kafka"

    @property
    def properties(self) -> Path:
        return self.config_dir / "server.properties"

    @property
    def data(self) -> Path:
        return self.state / "data" / "kafka"


def server_properties(data_dir: Path, port: int, controller_port: int) -> str:
    """The broker's server.properties: KRaft, one node that is broker and controller."""
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data_dir),
        # one broker: every internal topic has one replica
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "offsets.topic.num.partitions": "3",
        # topics are created by the stack with explicit settings, never by a typo'd producer
        "auto.create.topics.enable": "false",
        # a lone consumer group need not wait 3 s for more members
        "group.initial.rebalance.delay.ms": "0",
        # a small heap: see the module docstring
        "log.cleaner.dedupe.buffer.size": str(8 * 1024**2),
        "log.cleaner.io.buffer.size": str(256 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        # retention is checked every minute (default 5), so a bound set at `make up` shows soon
        "log.retention.check.interval.ms": "60000",
    }
    head = "# Written by the stack (infra/movierecs_stack/kafka_broker.py) on every start; edits are overwritten.\n"
    return head + "".join(f"{k}={v}\n" for k, v in props.items())


def java_bin(env: dict[str, str]) -> str:
    """The ``java`` to run the broker with: $JAVA_HOME/bin/java, else the one on PATH."""
    home = env.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return str(Path(home, "bin", "java"))
    found = shutil.which("java", path=env.get("PATH"))
    if not found:
        raise BrokerConfigError("Java is missing: the Kafka broker needs a Java 17 runtime. Install it "
                                "('apt-get install -y openjdk-17-jre-headless') and re-run 'make up'.")
    return found


def check_installed(layout: BrokerLayout, env: dict[str, str]) -> None:
    """Fail before anything starts when the broker cannot run (no Java, no jars)."""
    java_bin(env)
    if not any(layout.libs.glob("kafka_2.13-*.jar")):
        raise BrokerConfigError(f"the Kafka broker's jars are missing in {layout.libs}: run 'make up' "
                                f"(infra/install.sh fetches them with Maven from infra/kafka/pom.xml).")


def jvm_args(settings: BrokerSettings, root: Path, layout: BrokerLayout) -> list[str]:
    return [f"-Xms32m", f"-Xmx{settings.heap_mb}m", "-XX:+UseSerialGC", "-XX:MaxMetaspaceSize=96m",
            "-XX:ReservedCodeCacheSize=64m", "-XX:MaxDirectMemorySize=128m", "-Xss512k",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            # bind plain IPv4 sockets on 127.0.0.1 (not IPv4-mapped [::ffff:127.0.0.1] ones)
            "-Djava.net.preferIPv4Stack=true",
            f"-Dlog4j2.configurationFile={root / 'infra' / 'kafka' / 'log4j2.yaml'}",
            f"-Dkafka.logs.dir={layout.state / 'logs'}",
            "-cp", str(layout.libs / "*")]


def broker_argv(settings: BrokerSettings, root: Path, layout: BrokerLayout, env: dict[str, str]) -> list[str]:
    return [java_bin(env), *jvm_args(settings, root, layout), MAIN_CLASS, str(layout.properties)]


def new_cluster_id() -> str:
    """A KRaft cluster id: a random UUID, base64url without padding (what ``random-uuid`` prints)."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def is_formatted(data_dir: Path) -> bool:
    return (data_dir / "meta.properties").exists()


def retire_foreign_data(data_dir: Path) -> Path | None:
    """A data folder left by the earlier broker (Tansu's objects, no meta.properties) is moved
    aside, not deleted: ``<dir>.tansu-<time>``. Returns where it went, or None."""
    if not data_dir.exists() or is_formatted(data_dir) or not any(data_dir.iterdir()):
        return None
    target = data_dir.with_name(f"{data_dir.name}.tansu-{time.strftime('%Y%m%dT%H%M%S')}")
    data_dir.rename(target)
    return target


def format_storage(settings: BrokerSettings, root: Path, layout: BrokerLayout, env: dict[str, str],
                   log: Path) -> None:
    """Format the KRaft log folder once (a fresh data dir); later starts reuse it."""
    layout.data.mkdir(parents=True, exist_ok=True)
    if is_formatted(layout.data):
        return
    argv = [java_bin(env), *jvm_args(settings, root, layout), STORAGE_TOOL, "format",
            "-t", new_cluster_id(), "-c", str(layout.properties)]
    with open(log, "ab") as out:
        r = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=layout.state, timeout=120)
    if r.returncode or not is_formatted(layout.data):
        raise BrokerConfigError(f"formatting the Kafka log folder {layout.data} failed (exit {r.returncode}); "
                                f"see {log}")


def write_properties(layout: BrokerLayout, port: int, controller_port: int) -> str:
    text = server_properties(layout.data, port, controller_port)
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    tmp = layout.properties.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, layout.properties)
    return text


# --- the topic ---------------------------------------------------------------------------------------
def ensure_topic(bootstrap: str, settings: BrokerSettings, topic: str = KAFKA_TOPIC) -> str:
    """Create the topic with its partitions and retention, or bring an existing one to them.

    Idempotent. Partitions only grow (Kafka cannot remove one); a configured count below the
    existing one is reported, not applied. Returns a one-line summary.
    """
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000, client_id="movierecs-stack")
    try:
        existing = _partition_count(admin, topic)
        note = ""
        if existing is None:
            try:
                admin.create_topics([NewTopic(topic, settings.partitions, 1, topic_configs=settings.topic_configs())])
            except TopicAlreadyExistsError:
                pass
            deadline = time.monotonic() + 10
            while _partition_count(admin, topic) is None and time.monotonic() < deadline:
                time.sleep(0.2)
            existing = settings.partitions
        else:
            if existing < settings.partitions:
                admin.create_partitions({topic: settings.partitions})
                existing = settings.partitions
            elif existing > settings.partitions:
                note = f" (MOVIERECS_KAFKA_PARTITIONS={settings.partitions} ignored: partitions cannot be removed)"
            admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs=settings.topic_configs())])
        return (f"topic {topic}: {existing} partitions, retention.ms={settings.retention_ms}, "
                f"retention.bytes={settings.retention_bytes}/partition{note}")
    finally:
        admin.close()


def partition_counts(admin, topics: list[str] | None = None) -> dict[str, int]:
    """Topic -> partition count for the topics that exist (all non-internal ones when
    ``topics`` is None), from one metadata request of ``admin`` (a KafkaAdminClient)."""
    out = {}
    for t in admin.describe_topics(topics):
        name = t.get("name") or t.get("topic")  # kafka-python 2.x says "topic", 3.x says "name"
        if name and not t.get("error_code") and not t.get("is_internal"):
            out[name] = len(t.get("partitions") or [])
    return out


def _partition_count(admin, topic: str) -> int | None:
    return partition_counts(admin, [topic]).get(topic)
