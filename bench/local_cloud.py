"""Local-cloud figures (issue 2): what LocalStack's API Gateway + our Lambda executor cost per
request, and how fast the Kafka event source mapping delivers records.

Why a separate test stack (``movierecs-bench-localcloud``): the app's functions do real work
(model, databases); a no-op python3.11 handler isolates the platform's own cost. Baselines,
all measured in the same run against the same LocalStack:

* ``GET /_localstack/health``: the gateway's HTTP cost without any Lambda behind it.
* ``lambda.invoke`` of the same no-op function: the executor's cost without API Gateway.
* Kafka: a plain kafka-python consumer (no group, assigned partitions) reading the same
  pre-filled topic from the start: the broker's own read rate.

The mapping is created disabled on a pre-filled topic (a backlog), then enabled; the time
runs from the enable call to the moment the consumer group (= mapping UUID) has committed
every produced offset. The group join and first batch (enable -> first commit) are reported
on their own; the steady-state rate is the records committed after the first commit over the
time after it, and its ratio to the plain consumer's rate is the figure (issue 14: >= 0.8x).

Traffic goes only to the loopback URLs of ``.movierecs/endpoints.json``.
"""
from __future__ import annotations

import os
import time
import uuid
from typing import Any, Callable
from urllib.parse import urlsplit

import requests

from bench import harness
from movierecs_stack.deploy import create_stack

REGION = "us-east-1"
STACK = "movierecs-bench-localcloud"
PARTITIONS = 3
SUBNET = [{"Type": "VPC_SUBNET", "URI": "subnet:x"}]  # LocalStack insists on a VPC config
TARGET_P50_MS = 15.0
TARGET_RECORDS_S = 20_000.0
TARGET_STEADY_VS_PLAIN = 0.8

NOOP_CODE = ("import json\n"
             "def handler(event, context):\n"
             "    return {'statusCode': 200, 'headers': {'Content-Type': 'application/json'},"
             " 'body': '{}'}\n")
COUNT_CODE = ("def handler(event, context):\n"
              "    return {'n': sum(len(v) for v in (event.get('records') or {}).values())}\n")

TEMPLATE: dict[str, Any] = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Transform": "AWS::Serverless-2016-10-31",
    "Description": "bench/local_cloud.py: no-op functions to measure the platform (deleted after the run)",
    "Resources": {
        "NoopFunction": {"Type": "AWS::Serverless::Function", "Properties": {
            "Runtime": "python3.11", "Handler": "index.handler", "MemorySize": 128, "Timeout": 10,
            "InlineCode": NOOP_CODE,
            "Events": {"Noop": {"Type": "Api", "Properties": {"Path": "/noop", "Method": "GET"}}}}},
        "CountFunction": {"Type": "AWS::Serverless::Function", "Properties": {
            "Runtime": "python3.11", "Handler": "index.handler", "MemorySize": 128, "Timeout": 30,
            "InlineCode": COUNT_CODE}},
    },
    "Outputs": {
        "ApiId": {"Value": {"Ref": "ServerlessRestApi"}},
        "NoopFunctionName": {"Value": {"Ref": "NoopFunction"}},
        "CountFunctionName": {"Value": {"Ref": "CountFunction"}},
    },
}


# --------------------------------------------------------------------------- stack
def _gateway(endpoints: dict) -> str:
    parts = urlsplit(endpoints["api"])
    return f"{parts.scheme}://{parts.netloc}"


def _client(gateway: str, service: str):
    import boto3
    import botocore.config

    cfg = botocore.config.Config(retries={"max_attempts": 2}, read_timeout=120, connect_timeout=5,
                                 max_pool_connections=16)
    return boto3.client(service, endpoint_url=gateway, region_name=REGION,
                        aws_access_key_id="test", aws_secret_access_key="test", config=cfg)


