"""The running local stack (``make up``) and the orchestrator's process handling.

The shared stack is only observed here (pids, ports, health, endpoints file). Starting,
restarting and stopping are exercised on throwaway services and a throwaway Kafka broker
with their own state folders and ports, so the stack other tests use is never disturbed.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from movierecs_stack import procs
from movierecs_stack.config import KAFKA_PARTITIONS, KAFKA_TOPIC, Layout
from movierecs_stack.endpoints import KEYS
from movierecs_stack.services import BACKING, Ctx, Service, ServiceError, pg_connect
from movierecs_stack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack() -> Stack:
    s = Stack.create()
    missing = [svc.name for svc in BACKING if not s.pids.running(svc.name)]
    if missing:
        pytest.fail(f"stack services not running: {missing}; run `make up` first")
    return s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the shared stack, observed -----------------------------------------------------------------
def test_recorded_pids_are_exactly_the_listeners(stack):
    cmap = procs.children_map()
    for svc in stack.services:
        t = stack.pids.running(svc.name)
        if t is None:
            assert not svc.enabled(stack.ctx) or svc is stack.frontend, f"{svc.name} is not running"
            continue
        tree = {t.pid, *procs.descendants(t.pid, cmap)}
        port = svc.port(stack.ctx)
        holders = procs.listeners(port)
        assert holders, f"nothing listens on {port} ({svc.name})"
        assert set(holders) <= tree, f"{svc.name}: port {port} held by {holders}, tracked tree {sorted(tree)}"
        assert os.getpgid(t.pid) == t.pid, f"{svc.name} does not lead its own process group"
        assert svc.ready(stack.ctx)


def test_endpoints_file_is_private_and_complete(stack):
    path = stack.ctx.layout.endpoints_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ep = json.loads(path.read_text())
    assert tuple(ep) == KEYS
    assert ep["kafka"] == stack.ctx.kafka_bootstrap
    assert ep["clickhouse"] == stack.ctx.clickhouse_url
    assert ep["postgres"] == stack.ctx.postgres_dsn
    assert ep["admin_api_key"] == stack.ctx.layout.admin_key_file.read_text().strip()
    assert stat.S_IMODE(stack.ctx.layout.admin_key_file.stat().st_mode) == 0o600
    if ep["api"] is not None:
        assert ep["api"].startswith(f"{stack.ctx.localstack_url}/_aws/execute-api/")


def test_schemas_applied(stack):
    conn = pg_connect(stack.ctx)
    try:
        tables = {r[0] for r in conn.run("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    finally:
        conn.close()
    assert {"movies", "users"} <= tables
    import clickhouse_connect

    ch = clickhouse_connect.get_client(host="127.0.0.1", port=stack.ctx.port("clickhouse"))
    assert {"ratings", "likes", "dead_letters", "requests"} <= set(ch.command("SHOW TABLES FROM movierecs").split("\n"))


def test_kafka_topic_exists_with_three_partitions(stack):
    from movierecs_stack.services import kafka_topics

    assert kafka_topics(stack.ctx).get(KAFKA_TOPIC) == KAFKA_PARTITIONS


def test_status_command_reports_every_service(stack):
    r = subprocess.run([sys.executable, "-m", "movierecs_stack", "status"], capture_output=True, text=True,
                       timeout=120)
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.strip()}
    for svc in BACKING:
        t = stack.pids.running(svc.name)
        assert svc.name in lines and str(t.pid) in lines[svc.name] and " up " in lines[svc.name], r.stdout


# --- the orchestrator on throwaway services -------------------------------------------------------
SERVER = """
import http.server, socketserver, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # a child, as real services have
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), http.server.SimpleHTTPRequestHandler).serve_forever()
"""


def dummy(name: str, port_key: str, fail: bool = False) -> Service:
    def start(ctx: Ctx):
        argv = [sys.executable, "-c", "import sys; sys.exit(3)"] if fail else \
            [sys.executable, "-c", SERVER, str(ctx.port(port_key))]
        return procs.spawn(argv, log=ctx.layout.logs / f"{name}.log", env=dict(os.environ), cwd=ctx.layout.root)

    return Service(name, port_key, f"dummy {name}", start, lambda ctx: procs.port_open(ctx.port(port_key)),
                   ready_timeout=20)


@pytest.fixture
def throwaway(tmp_path):
    from movierecs_stack.config import PORTS

    env = dict(os.environ, **{var: str(free_port()) for _, var in PORTS.values()})
    ctx = Ctx(Layout(root=tmp_path), env)
    made: list[Stack] = []

    def make(*services: Service) -> Stack:
        s = Stack(ctx, backing=services, frontend=None)
        made.append(s)
        return s

    yield make
    for s in made:  # never leave a process behind, even when an assertion failed
        s.down()


def test_up_twice_restart_dead_and_down(throwaway):
    a, b = dummy("a", "postgres"), dummy("b", "kafka")
    s = throwaway(a, b)
    s.up(deploy_app=False, bootstrap=False)
    ta, tb = s.pids.running("a"), s.pids.running("b")
    assert ta and tb
    for svc, t in ((a, ta), (b, tb)):
        assert procs.listeners(svc.port(s.ctx)) == [t.pid]
    kid = procs.descendants(ta.pid)
    assert len(kid) == 1

    s2 = throwaway(a, b)
    s2.up(deploy_app=False, bootstrap=False)  # healthy services are kept
    assert s2.started == [] and s2.pids.running("a") == ta and s2.pids.running("b") == tb

    procs.stop(tb, timeout=5)  # b dies (as after a crash)
    s3 = throwaway(a, b)
    s3.up(deploy_app=False, bootstrap=False)
    assert s3.started == ["b"]
    assert s3.pids.running("b").pid != tb.pid and s3.pids.running("a") == ta

    assert s3.down()
    assert s.pids.names() == []
    for svc in (a, b):
        assert procs.port_free(svc.port(s.ctx))
    assert not procs.alive(ta.pid) and not any(procs.alive(k) for k in kid)


def test_changed_code_restarts_a_service_and_its_dependents(throwaway, tmp_path):
    import dataclasses

    code = tmp_path / "code.txt"
    code.write_text("v1")
    a = dataclasses.replace(dummy("a", "postgres"), fingerprint=lambda ctx: code.read_text())
    b = dataclasses.replace(dummy("b", "kafka"), depends_on=("a",))
    s = throwaway(a, b)
    s.up(deploy_app=False, bootstrap=False)
    ta, tb = s.pids.running("a"), s.pids.running("b")
    s2 = throwaway(a, b)
    s2.up(deploy_app=False, bootstrap=False)
    assert s2.started == []  # unchanged: kept
    code.write_text("v2")
    s3 = throwaway(a, b)
    s3.up(deploy_app=False, bootstrap=False)
    assert s3.started == ["a", "b"]  # a changed; b depends on a
    assert not procs.alive(ta.pid) and not procs.alive(tb.pid)


def test_failed_up_stops_what_it_started(throwaway):
    ok, bad = dummy("ok", "postgres"), dummy("bad", "clickhouse", fail=True)
    s = throwaway(ok, bad)
    with pytest.raises(ServiceError, match="dummy bad exited with code 3"):
        s.up(deploy_app=False, bootstrap=False)
    assert s.pids.names() == []
    assert procs.port_free(ok.port(s.ctx))


def test_port_held_by_a_stranger_is_reported(throwaway):
    a = dummy("a", "kafka")
    s = throwaway(a)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", a.port(s.ctx)))
        sock.listen()
        with pytest.raises(ServiceError) as ei:
            s.up(deploy_app=False, bootstrap=False)
    msg = str(ei.value)
    assert f"port {a.port(s.ctx)}" in msg and "MOVIERECS_KAFKA_PORT" in msg and f"pid {os.getpid()}" in msg
    assert s.pids.names() == []


# --- the Kafka broker: what survives a kill -9 -------------------------------------------------------
def test_kafka_broker_keeps_every_acknowledged_record_across_kill_9(throwaway, tmp_path):
    """A private broker (the stack's own KAFKA service, own ports and log folder) killed with
    SIGKILL mid-stream: every record it acknowledged (acks=all) is there after the restart,
    and the topic carries the configured retention."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType

    from movierecs_stack.services import KAFKA

    libs = tmp_path / ".movierecs" / "kafka" / "libs"
    libs.parent.mkdir(parents=True)
    libs.symlink_to(Layout().state / "kafka" / "libs")
    s = throwaway(KAFKA)
    s.ctx.env["MOVIERECS_KAFKA_RETENTION_MS"] = "3600000"
    s.up(deploy_app=False, bootstrap=False)
    boot = s.ctx.kafka_bootstrap
    prod = KafkaProducer(bootstrap_servers=boot, acks="all", linger_ms=0, retries=0)
    acked: set[bytes] = set()
    t = s.pids.running("kafka")
    try:
        for i in range(4000):
            if i == 2500:
                os.kill(t.pid, 9)  # mid-stream, no shutdown
            try:
                prod.send(KAFKA_TOPIC, key=str(i % 7).encode(), value=f"v{i}".encode()).get(timeout=5)
                acked.add(f"v{i}".encode())
            except Exception:
                break  # unacknowledged from here on: the producer was told
    finally:
        prod.close(timeout=1)
    assert len(acked) >= 2500
    s2 = throwaway(KAFKA)
    s2.up(deploy_app=False, bootstrap=False)
    assert s2.started == ["kafka"]
    cons = KafkaConsumer(bootstrap_servers=boot, enable_auto_commit=False, consumer_timeout_ms=8000)
    cons.assign([TopicPartition(KAFKA_TOPIC, p) for p in range(KAFKA_PARTITIONS)])
    cons.seek_to_beginning()
    values = {m.value for m in cons}
    cons.close()
    assert acked <= values, f"{len(acked - values)} acknowledged records lost"
    admin = KafkaAdminClient(bootstrap_servers=boot)
    try:
        conf = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, KAFKA_TOPIC)])
    finally:
        admin.close()
    topic_conf = conf["topic"][KAFKA_TOPIC]
    assert topic_conf["retention.ms"]["value"] == "3600000"
    assert topic_conf["retention.bytes"]["value"] == str(1024**3)


