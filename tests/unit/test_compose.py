"""compose.yaml (for machines with Docker) checked statically: Docker cannot run here."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_backing_services_present_with_expected_images(compose):
    svcs = compose["services"]
    expected = {"localstack": "localstack/localstack:", "kafka": "apache/kafka:",
                "clickhouse": "clickhouse/clickhouse-server:", "postgres": "postgres:15"}
    for name, prefix in expected.items():
        assert svcs[name]["image"].startswith(prefix), name


def test_every_image_is_pinned(compose):
    for name, svc in compose["services"].items():
        image = svc["image"]
        tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest" and re.match(r"^\d", tag), f"{name}: {image} is not pinned to a version"


def test_ports_are_loopback_and_match_the_design(compose):
    want = {"localstack": 4566, "kafka": 19092, "clickhouse": 18123, "postgres": 15432}
    for name, svc in compose["services"].items():
        for spec in svc.get("ports", []):
            assert str(spec).startswith("127.0.0.1:"), f"{name}: {spec} is not bound to 127.0.0.1"
    for name, port in want.items():
        hosts = [int(str(p).split(":")[1]) for p in compose["services"][name]["ports"]]
        assert port in hosts, f"{name} should publish 127.0.0.1:{port}"


def test_long_running_services_have_healthchecks(compose):
    for name in ("localstack", "kafka", "clickhouse", "postgres"):
        hc = compose["services"][name].get("healthcheck")
        assert hc and hc.get("test"), f"{name} has no healthcheck"


def test_schema_mounts_exist(compose):
    mounts = []
    for svc in compose["services"].values():
        for v in svc.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith("./"):
                mounts.append(src)
                assert (ROOT / src).exists(), f"mount source {src} does not exist"
    assert "./infra/sql/postgres.sql" in mounts and "./infra/sql/clickhouse.sql" in mounts


def test_kafka_kraft_and_topic_and_deploy(compose):
    env = compose["services"]["kafka"]["environment"]
    assert "controller" in env["KAFKA_PROCESS_ROLES"] and "broker" in env["KAFKA_PROCESS_ROLES"]
    init = " ".join(compose["services"]["kafka-init"]["entrypoint"])
    assert "for t in interactions impressions" in init and "--topic $$t" in init and "--partitions 3" in init
    deploy = compose["services"]["deploy"]
    cmd = " ".join(deploy["command"])
    for p in ("Target=local", "ClickHouseUrl=", "PostgresDsn=", "KafkaBootstrap=", "AdminApiKey="):
        assert p in cmd
    assert "sam build" in cmd and "samlocal deploy --config-env local" in cmd