def _wait(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def delete(gateway: str) -> None:
    """Delete the test stack made by :func:`deploy` (best effort; waits up to 120 s)."""
    _delete_stack(_client(gateway, "cloudformation"))


def _delete_stack(cfn) -> None:
    try:
        cfn.delete_stack(StackName=STACK)
    except Exception:  # noqa: BLE001 - best effort cleanup
        return

    def gone() -> bool:
        try:
            status = cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"]
        except Exception:  # noqa: BLE001 - describe of a deleted stack raises
            return True
        return status == "DELETE_COMPLETE"

    try:
        _wait(gone, 120, f"stack {STACK} deleted", interval=1.0)
    except TimeoutError:
        pass


def deploy(gateway: str) -> dict[str, str]:
    """Create the test stack (deleting a leftover of an interrupted run first); return outputs."""
    cfn = _client(gateway, "cloudformation")
    try:
        cfn.describe_stacks(StackName=STACK)
        _delete_stack(cfn)
    except Exception:  # noqa: BLE001 - no such stack: the normal case
        pass
    out = create_stack(cfn, STACK, TEMPLATE)
    lam = _client(gateway, "lambda")
    for key in ("NoopFunctionName", "CountFunctionName"):
        lam.get_waiter("function_active_v2").wait(FunctionName=out[key],
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return out


# --------------------------------------------------------------------------- latency
def _http_get(url: str) -> Callable[[], Callable[[int], bool]]:
    def factory() -> Callable[[int], bool]:
        s = requests.Session()
        return lambda _i: s.get(url, timeout=30).status_code == 200
    return factory


def _invoke(gateway: str, function: str) -> Callable[[], Callable[[int], bool]]:
    def factory() -> Callable[[int], bool]:
        lam = _client(gateway, "lambda")

        def call(_i: int) -> bool:
            resp = lam.invoke(FunctionName=function, Payload=b"{}")
            resp["Payload"].read()
            return resp["StatusCode"] == 200 and "FunctionError" not in resp
        return call
    return factory


def api_latency(gateway: str, out: dict[str, str], quick: bool) -> tuple[list[dict], dict]:
    n = 200 if quick else 1000
    api_url = f"{gateway}/_aws/execute-api/{out['ApiId']}/Prod/noop"
    health = f"{gateway}/_localstack/health"
    probe = requests.get(api_url, timeout=30)
    if probe.status_code != 200 or probe.text.strip() != "{}":
        raise RuntimeError(f"GET {api_url} -> {probe.status_code} {probe.text[:200]!r}")
    figures, p50s = [], {}
    for conc in (1, 8):
        series, errors = {}, {}
        for label, factory in (("API Gateway + no-op Lambda", _http_get(api_url)),
                               ("direct lambda.invoke", _invoke(gateway, out["NoopFunctionName"])),
                               ("GET /_localstack/health", _http_get(health))):
            lat, err = harness.concurrent_latency(factory, n, conc, warmup=3)
            series[label], errors[label] = lat, err
        p50 = harness.summarize(series["API Gateway + no-op Lambda"])["p50"]
        p50s[conc] = p50
        figures.append(harness.distribution(
            f"localcloud_noop_latency_c{conc}",
            f"No-op Lambda behind API Gateway (REST v1, AWS_PROXY), {conc} client(s)",
            series, unit="ms", baseline="GET /_localstack/health",
            errors=errors,
            note=(f"{n} requests per series at {conc} concurrent client(s), warm (3 warm-up calls "
                  f"per client), requests.Session / boto3 client per thread, loopback. Target p50 <= "
                  f"{TARGET_P50_MS:g} ms: {'met' if p50 <= TARGET_P50_MS else 'NOT met'} "
                  f"(p50 {p50:.1f} ms).")))
    return figures, {"n_requests": n, "p50_ms": p50s,
                     "p50_target_met": {c: p <= TARGET_P50_MS for c, p in p50s.items()}}


# --------------------------------------------------------------------------- kafka
def _produce(bootstrap: str, topic: str, n: int) -> dict[int, int]:
    """n small records round-robin over the partitions; returns end offset per partition."""
    from kafka import KafkaProducer

    prod = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, batch_size=512 * 1024)
    ends: dict[int, int] = {p: 0 for p in range(PARTITIONS)}
    try:
        futures = [prod.send(topic, value=b'{"user_id":%d,"movie_id":1}' % i, partition=i % PARTITIONS)
                   for i in range(n)]
        prod.flush(timeout=120)
        for f in futures:
            meta = f.get(timeout=60)
            ends[meta.partition] = max(ends[meta.partition], meta.offset + 1)
    finally:
        prod.close()
    if sum(ends.values()) != n:
        raise RuntimeError(f"produced {n} records but the offsets add up to {sum(ends.values())}: {ends}")
    return ends


def plain_consumer_rate(bootstrap: str, topic: str, n: int) -> float:
    """Records/s of a plain consumer (no group) reading the topic from the start."""
    from kafka import KafkaConsumer, TopicPartition

    cons = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         max_poll_records=5000, fetch_max_bytes=52428800)
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        cons.assign(tps)
        cons.seek_to_beginning(*tps)
        got = 0
        t0 = time.perf_counter()
        deadline = time.monotonic() + 120
        while got < n and time.monotonic() < deadline:
            for recs in cons.poll(timeout_ms=500).values():
                got += len(recs)
        dt = time.perf_counter() - t0
    finally:
        cons.close()
    if got < n:
        raise RuntimeError(f"plain consumer read {got} of {n} records in 120 s")
    return got / dt


