"""The stack's services: how each starts, when it is ready, what it needs afterwards.

Each service is a plain process on 127.0.0.1 leading its own process group. ``start`` only
launches it; ``ready`` is a cheap health probe polled until it passes; ``setup`` is
idempotent work run on every ``up`` (schemas, buckets, topics), so a service kept from an
earlier ``up`` is brought to the same state as a fresh one.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import procs
from . import kafka_broker
from .config import HOST, IMPRESSIONS_TOPIC, KAFKA_TOPIC, LOCALSTACK_SERVICES, Layout, port_for

AWS_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_REGION": "us-east-1"}


class ServiceError(RuntimeError):
    """A service could not be started or set up; the message says what to do."""


@dataclass
class Ctx:
    """What every service needs to know: where state lives and which ports to use."""

    layout: Layout
    env: dict[str, str]

    def port(self, service: str) -> int:
        return port_for(service, self.env)

    @property
    def localstack_url(self) -> str:
        return f"http://{HOST}:{self.port('localstack')}"

    @property
    def clickhouse_url(self) -> str:
        return f"http://{HOST}:{self.port('clickhouse')}"

    @property
    def postgres_dsn(self) -> str:
        return f"postgresql://movierecs@{HOST}:{self.port('postgres')}/movierecs"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{HOST}:{self.port('kafka')}"

    def base_env(self) -> dict[str, str]:
        """The caller's environment without anything that would redirect the services' AWS calls."""
        env = {k: v for k, v in self.env.items() if not k.startswith(("AWS_", "LOCALSTACK_"))}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def s3(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.localstack_url, region_name="us-east-1",
                            aws_access_key_id="test", aws_secret_access_key="test")


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """GET a loopback URL; (status, body), or (0, b'') when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
            return r.status, r.read()
    except urllib.error.HTTPError as ex:
        return ex.code, ex.read()
    except Exception:
        return 0, b""


