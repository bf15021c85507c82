"""LocalStack's threads and thread stacks stay bounded under invocations, mappings and bursts.

Regression check for a LocalStack that grew to 1,040 live threads and, separately, died with
``RuntimeError: can't start new thread`` at 65,530 memory maps (``vm.max_map_count``) and
~10 GB RSS: on Python 3.13 every finished thread kept in LocalStack's ``TMP_THREADS`` list
(two per Lambda invocation) pins its stack (fixed by ``movierecs_localstack.threads``), and the
Twisted gateway pool grows to the peak number of requests in flight (bounded by the stack's
``GATEWAY_WORKER_COUNT``). Counts, not timings: the process is found through the gateway's
listening socket, its live threads in ``/proc/<pid>/task`` and its mappings in ``/proc/<pid>/maps``.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import botocore.config
import pytest

#: Generous: LocalStack idles at ~20-60 threads; the gateway pool is capped at 200.
THREAD_BOUND = 300
SUBNET = [{"Type": "VPC_SUBNET", "URI": "subnet:subnet-local"}]


@pytest.fixture(scope="module")
def localstack_pid(gateway: str) -> int:
    """The pid listening on the gateway's port (works for any stack the endpoints name)."""
    port = urlsplit(gateway).port
    table = subprocess.run(["ss", "-ltnpH", f"sport = :{port}"], capture_output=True, text=True,
                           check=True).stdout
    for token in table.replace(",", " ").split():
        if token.startswith("pid="):
            return int(token[4:])
    pytest.fail(f"no process listens on LocalStack's port {port}: run `make up` first", pytrace=False)


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def _maps(pid: int) -> int:
    with open(f"/proc/{pid}/maps") as f:
        return sum(1 for _ in f)


def _settled_threads(pid: int, bound: int, wait_s: float = 60.0) -> int:
    """The thread count once it is under ``bound`` (threads end asynchronously), else the last."""
    deadline = time.monotonic() + wait_s
    count = _threads(pid)
    while count >= bound and time.monotonic() < deadline:
        time.sleep(1)
        count = _threads(pid)
    return count


def test_kafka_mapping_create_delete_cycles_leave_no_threads(aws, extension_stack, kafka_bootstrap,
                                                             localstack_pid):
    lam = aws("lambda")
    cycles = 6
    before = _threads(localstack_pid)
    for _ in range(cycles):
        mapping = lam.create_event_source_mapping(
            FunctionName=extension_stack["KafkaSinkFunctionName"],
            Topics=[f"threads-test-{uuid.uuid4().hex[:8]}"], StartingPosition="TRIM_HORIZON",
            SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [kafka_bootstrap]}},
            SourceAccessConfigurations=SUBNET, BatchSize=10)
        deadline = time.monotonic() + 60
        while lam.get_event_source_mapping(UUID=mapping["UUID"])["State"] != "Enabled":
            assert time.monotonic() < deadline, "mapping never became Enabled"
            time.sleep(0.5)
        time.sleep(2)  # the poller's consumer connects and joins its group meanwhile
        lam.delete_event_source_mapping(UUID=mapping["UUID"])
        deadline = time.monotonic() + 60
        while True:
            try:
                lam.get_event_source_mapping(UUID=mapping["UUID"])
            except lam.exceptions.ResourceNotFoundException:
                break
            assert time.monotonic() < deadline, "mapping was never deleted"
            time.sleep(0.5)
    # each mapping runs a poller thread and a kafka-python heartbeat thread: a leak of either
    # leaves >= `cycles` more threads; 3 allow for gateway pool threads started meanwhile
    after = _settled_threads(localstack_pid, before + 4)
    assert after <= before + 3, f"{after - before} threads more after {cycles} mapping cycles"


def test_invocation_burst_releases_thread_stacks(aws, extension_stack, localstack_pid):
    lam = aws("lambda")
    name = extension_stack["EchoFunctionName"]
    invocations = 400
    lam.invoke(FunctionName=name, Payload=b"{}")  # a warm environment before the baseline
    maps_before = _maps(localstack_pid)

    def invoke(i: int) -> None:
        result = lam.invoke(FunctionName=name, Payload=json.dumps({"i": i}).encode())
        assert "FunctionError" not in result, result["Payload"].read()

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(invoke, range(invocations)))
    growth = _maps(localstack_pid) - maps_before
    # a pinned thread stack is 2 mappings (stack + guard page), one thread per invocation
    assert growth < invocations // 2, (
        f"{growth} more memory mappings after {invocations} invocations: finished threads keep "
        "their stacks (LocalStack's TMP_THREADS on Python 3.13, see movierecs_localstack/threads.py)")
    assert _settled_threads(localstack_pid, THREAD_BOUND) < THREAD_BOUND


def test_burst_of_waiting_requests_does_not_grow_the_gateway_past_its_bound(gateway,
                                                                             localstack_pid):
    clients = 320  # more requests in flight at once than the bound allows threads
    sqs = boto3.client("sqs", endpoint_url=gateway, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test",
                       config=botocore.config.Config(max_pool_connections=clients + 10,
                                                     read_timeout=300,
                                                     retries={"max_attempts": 1}))
    queue = sqs.create_queue(QueueName=f"threads-test-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    try:
        # a long poll on an empty queue holds a gateway worker thread for its whole wait
        def long_poll(_: int) -> None:
            sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=2)

        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(long_poll, range(clients)))
        peak_after = _threads(localstack_pid)
    finally:
        sqs.delete_queue(QueueUrl=queue)
    # Twisted's pool never shrinks: without a bound it now holds ~`clients` idle threads
    assert peak_after < THREAD_BOUND, (
        f"LocalStack has {peak_after} threads after {clients} concurrent requests: is "
        "GATEWAY_WORKER_COUNT set (infra/movierecs_stack/services.py localstack_env)?")
