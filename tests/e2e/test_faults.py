"""Fault suite: kill or break one part of the running stack and check nothing acknowledged is lost.

Why these faults: each is a way the real system fails (a database or broker process dies, a
Lambda execution environment dies mid-request, training raises, a model file in S3 is
corrupted, the event source mapping is paused while the topic fills up). For each, the test
counts the likes the API acknowledged (202 + event id) against the likes stored in ClickHouse
(`count()` = `uniqExact(event_id)` = acknowledged, read with FINAL) and in the serving state
(PostgreSQL `user_events`: the same event ids, each once), checks that
GET /recommendations keeps being served, and, for the store and broker faults, that every
list served to the traffic's own users arrived as an impression (issue 13).

Rules kept here: processes are killed only by the pids the stack recorded in
`.movierecs/pids/` (checked against their start time), restarted with the stack's own code
(`movierecs_stack.services`), and always restored, even when an assertion fails. Traffic
goes only to the loopback URLs of `.movierecs/endpoints.json`. Every loop is bounded.
Needs `make up`. Whole file: a few minutes.
"""
from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from bench import harness
from bench.load import (LikeStream, LoadOutcome, post_like, serving_event_ids, stored_event_ids, stored_likes,
                        wait_stored)

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parents[2]
STATE = ROOT / ".movierecs"
KNOWN_USER_RANGE = (1, 6040)
MOVIE_RANGE = (1, 3883)
N_PAUSED_LIKES = 50  # likes posted while the mapping is disabled


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ep() -> dict:
    if not (STATE / "endpoints.json").exists():
        pytest.fail("the stack is not up (.movierecs/endpoints.json is missing): run `make up` first")
    e = harness.endpoints()
    r = requests.get(f"{e['api']}/health", timeout=30)
    assert r.status_code == 200, f"GET /health answered {r.status_code}: {r.text[:300]}"
    return e