# --- PostgreSQL when the repository is out of the postgres user's reach -----------------------------
@pytest.mark.skipif(os.geteuid() != 0, reason="the postgres-user path is taken only as root")
def test_postgres_cluster_for_a_repo_postgres_cannot_reach(tmp_path):
    """tmp_path lives under /tmp/pytest-of-root (mode 0700): the cluster must go to /var/lib/movierecs
    through a symlink, without loosening any permission, and work."""
    import hashlib
    import shutil as sh

    from movierecs_stack.services import POSTGRES

    root = tmp_path / "repo"
    (root / "infra" / "sql").mkdir(parents=True)
    sh.copy(ROOT / "infra" / "sql" / "postgres.sql", root / "infra" / "sql" / "postgres.sql")
    modes_before = {p: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path, tmp_path.parent, tmp_path.parent.parent)}
    target = Path("/var/lib/movierecs") / hashlib.sha256(str(root).encode()).hexdigest()[:12]
    env = dict(os.environ, MOVIERECS_POSTGRES_PORT=str(free_port()))
    s = Stack(Ctx(Layout(root=root), env), backing=(POSTGRES,), frontend=None)
    try:
        s.up(deploy_app=False, bootstrap=False)
        link = root / ".movierecs" / "data" / "postgres"
        assert link.is_symlink() and link.resolve() == target / "postgres"
        assert (target / "postgres" / "PG_VERSION").exists()
        conn = pg_connect(s.ctx)
        try:
            assert {r[0] for r in conn.run("SELECT tablename FROM pg_tables WHERE schemaname='public'")} >= {"movies", "users"}
        finally:
            conn.close()
        assert {p: stat.S_IMODE(p.stat().st_mode) for p in modes_before} == modes_before
    finally:
        s.down()
        sh.rmtree(target, ignore_errors=True)
    assert procs.port_free(s.ctx.port("postgres"))