def _committed_total(admin, group: str, topic: str) -> int:
    from kafka import TopicPartition

    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    offsets = admin.list_group_offsets({group: tps}).get(group, {})
    return sum(max(0, meta.offset) for tp, meta in offsets.items()
               if tp.topic == topic and meta is not None)


def mapping_rate(gateway: str, bootstrap: str, function: str, topic: str, n: int,
                 batch_size: int, window_s: int, timeout_s: float) -> dict[str, float]:
    """Create the mapping disabled, enable it, time until every offset is committed."""
    from kafka import KafkaAdminClient

    lam = _client(gateway, "lambda")
    mapping = lam.create_event_source_mapping(
        FunctionName=function, Topics=[topic], StartingPosition="TRIM_HORIZON",
        BatchSize=batch_size, MaximumBatchingWindowInSeconds=window_s, Enabled=False,
        SelfManagedEventSource={"Endpoints": {"KAFKA_BOOTSTRAP_SERVERS": [bootstrap]}},
        SourceAccessConfigurations=SUBNET)
    uid = mapping["UUID"]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        _wait(lambda: lam.get_event_source_mapping(UUID=uid)["State"] == "Disabled", 60,
              "mapping Disabled")
        if _committed_total(admin, uid, topic):
            raise RuntimeError("the disabled mapping committed offsets before it was enabled")
        t0 = time.perf_counter()
        lam.update_event_source_mapping(UUID=uid, Enabled=True)
        first_commit = None
        deadline = time.monotonic() + timeout_s
        done = 0
        while time.monotonic() < deadline:
            done = _committed_total(admin, uid, topic)
            now = time.perf_counter()
            if done and first_commit is None:
                first_commit = (now - t0, done)
            if done >= n:
                break
            time.sleep(0.1)
        total = time.perf_counter() - t0
        if done < n:
            raise TimeoutError(f"batch {batch_size}: {done} of {n} records committed after {timeout_s:.0f} s")
        steady = None
        if first_commit and total > first_commit[0]:
            steady = (n - first_commit[1]) / (total - first_commit[0])
        return {"records_per_s": n / total, "seconds": total,
                "first_commit_s": first_commit[0] if first_commit else float("nan"),
                "steady_records_per_s": steady if steady is not None else float("nan")}
    finally:
        admin.close()
        try:
            lam.delete_event_source_mapping(UUID=uid)
            _wait(lambda: _mapping_gone(lam, uid), 15, "mapping deleted")
        except Exception:  # noqa: BLE001 - best effort cleanup
            pass


def _mapping_gone(lam, uid: str) -> bool:
    try:
        lam.get_event_source_mapping(UUID=uid)
        return False
    except lam.exceptions.ResourceNotFoundException:
        return True


def kafka_figures(gateway: str, bootstrap: str, out: dict[str, str], quick: bool) -> tuple[list[dict], dict]:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    n = 20_000 if quick else 100_000
    repeats = 1 if quick else 2
    configs = [(100, 0), (1000, 0), (1000, 1)]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    plain: list[float] = []
    produce_rates: list[float] = []
    runs: dict[str, list[dict]] = {}
    try:
        for _ in range(repeats):
            for bs, win in configs:
                # a fresh topic per mapping: LocalStack refuses a second mapping for the same
                # function+topic while the previous one is still Deleting
                topic = f"bench-localcloud-{uuid.uuid4().hex[:10]}"
                admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
                try:
                    t0 = time.perf_counter()
                    _produce(bootstrap, topic, n)
                    produce_rates.append(n / (time.perf_counter() - t0))
                    plain.append(plain_consumer_rate(bootstrap, topic, n))
                    runs.setdefault(f"BatchSize {bs}, window {win} s", []).append(
                        mapping_rate(gateway, bootstrap, out["CountFunctionName"], topic, n, bs, win,
                                     timeout_s=300))
                finally:
                    try:
                        admin.delete_topics([topic])
                    except Exception:  # noqa: BLE001 - best effort cleanup
                        pass
    finally:
        admin.close()
    produce_rate = statistics_median(produce_rates)

    def mmm(vals: list[float]) -> dict[str, float]:
        s = sorted(vals)
        return {"min": s[0], "median": s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2,
                "max": s[-1]}

    rows, met = [], {}
    for label, rs in runs.items():
        rate = mmm([x["records_per_s"] for x in rs])
        met[label] = rate["median"] >= TARGET_RECORDS_S
        rows.append([label, round(rate["median"]), round(rate["min"]), round(rate["max"]),
                     round(statistics_median([x["seconds"] for x in rs]), 2),
                     round(statistics_median([x["first_commit_s"] for x in rs]), 2),
                     round(statistics_median([x["steady_records_per_s"] for x in rs])),
                     "yes" if met[label] else "no"])
    p = mmm(plain)
    rows.append(["baseline: plain kafka-python consumer (no group)", round(p["median"]), round(p["min"]),
                 round(p["max"]), round(n / p["median"], 2), "", "", ""])
    figures = [
        harness.table("localcloud_kafka_mapping_throughput",
                      f"Kafka event source mapping -> no-op Lambda, {n:,} pre-filled records, 3 partitions",
                      ["source", "records/s (median)", "min", "max", "s enable->all committed (median)",
                       "s to first commit", "records/s after first commit",
                       f"target >= {TARGET_RECORDS_S:,.0f}/s met"], rows,
                      note=(f"{repeats} run(s) per row; time from UpdateEventSourceMapping(Enabled=True) to "
                            "the mapping's consumer group having committed every produced offset (polled "
                            "every 0.1 s), group join included. Baseline in the same run: a plain consumer "
                            f"reading the same topic from the start (once per topic). A fresh topic per mapping run. "
                            f"Produce rate (pre-fill, median): {produce_rate:,.0f}/s.")),
        harness.xy("localcloud_kafka_mapping_by_batch", "Mapping records/s by BatchSize (window 0 s)",
                   "BatchSize", [100, 1000],
                   {"mapping (median)": [statistics_median([x["records_per_s"] for x in runs[f"BatchSize {b}, window 0 s"]])
                                         for b in (100, 1000)],
                    "plain consumer (median)": [p["median"], p["median"]]},
                   unit="records/s", baseline="plain consumer (median)"),
    ]
    params = {"records": n, "partitions": PARTITIONS, "repeats": repeats, "configs": configs,
              "produce_records_per_s": produce_rate, "plain_consumer_records_per_s": plain,
              "mapping_runs": runs, "records_target_met": met}
    return figures, params


