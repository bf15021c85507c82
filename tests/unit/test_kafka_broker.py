"""The local Kafka broker's settings and configuration (no JVM): validation, rendering,
and that a bad setting or a missing Java stops ``up`` before anything starts."""
from __future__ import annotations

import pytest

from movierecs_stack import kafka_broker
from movierecs_stack.config import Layout
from movierecs_stack.kafka_broker import BrokerConfigError, BrokerLayout, BrokerSettings
from movierecs_stack.services import KAFKA, Ctx, Service, ServiceError
from movierecs_stack.stack import Stack


def test_defaults_when_nothing_is_set():
    s = BrokerSettings.from_env({})
    assert s == BrokerSettings()
    assert s.topic_configs() == {"retention.ms": str(7 * 24 * 3600 * 1000), "retention.bytes": str(1024**3),
                                 "segment.bytes": str(64 * 1024**2), "cleanup.policy": "delete"}


def test_settings_are_read_from_the_environment():
    s = BrokerSettings.from_env({"MOVIERECS_KAFKA_RETENTION_MS": "60000", "MOVIERECS_KAFKA_RETENTION_BYTES": "5000000",
                                 "MOVIERECS_KAFKA_PARTITIONS": "6", "MOVIERECS_KAFKA_HEAP_MB": "256"})
    assert (s.retention_ms, s.retention_bytes, s.partitions, s.heap_mb) == (60000, 5000000, 6, 256)


@pytest.mark.parametrize("raw", ["-1", "0", "1h", "1e6", "１０", " ", "3.5"])
def test_a_retention_that_is_not_a_positive_number_is_refused_by_name(raw):
    if not raw.strip():
        assert BrokerSettings.from_env({"MOVIERECS_KAFKA_RETENTION_MS": raw}).retention_ms == kafka_broker.DEFAULT_RETENTION_MS
        return
    with pytest.raises(BrokerConfigError, match="MOVIERECS_KAFKA_RETENTION_MS") as ei:
        BrokerSettings.from_env({"MOVIERECS_KAFKA_RETENTION_MS": raw})
    assert "positive whole number" in str(ei.value)


def test_too_small_segment_or_heap_is_refused():
    with pytest.raises(BrokerConfigError, match="MOVIERECS_KAFKA_SEGMENT_BYTES"):
        BrokerSettings.from_env({"MOVIERECS_KAFKA_SEGMENT_BYTES": "1000"})
    with pytest.raises(BrokerConfigError, match="MOVIERECS_KAFKA_HEAP_MB"):
        BrokerSettings.from_env({"MOVIERECS_KAFKA_HEAP_MB": "16"})


def test_server_properties_bind_loopback_in_kraft_mode(tmp_path):
    text = kafka_broker.server_properties(tmp_path / "data", 19092, 19093)
    props = dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["log.dirs"] == str(tmp_path / "data")
    assert props["auto.create.topics.enable"] == "false"
    # the capped heap needs a small log-cleaner buffer (Kafka's default is 128 MB)
    assert int(props["log.cleaner.dedupe.buffer.size"]) <= 16 * 1024**2


def test_jvm_heap_is_capped(tmp_path):
    args = kafka_broker.jvm_args(BrokerSettings(heap_mb=200), tmp_path, BrokerLayout(tmp_path / "state"))
    assert "-Xmx200m" in args and "-XX:+ExitOnOutOfMemoryError" in args


def test_cluster_id_has_kafkas_shape():
    cid = kafka_broker.new_cluster_id()
    assert len(cid) == 22 and "=" not in cid and cid != kafka_broker.new_cluster_id()


def test_no_java_says_what_is_missing_and_how_to_get_it(tmp_path):
    with pytest.raises(BrokerConfigError, match="Java is missing.*openjdk-17"):
        kafka_broker.java_bin({"PATH": str(tmp_path)})


def test_missing_jars_say_run_make_up(tmp_path):
    java = tmp_path / "bin" / "java"
    java.parent.mkdir()
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    with pytest.raises(BrokerConfigError, match="jars are missing.*make up"):
        kafka_broker.check_installed(BrokerLayout(tmp_path / "state"), {"JAVA_HOME": str(tmp_path)})


def test_tansu_data_is_moved_aside_not_deleted(tmp_path):
    data = tmp_path / "kafka"
    (data / "tansu").mkdir(parents=True)
    (data / "tansu" / "watermark.json").write_text("{}")
    moved = kafka_broker.retire_foreign_data(data)
    assert moved is not None and (moved / "tansu" / "watermark.json").exists() and not data.exists()
    data.mkdir()
    (data / "meta.properties").write_text("node.id=1\n")
    assert kafka_broker.retire_foreign_data(data) is None  # a Kafka log folder stays


def _recorder(name: str, started: list[str]) -> Service:
    def start(ctx):
        started.append(name)
        raise AssertionError("must not start")

    return Service(name, "postgres", name, start, lambda ctx: False)


@pytest.mark.parametrize("env, message", [
    ({"MOVIERECS_KAFKA_RETENTION_BYTES": "-1"}, "MOVIERECS_KAFKA_RETENTION_BYTES"),
    ({"PATH": "/nonexistent", "JAVA_HOME": ""}, "Java is missing"),
])
def test_up_refuses_before_starting_anything(tmp_path, env, message):
    """A bad broker setting or no Java: a clear message, and no half-started stack."""
    import socket

    from movierecs_stack.config import PORTS

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    started: list[str] = []
    ports = {var: str(free_port()) for _, var in PORTS.values()}
    ctx = Ctx(Layout(root=tmp_path), {"PATH": "/usr/bin:/bin", **ports, **env})
    stack = Stack(ctx, backing=(_recorder("first", started), KAFKA), frontend=None)
    with pytest.raises(ServiceError, match=message):
        stack.up(deploy_app=False, bootstrap=False)
    assert started == [] and stack.pids.names() == []