# --- a broken template: CloudFormation's own reason reaches the user --------------------------------
BROKEN_TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  Named:
    Type: AWS::Serverless::Function
    Properties:
      FunctionName: {name}-fn
      Runtime: python3.11
      Handler: index.handler
      InlineCode: "def handler(event, context):\\n    return 1\\n"
  Broken:
    Type: AWS::S3::Bucket
    Properties:
      BucketName: "Not_A_Valid_Bucket_Name!!"
"""


def test_broken_template_shows_cloudformation_reason(stack, tmp_path):
    """Deployed through the same sam build + samlocal deploy flow, as a separate throwaway stack."""
    import boto3

    from movierecs_stack.deploy import DeployError, deploy

    name = f"movierecs-it-broken-{uuid.uuid4().hex[:6]}"
    (tmp_path / "template.yaml").write_text(BROKEN_TEMPLATE.replace("{name}", name))
    (tmp_path / "samconfig.toml").write_text(
        f'version = 0.1\n[local.deploy.parameters]\nstack_name = "{name}"\nregion = "us-east-1"\n'
        f's3_bucket = "{name}-artifacts"\n')
    cfn = boto3.client("cloudformation", endpoint_url=stack.ctx.localstack_url, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    s3 = stack.ctx.s3()
    try:
        with pytest.raises(DeployError) as ei:
            deploy(stack.ctx, "k" * 24, tmp_path, echo=lambda m: None)
        msg = str(ei.value)
        assert "CloudFormation says:" in msg
        assert "Broken (AWS::S3::Bucket) CREATE_FAILED" in msg and "bucket name" in msg.lower()
        # fixed template, same stack: the failed stack (and what its rollback left behind) is cleared first
        fixed = BROKEN_TEMPLATE.replace("{name}", name).split("  Broken:")[0]
        (tmp_path / "template.yaml").write_text(fixed)
        deploy(stack.ctx, "k" * 24, tmp_path, echo=lambda m: None)
        assert cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
    finally:
        try:
            cfn.delete_stack(StackName=name)
        except Exception:
            pass
        try:  # LocalStack may leave explicitly named functions behind a deleted stack
            boto3.client("lambda", endpoint_url=stack.ctx.localstack_url, region_name="us-east-1",
                         aws_access_key_id="test", aws_secret_access_key="test").delete_function(FunctionName=f"{name}-fn")
        except Exception:
            pass
        try:
            for obj in s3.list_objects_v2(Bucket=f"{name}-artifacts").get("Contents", []):
                s3.delete_object(Bucket=f"{name}-artifacts", Key=obj["Key"])
            s3.delete_bucket(Bucket=f"{name}-artifacts")
        except Exception:
            pass