def statistics_median(vals: list[float]) -> float:
    import statistics
    return statistics.median(vals)


# --------------------------------------------------------------------------- entry point
def run(quick: bool) -> dict:
    """quick=True: 200 requests and 20k records; quick=False: 1,000 requests and 100k records."""
    endpoints = harness.endpoints()
    gateway = _gateway(endpoints)
    bootstrap = endpoints["kafka"]
    load_before = os.getloadavg()
    try:
        out = deploy(gateway)
        lat_figs, lat_params = api_latency(gateway, out, quick)
        kafka_figs, kafka_params = kafka_figures(gateway, bootstrap, out, quick)
    finally:
        delete(gateway)
    med = {k: statistics_median([x["records_per_s"] for x in v])
           for k, v in kafka_params["mapping_runs"].items()}
    steady = {k: statistics_median([x["steady_records_per_s"] for x in v])
              for k, v in kafka_params["mapping_runs"].items()}
    join = {k: statistics_median([x["first_commit_s"] for x in v])
            for k, v in kafka_params["mapping_runs"].items()}
    plain = statistics_median(kafka_params["plain_consumer_records_per_s"])
    targets = harness.scalars(
        "localcloud_targets", "Local-cloud targets (issue 2)",
        {**{f"API GW no-op p50, {c} client(s)": (round(p, 2), "ms") for c, p in lat_params["p50_ms"].items()},
         **{f"p50 <= {TARGET_P50_MS:g} ms met, {c} client(s)": ("yes" if ok else "no", "")
            for c, ok in lat_params["p50_target_met"].items()},
         **{f"mapping {k}": (round(v), "records/s") for k, v in med.items()},
         **{f"records/s >= {TARGET_RECORDS_S:,.0f} met, {k}": ("yes" if v >= TARGET_RECORDS_S else "no", "")
            for k, v in med.items()},
         **{f"mapping {k}, steady state": (round(v), "records/s") for k, v in steady.items()},
         **{f"mapping {k}, steady / plain consumer (target >= {TARGET_STEADY_VS_PLAIN})": (round(v / plain, 2), "x")
            for k, v in steady.items()},
         **{f"mapping {k}, enable -> first commit (group join + first batch)": (round(v, 2), "s")
            for k, v in join.items()},
         "baseline: plain consumer": (round(plain), "records/s")},
        note="Medians of this run; the distributions and the table above carry min/max and baselines.")
    params = {**lat_params, **kafka_params, "stack": STACK,
              "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
              "targets": {"p50_ms": TARGET_P50_MS, "records_per_s": TARGET_RECORDS_S}}
    return {"figures": [targets] + lat_figs + kafka_figs, "params": params,
            "notes": "No-op functions in a throwaway stack; loadavg recorded because 2 shared cores "
                     "move every figure."}


if __name__ == "__main__":
    harness.cli("local_cloud", run)