@pytest.fixture(scope="module")
def aws():
    """boto3 clients for the stack's LocalStack (the gateway in the API URL)."""
    import boto3

    e = harness.endpoints()
    m = re.match(r"(https?://[^/]+)", e["api"])
    assert m, e["api"]
    gw = m.group(1)
    kw = dict(endpoint_url=gw, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
    return {name: boto3.client(name, **kw) for name in ("lambda", "s3", "stepfunctions")}


# --------------------------------------------------------------------------- stack processes
def _stack():
    from movierecs_stack import procs, services
    from movierecs_stack.config import Layout

    layout = Layout()
    return procs, services, services.Ctx(layout, dict(os.environ)), procs.PidStore(layout.pids)


def tracked(name: str):
    """The running process the stack recorded for `name` (pid + start time must still match)."""
    procs, _services, _ctx, store = _stack()
    t = store.running(name)
    assert t is not None, f"{name} is not running according to .movierecs/pids/{name}.pid; run `make up`"
    return t


def sigkill(name: str) -> int:
    """SIGKILL the recorded pid of a stack service (only that pid) and wait until it is gone."""
    procs, *_ = _stack()
    t = tracked(name)
    os.kill(t.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while procs.alive(t.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not procs.alive(t.pid), f"{name} (pid {t.pid}) survived SIGKILL"
    return t.pid


def restart(name: str) -> None:
    """Start one service again with the stack's own code: `Stack.ensure` (what `make up` runs per
    service: start, record the pid, wait until healthy, idempotent setup such as the topic)."""
    from movierecs_stack.services import BY_NAME
    from movierecs_stack.stack import Stack

    procs, _services, ctx, store = _stack()
    svc = BY_NAME[name]
    if store.running(name) is None:
        procs.wait_port_free(svc.port(ctx), timeout=15)
    Stack.create().ensure(svc)
    assert store.running(name) is not None, f"{name} did not come back"


@pytest.fixture
def restore_services():
    """Whatever a test killed is started again at the end, even if the test failed."""
    killed: list[str] = []
    yield killed
    errors = []
    for name in killed:
        try:
            restart(name)
        except Exception as e:  # noqa: BLE001 - try every service, then report
            errors.append(f"{name}: {e}")
    assert not errors, "could not restore: " + "; ".join(errors)


# --------------------------------------------------------------------------- traffic
@dataclass
class GetLog:
    """Outcomes of background GET /recommendations: (start, end, ok, detail)."""

    rows: list[tuple[float, float, bool, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failures(self, after: float = 0.0, before: float = float("inf")) -> list[str]:
        with self.lock:
            return [d for s, e, ok, d in self.rows if not ok and s >= after and s <= before]

    def count(self, after: float = 0.0, before: float = float("inf")) -> int:
        with self.lock:
            return sum(1 for s, _e, _ok, _d in self.rows if after <= s <= before)


class Traffic:
    """GET /recommendations on a few threads + a like stream, for the duration of a `with`."""

    def __init__(self, api: str, prefix: str, like_rate: float = 3.0, get_threads: int = 2,
                 max_seconds: float = 120.0):
        self.api, self.prefix = api.rstrip("/"), prefix
        self.out = LoadOutcome(event_prefix=prefix)
        self.likes = LikeStream(self.api, like_rate, lambda r: r.randint(*KNOWN_USER_RANGE), prefix, self.out,
                                timeout=15.0, limit=int(like_rate * max_seconds))
        self.gets = GetLog()
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.threads = [threading.Thread(target=self._get_loop, args=(i,), daemon=True) for i in range(get_threads)]
        # the traffic's own users (new ones, popular lists): their impressions are counted
        # against the lists served to them (assert_impressions_kept)
        first = 900_000_000 + uuid.uuid4().int % 1_000_000 * 100
        self.users = (first, first + 99)
        self.own = {"served": 0, "tried": 0}

    def _get_loop(self, n: int) -> None:
        import random

        rnd = random.Random(n)
        s = requests.Session()
        while not self.stop_event.is_set() and time.monotonic() < self.deadline:
            own = rnd.random() < 1 / 3
            uid = rnd.randint(*self.users) if own else rnd.randint(*KNOWN_USER_RANGE)
            t0 = time.monotonic()
            try:
                r = s.get(f"{self.api}/recommendations", params={"user_id": uid, "k": 10}, timeout=15)
                ok = r.status_code == 200 and bool(r.json().get("items"))
                detail = "" if ok else f"HTTP {r.status_code}: {r.text[:200]}"
            except (requests.RequestException, ValueError) as e:
                ok, detail = False, f"{type(e).__name__}: {str(e)[:200]}"
            with self.gets.lock:
                self.gets.rows.append((t0, time.monotonic(), ok, detail))
                if own:
                    self.own["tried"] += 1
                    self.own["served"] += ok
            time.sleep(0.02)

    def __enter__(self) -> "Traffic":
        self.likes.start()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_event.set()
        self.likes.stop()
        for t in self.threads:
            t.join(timeout=30)

    @property
    def acked(self) -> list[str]:
        return list(self.out.acked_event_ids)


def assert_stored_once(ep: dict, prefix: str, acked: list[str], timeout: float = 150.0) -> dict:
    """Every acknowledged like is in ClickHouse, once (FINAL: count() == uniqExact(event_id)).

    A like whose request failed on the client side may still have reached the broker; such
    extra rows are allowed (at-least-once from the client's view) and not counted as loss."""
    assert acked, "no like was acknowledged at all: the fault test measured nothing"
    t0 = time.monotonic()
    got = wait_stored(ep["clickhouse"], prefix, len(acked), timeout=timeout)
    print(f"\n{prefix}: acknowledged {len(acked)}, stored {got} after waiting {time.monotonic() - t0:.1f}s")
    have = stored_event_ids(ep["clickhouse"], prefix)
    missing = sorted(set(acked) - have)
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged likes are not stored, e.g. {missing[:5]}"
    assert got["rows"] == got["unique"], f"duplicates after FINAL: {got}"
    # the serving state holds exactly the same events, each once (written in the same batch)
    deadline = time.monotonic() + 30
    while sorted(serving := serving_event_ids(ep["postgres"], prefix)) != sorted(have) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(serving) == len(set(serving)), f"an event twice in the serving state: {len(serving)} rows"
    assert set(serving) == have, (f"the stores disagree: {len(have - set(serving))} in ClickHouse only, "
                                  f"{len(set(serving) - have)} in PostgreSQL only")
    return got


def assert_impressions_kept(ep: dict, tr: "Traffic", timeout: float = 60.0) -> None:
    """Every list served to the traffic's own users is an impression in ClickHouse: the
    recommend function's buffer and the impressions mapping outlived the fault."""
    import clickhouse_connect
    from urllib.parse import urlparse

    with tr.gets.lock:
        served, tried = tr.own["served"], tr.own["tried"]
    assert served, "no list was served to the traffic's own users: the check measured nothing"
    u = urlparse(ep["clickhouse"])
    ch = clickhouse_connect.get_client(host=u.hostname, port=u.port, database="movierecs", compress=False)
    sql = "SELECT count() FROM impressions FINAL WHERE user_id BETWEEN {a:UInt32} AND {b:UInt32}"
    deadline = time.monotonic() + timeout
    while (got := ch.query(sql, parameters={"a": tr.users[0], "b": tr.users[1]}).result_rows[0][0]) < served \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    print(f"impressions: {served} lists served to the traffic's own users, {got} stored")
    assert served <= got <= tried, f"{served} lists served but {got} impressions stored (of {tried} requests)"


def require_consumer_caught_up(ep: dict, timeout: float = 90.0) -> None:
    """Precondition of the storage checks: one fresh like reaches ClickHouse within `timeout`.

    Kafka partitions are consumed in order: if an earlier backlog is still being consumed, a
    fault test could not tell its own losses from that delay, so it says so and stops.
    """
    prefix = new_prefix("sentinel")
    _ms, err, msg = post_like(requests.Session(), ep["api"].rstrip("/"), 1, 1, f"{prefix}-0", timeout=30)
    assert err is None, f"POST /likes failed before the fault: {err}: {msg}"
    got = wait_stored(ep["clickhouse"], prefix, 1, timeout=timeout)
    assert got["unique"] == 1, (f"precondition: a fresh like was not stored within {timeout:.0f}s: the consumer is "
                                "behind an earlier backlog (Kafka -> consumer -> ClickHouse); rerun when it has drained")


def wait_recommendations_ok(api: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            r = requests.get(f"{api}/recommendations", params={"user_id": 1, "k": 5}, timeout=15)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except requests.RequestException as e:
            last = f"{type(e).__name__}: {e}"
        time.sleep(0.5)
    pytest.fail(f"GET /recommendations not served {timeout:.0f}s after the fault: {last}")


def new_prefix(name: str) -> str:
    return f"fault-{name}-{uuid.uuid4().hex[:8]}"


def kill_under_traffic(ep: dict, service: str, restore_services: list[str], prefix: str,
                       down_s: float = 4.0) -> tuple["Traffic", float, float]:
    """Likes and GETs flow; ``service`` is SIGKILLed for ``down_s`` and restarted. Returns the
    traffic and the monotonic times of the kill and of the service being back."""
    with Traffic(ep["api"], prefix) as tr:
        time.sleep(3)
        restore_services.append(service)
        sigkill(service)
        t_kill = time.monotonic()
        time.sleep(down_s)
        restart(service)
        t_back = time.monotonic()
        time.sleep(5)
    return tr, t_kill, t_back


# --------------------------------------------------------------------------- 1. ClickHouse killed
def test_clickhouse_killed_mid_stream(ep, restore_services):
    require_consumer_caught_up(ep)
    prefix = new_prefix("ch")
    # while it is down, likes keep being acknowledged by Kafka; the consumer's inserts fail
    tr, t_kill, t_back = kill_under_traffic(ep, "clickhouse", restore_services, prefix)
    assert not tr.out.like_errors, f"POST /likes failed while only ClickHouse was down: {dict(tr.out.like_errors)}"
    assert_stored_once(ep, prefix, tr.acked)
    assert_impressions_kept(ep, tr)
    # after the restart every GET is served again
    after_failures = tr.gets.failures(after=t_back + 2)
    assert tr.gets.count(after=t_back + 2) > 0
    assert not after_failures, f"GET /recommendations failing after ClickHouse came back: {after_failures[:3]}"
    # ClickHouse is not on the read path (the serving state is in PostgreSQL): every GET of
    # the outage is served, not only refused cleanly
    down = tr.gets.count(after=t_kill, before=t_back)
    down_failures = tr.gets.failures(after=t_kill, before=t_back)
    print(f"\nwhile ClickHouse was down: {down - len(down_failures)} of {down} GET /recommendations served")
    assert down > 0 and not down_failures, f"GET /recommendations failed while ClickHouse was down: {down_failures[:3]}"


# --------------------------------------------------------------------------- 1b. PostgreSQL killed
def test_postgres_killed_mid_stream(ep, restore_services):
    """The serving state's store dies between ClickHouse's write and its own: batches fail and are
    retried until both stores hold every acknowledged like, once each."""
    require_consumer_caught_up(ep)
    prefix = new_prefix("pg")
    # while it is down, likes keep being acknowledged by Kafka; ClickHouse takes them, PostgreSQL cannot
    tr, t_kill, t_back = kill_under_traffic(ep, "postgres", restore_services, prefix)
    # like-ingest checks the movie in the catalogue (PostgreSQL) before producing: while it is
    # down a like may be refused with a clean 503 (not acknowledged, so nothing to lose)
    unclean_likes = {k: n for k, n in tr.out.like_errors.items() if k != "HTTP 503"}
    assert not unclean_likes, f"POST /likes failed uncleanly while PostgreSQL was down: {unclean_likes}"
    assert_stored_once(ep, prefix, tr.acked)
    assert_impressions_kept(ep, tr)
    after_failures = tr.gets.failures(after=t_back + 2)
    assert tr.gets.count(after=t_back + 2) > 0
    assert not after_failures, f"GET /recommendations failing after PostgreSQL came back: {after_failures[:3]}"
    # while it is down the user's state cannot be read: a clean 503 with the contract's error
    # body (never a gateway error or a hang), or served when the request needed nothing of it
    down_failures = tr.gets.failures(after=t_kill, before=t_back)
    unclean = [d for d in down_failures if not (d.startswith("HTTP 503") and '"error"' in d)]
    assert not unclean, f"GET /recommendations failed uncleanly while PostgreSQL was down: {unclean[:3]}"


# --------------------------------------------------------------------------- 2. broker killed
def test_broker_killed_and_restarted(ep, restore_services):
    require_consumer_caught_up(ep)
    prefix = new_prefix("kafka")
    with Traffic(ep["api"], prefix) as tr:
        time.sleep(3)
        restore_services.append("kafka")
        sigkill("kafka")
        t_kill = time.monotonic()
        time.sleep(3)
        restart("kafka")
        t_back = time.monotonic()
        time.sleep(8)
    # likes sent while the broker was down may be refused (never acknowledged): that is allowed;
    # the ones acknowledged must all be stored, and acknowledgements must resume
    assert tr.acked, "no like was acknowledged before or after the broker restart"
    late_errors = []  # POST /likes must work again once the broker is back: check directly
    s = requests.Session()
    for i in range(5):
        ev = f"{prefix}-after-{i}"
        ms, err, msg = post_like(s, ep["api"], 1 + i, 1 + i, ev, timeout=20)
        if err:
            late_errors.append(f"{err}: {msg}")
        else:
            tr.out.acked_event_ids.append(ev)
    assert not late_errors, f"POST /likes still failing after the broker restart: {late_errors[:3]}"
    after_failures = tr.gets.failures(after=t_back + 2)
    assert not after_failures, f"GET /recommendations failing after the broker restart: {after_failures[:3]}"
    down_failures = tr.gets.failures(after=t_kill, before=t_back)
    assert not down_failures, f"GET /recommendations failed while the broker was down: {down_failures[:3]}"
    assert_stored_once(ep, prefix, tr.acked)
    assert_impressions_kept(ep, tr)


# --------------------------------------------------------------------------- 3. execution environment killed
def _function_named(aws, pattern: str) -> dict:
    fns = []
    for page in aws["lambda"].get_paginator("list_functions").paginate():
        fns += page["Functions"]
    hits = [f for f in fns if re.search(pattern, f["FunctionName"], re.I)]
    assert hits, f"no Lambda function matching {pattern!r} among {[f['FunctionName'] for f in fns]}"
    return sorted(hits, key=lambda f: len(f["FunctionName"]))[0]


def _workers_of(function_name: str) -> list[int]:
    """Execution-environment processes of one function: descendants of LocalStack running the
    executor's worker whose environment names the function."""
    procs, *_ = _stack()
    ls = tracked("localstack")
    out = []
    for pid in procs.descendants(ls.pid):
        if "worker.py" not in procs.cmdline(pid):
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"AWS_LAMBDA_FUNCTION_NAME={function_name}".encode() in env:
            out.append(pid)
    return out


def test_execution_environment_killed_mid_invocation(ep, aws):
    fn = _function_named(aws, r"recommend")["FunctionName"]
    api = ep["api"].rstrip("/")
    wait_recommendations_ok(api)
    workers = _workers_of(fn)
    assert workers, (f"no worker process found for {fn} among LocalStack's descendants "
                     "(looked for worker.py with AWS_LAMBDA_FUNCTION_NAME in its environment)")
    log = GetLog()
    stop = threading.Event()

    def hammer(n: int) -> None:
        s = requests.Session()
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                r = s.get(f"{api}/recommendations", params={"user_id": 1 + n, "k": 100}, timeout=30)
                ok, d = r.status_code == 200, f"HTTP {r.status_code}"
            except requests.RequestException as e:
                ok, d = False, type(e).__name__
            with log.lock:
                log.rows.append((t0, time.monotonic(), ok, d))

    threads = [threading.Thread(target=hammer, args=(i,), daemon=True) for i in range(6)]
    for t in threads:
        t.start()
    in_flight: list = []
    try:
        for _attempt in range(5):  # bounded: retry until a kill lands while a request is in flight
            time.sleep(1.0)
            victims = _workers_of(fn)
            t_kill = time.monotonic()
            for pid in victims:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(2.0)
            with log.lock:
                in_flight = [r for r in log.rows if r[0] < t_kill < r[1]]
            if victims and in_flight:
                break
    finally:
        time.sleep(3.0)
        t_after = time.monotonic()
        time.sleep(4.0)
        stop.set()
        for t in threads:
            t.join(timeout=40)
    assert in_flight, "no request was in flight at any of the kills (could not exercise the fault)"
    print(f"\nkilled {fn} environments; in-flight requests got: {[r[3] for r in in_flight]}; "
          f"requests after: {len([r for r in log.rows if r[0] >= t_after])}")
    # in-flight requests got an answer (an error or a retried success), none hung past the client timeout
    assert all(r[1] - r[0] < 30 for r in in_flight)
    later = [r for r in log.rows if r[0] >= t_after]
    assert later, "no request was sent after the kill"
    bad = [r[3] for r in later if not r[2]]
    assert not bad, f"requests after the killed environment was replaced still fail: {bad[:5]}"


# --------------------------------------------------------------------------- 4. training raises
def _retrain_state_machine(aws) -> str:
    sms = aws["stepfunctions"].list_state_machines()["stateMachines"]
    hits = [m for m in sms if re.search("retrain", m["name"], re.I)] or (sms if len(sms) == 1 else [])
    assert hits, f"no retraining state machine among {[m['name'] for m in sms]}"
    return hits[0]["stateMachineArn"]


def _served_version(api: str) -> str:
    r = requests.get(f"{api}/health", timeout=30)
    assert r.status_code == 200, r.text[:300]
    return r.json()["model_version"]


def test_training_raises_previous_model_still_served(ep, aws):
    api = ep["api"].rstrip("/")
    before = _served_version(api)
    arn = _retrain_state_machine(aws)
    sfn = aws["stepfunctions"]
    # an unknown hyperparameter passes the request check and makes the training code raise
    ex = sfn.start_execution(stateMachineArn=arn, name=f"fault-train-{uuid.uuid4().hex[:8]}",
                             input=json.dumps({"trigger": "fault-test",
                                               "hyperparameters": {"no_such_hyperparameter": 1}}))
    deadline = time.monotonic() + 200
    while True:
        d = sfn.describe_execution(executionArn=ex["executionArn"])
        if d["status"] != "RUNNING":
            break
        assert time.monotonic() < deadline, "retraining execution still RUNNING after 200 s"
        time.sleep(2)
    assert d["status"] == "FAILED", f"execution ended {d['status']}, expected FAILED: {d.get('output', '')[:300]}"
    hist = sfn.get_execution_history(executionArn=ex["executionArn"], maxResults=200)["events"]
    entered = [e["stateEnteredEventDetails"]["name"] for e in hist if "stateEnteredEventDetails" in e]
    assert "Train" in entered and "Promote" not in entered, f"states entered: {entered}"
    assert _served_version(api) == before
    r = requests.get(f"{api}/admin/models", headers={"x-api-key": ep["admin_api_key"]}, timeout=30)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["current"] == before
    wait_recommendations_ok(api, timeout=10)


# --------------------------------------------------------------------------- 5. corrupted model artifact
def _model_bucket(aws) -> tuple[str, str]:
    fn = _function_named(aws, r"recommend")
    env = (fn.get("Environment") or {}).get("Variables") or {}
    assert env.get("MODEL_BUCKET"), f"{fn['FunctionName']} has no MODEL_BUCKET"
    return env["MODEL_BUCKET"], env.get("MODEL_PREFIX", "models/")


def test_corrupted_artifact_refused(ep, aws):
    """A published version whose model.npz in S3 is garbage is refused by POST /admin/reload.

    The version is a fresh copy of the served one under a new, never-loaded version id (its
    manifest names the new id, its file checksums are the originals), so no function can have
    it in a local cache; then its model.npz is overwritten with random bytes.
    """
    api = ep["api"].rstrip("/")
    key_hdr = {"x-api-key": ep["admin_api_key"]}
    before = _served_version(api)
    bucket, prefix = _model_bucket(aws)
    s3 = aws["s3"]
    current_obj = s3.get_object(Bucket=bucket, Key=f"{prefix}CURRENT")["Body"].read()
    fake = f"20000101T000000Z-{uuid.uuid4().hex[:8]}"
    src = f"{prefix}{before}/"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=src).get("Contents", [])]
    assert any(k.endswith("/model.npz") for k in keys) and any(k.endswith("/manifest.json") for k in keys), keys
    try:
        for k in keys:
            name = k[len(src):]
            body = s3.get_object(Bucket=bucket, Key=k)["Body"].read()
            if name == "manifest.json":
                m = json.loads(body)
                m["version"] = fake
                body = json.dumps(m).encode()
            elif name == "model.npz":
                body = os.urandom(len(body) if len(body) < 1 << 20 else 1 << 20)
            s3.put_object(Bucket=bucket, Key=f"{prefix}{fake}/{name}", Body=body)
        r = requests.post(f"{api}/admin/reload", headers=key_hdr, json={"version": fake}, timeout=60)
        assert 400 <= r.status_code < 500 and r.status_code != 404, \
            f"reload of a corrupted artifact answered {r.status_code}: {r.text[:300]}"
        msg = r.json().get("error", "")
        assert re.search(r"checksum|sha256|digest", msg, re.I), f"error does not name the checksum: {msg!r}"
        assert s3.get_object(Bucket=bucket, Key=f"{prefix}CURRENT")["Body"].read() == current_obj
        assert _served_version(api) == before
        wait_recommendations_ok(api, timeout=10)
    finally:
        if s3.get_object(Bucket=bucket, Key=f"{prefix}CURRENT")["Body"].read() != current_obj:
            s3.put_object(Bucket=bucket, Key=f"{prefix}CURRENT", Body=current_obj)  # never leave it moved
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}{fake}/").get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=o["Key"])


# --------------------------------------------------------------------------- 6. mapping disabled, topic fills
def _consumer_mapping(aws) -> dict:
    lam = aws["lambda"]
    maps = lam.list_event_source_mappings()["EventSourceMappings"]
    hits = [m for m in maps if "interactions" in (m.get("Topics") or [])]
    assert hits, f"no event source mapping on topic 'interactions': {maps}"
    return hits[0]


def _wait_mapping(aws, uuid_: str, state: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        s = aws["lambda"].get_event_source_mapping(UUID=uuid_)["State"]
        if s == state:
            return
        assert time.monotonic() < deadline, f"mapping {uuid_} is {s}, expected {state} after {timeout}s"
        time.sleep(0.5)


def test_topic_filled_while_mapping_disabled(ep, aws):
    require_consumer_caught_up(ep)
    m = _consumer_mapping(aws)
    lam = aws["lambda"]
    prefix = new_prefix("esm")
    acked: list[str] = []
    lam.update_event_source_mapping(UUID=m["UUID"], Enabled=False)
    try:
        _wait_mapping(aws, m["UUID"], "Disabled")
        s = requests.Session()
        errors = []
        for i in range(N_PAUSED_LIKES):
            ev = f"{prefix}-{i}"
            _ms, err, msg = post_like(s, ep["api"], 1 + i % 6040, 1 + (i * 7) % 3883, ev, timeout=20)
            (errors.append(f"{err}: {msg}") if err else acked.append(ev))
        assert not errors, f"POST /likes failed while the mapping was disabled: {errors[:3]}"
        time.sleep(3)
        paused = stored_likes(ep["clickhouse"], prefix)
        assert paused["raw_rows"] == 0, f"likes were consumed while the mapping was disabled: {paused}"
    finally:
        lam.update_event_source_mapping(UUID=m["UUID"], Enabled=True)
    _wait_mapping(aws, m["UUID"], "Enabled")
    got = assert_stored_once(ep, prefix, acked, timeout=150)
    assert got["unique"] == len(acked)
    wait_recommendations_ok(ep["api"].rstrip("/"), timeout=10)
