"""The Kafka protocol versions the project's clients use, against the running broker.

Kafka 4 removed old protocol versions (KIP-896). The clients are kafka-python in the
functions' venv (like-ingest's producer, the stack, tests, benchmarks) and in LocalStack's
venv (the event source mapping poller); both lock files pin the same version, so checking
one client library against the broker covers both. For every API the project calls, the
version the client negotiates (the highest both sides speak) must lie in the broker's range.
"""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# The APIs used: produce (idempotent: InitProducerId), consume in a group with manual
# commits, list offsets (lag, LATEST), admin (topics, partitions, configs, groups), and
# transactions (a test of the mapping writes a committed transaction).
USED = ("Produce", "Fetch", "ListOffsets", "Metadata", "OffsetCommit", "OffsetFetch", "FindCoordinator",
        "JoinGroup", "Heartbeat", "LeaveGroup", "SyncGroup", "ApiVersions", "CreateTopics", "CreatePartitions",
        "AlterConfigs", "DescribeConfigs", "InitProducerId", "ListGroups", "DeleteTopics",
        "AddPartitionsToTxn", "EndTxn")


def _client_ranges() -> dict[str, tuple[int, int]]:
    """(min, max) version kafka-python implements, per API name."""
    import importlib
    import inspect
    import pkgutil

    import kafka.protocol as protocol

    out: dict[str, tuple[int, int]] = {}
    for mod_info in pkgutil.walk_packages(protocol.__path__, "kafka.protocol."):
        if ".old" in mod_info.name or "generate" in mod_info.name:
            continue
        try:
            mod = importlib.import_module(mod_info.name)
        except Exception:  # noqa: BLE001 - helper modules that need optional deps
            continue
        for name, cls in inspect.getmembers(mod, inspect.isclass):
            if name.endswith("Request") and hasattr(cls, "API_KEY") and hasattr(cls, "max_version"):
                out.setdefault(name[: -len("Request")], (getattr(cls, "min_version", 0) or 0, cls.max_version))
    return out


def test_both_venvs_pin_the_same_kafka_python():
    pins = {}
    for lock in ("project.lock", "localstack.lock"):
        m = re.search(r"^kafka-python==(\S+)", (ROOT / "infra" / "requirements" / lock).read_text(), re.M)
        assert m, f"kafka-python is not pinned in infra/requirements/{lock}"
        pins[lock] = m.group(1)
    assert len(set(pins.values())) == 1, pins


def test_every_api_the_project_uses_has_a_common_version(kafka_bootstrap):
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        broker = {key.name: rng for key, rng in admin.api_versions().items()}
    finally:
        admin.close()
    client = _client_ranges()
    problems = []
    for api in USED:
        if api not in client:
            problems.append(f"{api}: kafka-python has no request class")
            continue
        if api not in broker:
            problems.append(f"{api}: the broker does not offer it")
            continue
        (cmin, cmax), (bmin, bmax) = client[api], broker[api]
        chosen = min(cmax, bmax)
        if chosen < max(cmin, bmin):
            problems.append(f"{api}: client {cmin}-{cmax}, broker {bmin}-{bmax}: no common version")
    assert not problems, "\n".join(problems)