def clickhouse_exec(url: str, sql: str, timeout: float = 30.0) -> bytes:
    """Run one statement through the ClickHouse HTTP interface; raise ServiceError with its error text."""
    req = urllib.request.Request(url + "/", data=sql.encode(), method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:  # noqa: S310 - loopback only
            return r.read()
    except urllib.error.HTTPError as ex:
        raise ServiceError(f"ClickHouse rejected: {sql.strip()[:80]}...: {ex.read().decode(errors='replace')}") from ex


def split_sql(text: str) -> list[str]:
    """Statements of a schema file: ``--`` comments dropped, split on ``;`` at line ends."""
    lines = [ln for ln in text.splitlines() if not ln.strip().startswith("--")]
    out, cur = [], []
    for ln in lines:
        cur.append(ln)
        if ln.rstrip().endswith(";"):
            stmt = "\n".join(cur).strip().rstrip(";").strip()
            if stmt:
                out.append(stmt)
            cur = []
    rest = "\n".join(cur).strip()
    if rest:
        out.append(rest)
    return out


@dataclass
class Service:
    """One service of the stack."""

    name: str
    port_key: str
    title: str
    start: Callable[[Ctx], subprocess.Popen]
    ready: Callable[[Ctx], bool]
    setup: Callable[[Ctx], None] = lambda ctx: None
    stop_signal: int = 15
    stop_timeout: float = 20.0  # grace before SIGKILL
    ready_timeout: float = 60.0
    depends_on: tuple[str, ...] = ()
    enabled: Callable[[Ctx], bool] = lambda ctx: True
    # what the running process was started from (code, binary, settings): a change means restart
    fingerprint: Callable[[Ctx], str] = lambda ctx: ""
    # checked for every service before any starts (settings, installed binaries): raise ServiceError
    preflight: Callable[[Ctx], None] = lambda ctx: None
    # other ports the process listens on (port keys), checked like the main one
    extra_ports: tuple[str, ...] = ()

    def port(self, ctx: Ctx) -> int:
        return ctx.port(self.port_key)

    def port_keys(self) -> tuple[str, ...]:
        return (self.port_key, *self.extra_ports)

    def log(self, ctx: Ctx) -> Path:
        return ctx.layout.logs / f"{self.name}.log"


def files_digest(*paths: Path, extra: str = "") -> str:
    """Hash of the contents of files (folders: their *.py, *.toml, *.sh files, recursively) plus ``extra``."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.suffix in (".py", ".toml", ".sh") and "__pycache__" not in q.parts) \
            if p.is_dir() else [p]
        for f in files:
            try:
                h.update(str(f).encode() + b"\0" + f.read_bytes())
            except OSError:
                h.update(str(f).encode() + b"\0missing")
    return h.hexdigest()[:16]


# --- PostgreSQL ---------------------------------------------------------------------------------
def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parent.parent.name)
                   if p.parent.parent.name.isdigit() else 0)
    if found:
        return found[-1].parent
    exe = shutil.which("postgres")
    if exe:
        return Path(exe).resolve().parent
    raise ServiceError("PostgreSQL is not installed: run `make up` (install.sh installs it with apt-get) "
                       "or `apt-get install -y postgresql`.")


def _pg_user() -> str | None:
    """initdb and postgres refuse to run as root: as root, run them as the `postgres` user."""
    return "postgres" if os.geteuid() == 0 else None


def _as_user_ok(user: str, args: list[str]) -> bool:
    import pwd

    pw = pwd.getpwnam(user)
    return subprocess.run(args, user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], capture_output=True).returncode == 0


def pg_data_dir(ctx: Ctx) -> Path:
    """The cluster's folder: ``.movierecs/data/postgres``, or, if the `postgres` user cannot reach the
    repository (e.g. it lives under /root, mode 0700), a folder under /var/lib/movierecs/ that
    ``.movierecs/data/postgres`` links to. Nothing of the user's home is chmod-ed."""
    link = ctx.layout.data / "postgres"
    user = _pg_user()
    if link.is_symlink() or user is None:
        return link.resolve() if link.is_symlink() else link
    ctx.layout.data.mkdir(parents=True, exist_ok=True)
    if _as_user_ok(user, ["test", "-x", str(ctx.layout.data)]):
        return link
    digest = hashlib.sha256(str(ctx.layout.root).encode()).hexdigest()[:12]
    target = Path("/var/lib/movierecs") / digest / "postgres"
    target.mkdir(parents=True, exist_ok=True)
    if link.exists():  # an empty folder left by an earlier attempt
        link.rmdir()
    link.symlink_to(target)
    return target


def _pg_prepare(ctx: Ctx) -> Path:
    data = pg_data_dir(ctx)
    data.mkdir(parents=True, exist_ok=True)
    user = _pg_user()
    if user:
        shutil.chown(data, user, user)
    os.chmod(data, 0o700)
    if not (data / "PG_VERSION").exists():
        log = ctx.layout.logs / "postgres.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            kwargs = {}
            if user:
                import pwd

                pw = pwd.getpwnam(user)
                kwargs = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
            r = subprocess.run([str(pg_bin() / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                                "--locale=C", "--auth-host=trust", "--auth-local=trust"],
                               stdout=out, stderr=subprocess.STDOUT, cwd="/", **kwargs)
        if r.returncode:
            raise ServiceError(f"initdb failed (see {log})")
    pidfile = data / "postmaster.pid"
    if pidfile.exists():  # left by a crash or a machine restart: drop it unless its postmaster still runs
        try:
            old = int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            old = -1
        if not (old > 0 and procs.alive(old) and "postgres" in procs.cmdline(old)):
            pidfile.unlink()
    return data


def _pg_start(ctx: Ctx) -> subprocess.Popen:
    data = _pg_prepare(ctx)
    argv = [str(pg_bin() / "postgres"), "-D", str(data), "-p", str(ctx.port("postgres")),
            "-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories=",
            "-c", "logging_collector=off", "-c", "shared_buffers=64MB", "-c", "max_connections=100"]
    return procs.spawn(argv, log=ctx.layout.logs / "postgres.log", env=ctx.base_env(), cwd=Path("/"),
                       user=_pg_user())


def pg_connect(ctx: Ctx, user: str = "movierecs", database: str = "movierecs", timeout: float = 3.0):
    import pg8000.native

    return pg8000.native.Connection(user, host=HOST, port=ctx.port("postgres"), database=database, timeout=timeout)


def _pg_ready(ctx: Ctx) -> bool:
    try:
        pg_connect(ctx, "postgres", "postgres", timeout=1.0).close()
        return True
    except Exception:
        return False


def _pg_setup(ctx: Ctx) -> None:
    admin = pg_connect(ctx, "postgres", "postgres")
    try:
        if not admin.run("SELECT 1 FROM pg_roles WHERE rolname = 'movierecs'"):
            admin.run("CREATE ROLE movierecs LOGIN")
        if not admin.run("SELECT 1 FROM pg_database WHERE datname = 'movierecs'"):
            admin.run("CREATE DATABASE movierecs OWNER movierecs")
    finally:
        admin.close()
    conn = pg_connect(ctx)
    try:
        for stmt in split_sql((ctx.layout.root / "infra" / "sql" / "postgres.sql").read_text()):
            conn.run(stmt)
    finally:
        conn.close()


# --- ClickHouse (chDB HTTP endpoint) -----------------------------------------------------------------
def _ch_start(ctx: Ctx) -> subprocess.Popen:
    data = ctx.layout.data / "clickhouse"
    data.mkdir(parents=True, exist_ok=True)
    env = ctx.base_env()
    argv = [str(ctx.layout.project_python), "-m", "chdb_http", "--host", HOST, "--port", str(ctx.port("clickhouse")),
            "--data-dir", str(data)]
    return procs.spawn(argv, log=ctx.layout.logs / "clickhouse.log", env=env, cwd=ctx.layout.root)


def _ch_ready(ctx: Ctx) -> bool:
    return http_get(ctx.clickhouse_url + "/ping", 1.0) == (200, b"Ok.\n")


def _ch_setup(ctx: Ctx) -> None:
    for stmt in split_sql((ctx.layout.root / "infra" / "sql" / "clickhouse.sql").read_text()):
        clickhouse_exec(ctx.clickhouse_url, stmt)


# --- LocalStack ----------------------------------------------------------------------------------------
def localstack_env(ctx: Ctx) -> dict[str, str]:
    root = ctx.layout.localstack_root
    env = ctx.base_env() | AWS_ENV | {
        "OVERRIDE_IN_DOCKER": "0",
        "FILESYSTEM_ROOT": str(root / "fs"),
        "TMPDIR": str(root / "tmp"),
        "GATEWAY_LISTEN": f"{HOST}:{ctx.port('localstack')}",
        "DNS_ADDRESS": "0",
        "SERVICES": LOCALSTACK_SERVICES,
        "DISABLE_EVENTS": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "LAMBDA_RUNTIME_EXECUTOR": "movierecs-process",
        "MOVIERECS_LAMBDA_PYTHON": str(ctx.layout.project_python),
        "MOVIERECS_MSK_BOOTSTRAP": ctx.kafka_bootstrap,
        "MOVIERECS_ROOT": str(ctx.layout.root),
        # Twisted gateway thread pool (default 1000): it grows to the peak number of requests
        # in flight and never shrinks (a retry storm once grew it to the full 1000 threads).
        # 200 is far above what the app needs (bench.load: <= 80 clients; a Lambda holding a
        # request while its handler calls back through the gateway needs 2): excess requests
        # queue instead of spawning threads.
        "GATEWAY_WORKER_COUNT": "200",
    }
    return env


def _ls_start(ctx: Ctx) -> subprocess.Popen:
    root = ctx.layout.localstack_root
    for sub in ("fs", "tmp"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    if not ctx.layout.localstack_python.exists():
        raise ServiceError(f"{ctx.layout.localstack_python} is missing: run `bash infra/install.sh`.")
    return procs.spawn([str(ctx.layout.localstack_python), "-m", "localstack.runtime.main"],
                       log=ctx.layout.logs / "localstack.log", env=localstack_env(ctx), cwd=root)


def ensure_bucket(ctx: Ctx, bucket: str) -> None:
    s3 = ctx.s3()
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)


def _ls_ready(ctx: Ctx) -> bool:
    status, body = http_get(ctx.localstack_url + "/_localstack/health", 5.0)
    if status != 200:
        return False
    try:
        return "services" in json.loads(body)
    except ValueError:
        return False


# --- Kafka (Apache Kafka, KRaft) --------------------------------------------------------------------
def broker_layout(ctx: Ctx) -> kafka_broker.BrokerLayout:
    return kafka_broker.BrokerLayout(ctx.layout.state)


def broker_settings(ctx: Ctx) -> kafka_broker.BrokerSettings:
    try:
        return kafka_broker.BrokerSettings.from_env(ctx.env)
    except kafka_broker.BrokerConfigError as exc:
        raise ServiceError(str(exc)) from None


def broker_env(ctx: Ctx) -> dict[str, str]:
    return ctx.base_env() | {"LOG_DIR": str(ctx.layout.logs)}


def _kafka_preflight(ctx: Ctx) -> None:
    """Before anything starts: the settings parse, Java and the broker's jars are there."""
    broker_settings(ctx)
    try:
        kafka_broker.check_installed(broker_layout(ctx), broker_env(ctx))
    except kafka_broker.BrokerConfigError as exc:
        raise ServiceError(str(exc)) from None


def _kafka_start(ctx: Ctx) -> subprocess.Popen:
    layout, settings, env = broker_layout(ctx), broker_settings(ctx), broker_env(ctx)
    moved = kafka_broker.retire_foreign_data(layout.data)
    if moved:
        print(f"[stack] kafka: {layout.data} held the earlier broker's (Tansu's) log; moved to {moved}", flush=True)
    kafka_broker.write_properties(layout, ctx.port("kafka"), ctx.port("kafka_controller"))
    log = ctx.layout.logs / "kafka.log"
    try:
        kafka_broker.format_storage(settings, ctx.layout.root, layout, env, log)
    except kafka_broker.BrokerConfigError as exc:
        raise ServiceError(str(exc)) from None
    return procs.spawn(kafka_broker.broker_argv(settings, ctx.layout.root, layout, env), log=log, env=env,
                       cwd=ctx.layout.state)


def _kafka_fp(ctx: Ctx) -> str:
    """The jars, the JVM options and the broker configuration: a change restarts the broker."""
    layout, settings = broker_layout(ctx), broker_settings(ctx)
    jars = " ".join(sorted(p.name for p in layout.libs.glob("*.jar")))
    props = kafka_broker.server_properties(layout.data, ctx.port("kafka"), ctx.port("kafka_controller"))
    jvm = " ".join(kafka_broker.jvm_args(settings, ctx.layout.root, layout))
    return files_digest(ctx.layout.root / "infra" / "kafka" / "log4j2.yaml", extra=jars + props + jvm)


def kafka_topics(ctx: Ctx, timeout_ms: int = 5000) -> dict[str, int]:
    """Topic -> partition count, from the broker's metadata."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=ctx.kafka_bootstrap, request_timeout_ms=timeout_ms,
                             client_id="movierecs-stack")
    try:
        return kafka_broker.partition_counts(admin)
    finally:
        admin.close()


def consumer_lag_line(ctx: Ctx) -> str:
    """``movierecs-consumer lag 0 (p0 12/12, ...)``: the likes mapping's committed offsets
    against the log end (the group named in template.yaml, the functions' Settings default)."""
    from movierecs_core.config import Settings
    from movierecs_core.stores.kafka import consumer_lag

    group = Settings().kafka_consumer_group
    rows = consumer_lag(ctx.kafka_bootstrap, group, KAFKA_TOPIC)
    parts = ", ".join(f"p{r['partition']} {r['committed']}/{r['end']}" for r in rows)
    return f"{group} lag {sum(r['lag'] for r in rows)} ({parts})"


def _kafka_ready(ctx: Ctx) -> bool:
    if not procs.port_open(ctx.port("kafka")):
        return False
    try:
        kafka_topics(ctx, 3000)
        return True
    except Exception:
        return False


def _kafka_setup(ctx: Ctx) -> None:
    for topic in (KAFKA_TOPIC, IMPRESSIONS_TOPIC):
        print(f"[stack] kafka: {kafka_broker.ensure_topic(ctx.kafka_bootstrap, broker_settings(ctx), topic)}",
              flush=True)


# --- Frontend ----------------------------------------------------------------------------------------
def _fe_enabled(ctx: Ctx) -> bool:
    return (ctx.layout.root / "frontend" / "serve.sh").exists()


def frontend_env(ctx: Ctx, api_url: str, admin_key: str) -> dict[str, str]:
    return ctx.base_env() | {"MOVIERECS_API_URL": api_url, "MOVIERECS_FRONTEND_PORT": str(ctx.port("frontend")),
                             "MOVIERECS_ADMIN_API_KEY": admin_key, "REFLEX_TELEMETRY_ENABLED": "false"}


def _fe_start(ctx: Ctx) -> subprocess.Popen:
    from .endpoints import read_endpoints

    ep = read_endpoints(ctx.layout) or {}
    from .endpoints import admin_api_key

    env = frontend_env(ctx, ep.get("api") or "", admin_api_key(ctx.layout))
    return procs.spawn(["bash", str(ctx.layout.root / "frontend" / "serve.sh")], log=ctx.layout.logs / "frontend.log",
                       env=env, cwd=ctx.layout.root / "frontend")


def _fe_ready(ctx: Ctx) -> bool:
    status, _ = http_get(f"http://{HOST}:{ctx.port('frontend')}/", 3.0)
    return 200 <= status < 500


def _ch_fp(ctx: Ctx) -> str:
    return files_digest(ctx.layout.root / "infra" / "chdb_http")


def _ls_fp(ctx: Ctx) -> str:
    """The extension's code and LocalStack's environment: LocalStack loads plugins only at start."""
    env = localstack_env(ctx)
    keys = ("GATEWAY_LISTEN", "SERVICES", "LAMBDA_RUNTIME_EXECUTOR", "MOVIERECS_LAMBDA_PYTHON", "MOVIERECS_MSK_BOOTSTRAP",
            "GATEWAY_WORKER_COUNT")
    return files_digest(ctx.layout.root / "infra" / "localstack_ext",
                        ctx.layout.root / "infra" / "requirements" / "localstack.txt",
                        extra=json.dumps({k: env.get(k) for k in keys}))


def _fe_fp(ctx: Ctx) -> str:
    from .endpoints import read_endpoints

    return files_digest(ctx.layout.root / "frontend" / "serve.sh",
                        extra=str((read_endpoints(ctx.layout) or {}).get("api")))


POSTGRES = Service("postgres", "postgres", "PostgreSQL", _pg_start, _pg_ready, _pg_setup, stop_signal=2,
                   ready_timeout=60)
CLICKHOUSE = Service("clickhouse", "clickhouse", "ClickHouse HTTP (chDB)", _ch_start, _ch_ready, _ch_setup,
                     ready_timeout=60, fingerprint=_ch_fp)
LOCALSTACK = Service("localstack", "localstack", "LocalStack", _ls_start, _ls_ready, ready_timeout=90,
                     fingerprint=_ls_fp, stop_timeout=40)
KAFKA = Service("kafka", "kafka", "Kafka (Apache Kafka, KRaft)", _kafka_start, _kafka_ready, _kafka_setup,
                ready_timeout=90, stop_timeout=60, fingerprint=_kafka_fp, preflight=_kafka_preflight,
                extra_ports=("kafka_controller",))
FRONTEND = Service("frontend", "frontend", "Frontend (Reflex)", _fe_start, _fe_ready, ready_timeout=600,
                   enabled=_fe_enabled, fingerprint=_fe_fp)

# started in this order (the deploy runs between the backing services and the frontend)
BACKING = (POSTGRES, CLICKHOUSE, LOCALSTACK, KAFKA)
ALL = (*BACKING, FRONTEND)
BY_NAME = {s.name: s for s in ALL}
