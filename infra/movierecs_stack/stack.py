"""``up``, ``down`` and ``status`` of the whole local stack.

up: checks every port it will need first (a port held by a process MovieRecs did not start
is a clear error naming the port and its env var, and nothing is started); keeps services
that already run and answer; restarts dead or unhealthy ones; runs each service's idempotent
setup; deploys template.yaml; runs the data bootstrap; starts the frontend; writes
.movierecs/endpoints.json. If a service fails to start, whatever this ``up`` started is
stopped again, so no half-started stack is left behind.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .config import HOST, PORTS, Layout
from .deploy import StaleCloudState, deploy
from .endpoints import admin_api_key, build_endpoints, read_endpoints, write_endpoints
from .services import (BACKING, FRONTEND, Ctx, Service, ServiceError, consumer_lag_line, http_get, kafka_topics,
                       pg_connect)


def say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def _log_tail(path: Path, n: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@dataclass
class Stack:
    ctx: Ctx
    started: list[str] = field(default_factory=list)  # services started by this invocation
    backing: tuple[Service, ...] = BACKING  # started in order before the deploy
    frontend: Service | None = field(default_factory=lambda: FRONTEND)  # started after the deploy and the data bootstrap

    @property
    def services(self) -> tuple[Service, ...]:
        return self.backing + ((self.frontend,) if self.frontend else ())

    def service(self, name: str) -> Service | None:
        return next((s for s in self.services if s.name == name), None)

    @classmethod
    def create(cls, layout: Layout | None = None, env: dict[str, str] | None = None) -> "Stack":
        return cls(Ctx(layout or Layout(), dict(env if env is not None else os.environ)))

    @property
    def pids(self) -> procs.PidStore:
        return procs.PidStore(self.ctx.layout.pids)

    # -- mutual exclusion ----------------------------------------------------------------------------------
    def lock(self, timeout: float = 900.0) -> None:
        """Hold ``.movierecs/stack.lock`` (flock) for the rest of this process.

        Why: two concurrent ``up`` runs would each see the other's half-started services as
        unhealthy and restart them. The lock is released by the kernel when the process ends.
        """
        import fcntl

        self.ctx.layout.state.mkdir(parents=True, exist_ok=True)
        f = open(self.ctx.layout.state / "stack.lock", "a+")
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told:
                    f.seek(0)
                    say(f"waiting for another up/down/deploy ({f.read().strip() or 'unknown'}) to finish")
                    told = True
                if time.monotonic() > deadline:
                    raise ServiceError("another up/down/deploy holds .movierecs/stack.lock; try again later")
                time.sleep(0.5)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}: {' '.join(sys.argv[1:]) or 'python'}\n")
        f.flush()
        self._lock_file = f

    # -- ports -----------------------------------------------------------------------------------------
    def port_conflicts(self, services: tuple[Service, ...]) -> list[str]:
        """Messages for ports that services not running yet need but something else holds."""
        out = []
        for svc in services:
            if not svc.enabled(self.ctx) or self.pids.running(svc.name):
                continue
            for key in svc.port_keys():
                port = self.ctx.port(key)
                if procs.port_free(port):
                    continue
                holders = procs.listeners(port)
                who = ", ".join(f"pid {p} ({procs.cmdline(p)[:80]})" for p in holders) or "another process"
                var = PORTS[key][1]
                out.append(f"port {port} for {svc.title} is already in use by {who}, which MovieRecs did not start.\n"
                           f"    Stop that process, or pick another port: {var}=<port> make up")
        return out

    # -- one service -----------------------------------------------------------------------------------
    def _wait_ready(self, svc: Service, proc: subprocess.Popen | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if svc.ready(self.ctx):
                return True
            if proc is not None and proc.poll() is not None:
                return False
            time.sleep(0.2)
        return svc.ready(self.ctx)

    def ensure(self, svc: Service, force_restart: bool = False) -> None:
        """Make ``svc`` run and answer; start it if needed; run its setup."""
        t0 = time.monotonic()
        tracked = self.pids.running(svc.name)
        fp_file = self.ctx.layout.pids / f"{svc.name}.fingerprint"
        fingerprint = svc.fingerprint(self.ctx)
        if tracked and not force_restart and fingerprint:
            try:
                old = fp_file.read_text().strip()
            except FileNotFoundError:
                old = None
            if old is None:  # started before fingerprints were kept: take it as current
                fp_file.write_text(fingerprint + "\n")
            elif old != fingerprint:
                say(f"{svc.name}: its code or configuration changed since it started")
                force_restart = True
        if tracked and force_restart:
            say(f"{svc.name}: restarting (what it runs or depends on changed)")
            self.stop_service(svc)
            tracked = None
        if tracked:
            if self._wait_ready(svc, None, 30):  # patient: restarting a busy live service is costly
                svc.setup(self.ctx)
                say(f"{svc.name}: running (pid {tracked.pid}, port {svc.port(self.ctx)})")
                return
            say(f"{svc.name}: pid {tracked.pid} does not answer; restarting it")
            self.stop_service(svc)
        self.pids.remove(svc.name)
        port = svc.port(self.ctx)
        busy = [k for k in svc.port_keys() if not procs.port_free(self.ctx.port(k))]
        if busy:
            conflicts = self.port_conflicts((svc,))
            raise ServiceError(conflicts[0] if conflicts else f"port {self.ctx.port(busy[0])} for {svc.title} is in use")
        proc = svc.start(self.ctx)
        self.pids.write(svc.name, proc.pid)
        self.started.append(svc.name)
        fp_file.write_text(fingerprint + "\n")
        if not self._wait_ready(svc, proc, svc.ready_timeout):
            state = f"exited with code {proc.returncode}" if proc.poll() is not None else \
                f"did not answer within {svc.ready_timeout:.0f}s"
            self.stop_service(svc)  # never leave a half-started process behind
            self.started.remove(svc.name)
            raise ServiceError(f"{svc.title} {state}. Last lines of {svc.log(self.ctx)}:\n{_log_tail(svc.log(self.ctx))}")
        svc.setup(self.ctx)
        say(f"{svc.name}: started (pid {proc.pid}, port {port}) in {time.monotonic() - t0:.1f}s")

    def stop_service(self, svc_or_name: Service | str, timeout: float | None = None) -> bool:
        name = svc_or_name if isinstance(svc_or_name, str) else svc_or_name.name
        svc = self.service(name)
        t = self.pids.read(name)
        ok = True
        if t is not None:
            grace = timeout if timeout is not None else (svc.stop_timeout if svc else 20.0)
            ok = procs.stop(t, first_signal=svc.stop_signal if svc else 15, timeout=grace)
        if ok:
            self.pids.remove(name)
        return ok

    # -- whole stack -------------------------------------------------------------------------------------
    def up(self, *, deploy_app: bool = True, bootstrap: bool = True) -> dict:
        t0 = time.monotonic()
        for d in (self.ctx.layout.logs, self.ctx.layout.pids, self.ctx.layout.data):
            d.mkdir(parents=True, exist_ok=True)
        conflicts = self.port_conflicts(self.services)
        if conflicts:
            raise ServiceError("cannot start the stack:\n  " + "\n  ".join(conflicts))
        for svc in self.services:  # settings and installs, before anything starts
            if svc.enabled(self.ctx):
                svc.preflight(self.ctx)
        self.retire_unknown()
        key = admin_api_key(self.ctx.layout)
        try:
            for svc in self.backing:
                restart = any(dep in self.started for dep in svc.depends_on)
                self.ensure(svc, force_restart=restart)
        except BaseException:
            self.rollback()
            raise
        api_url = None
        if deploy_app:
            try:
                api_url = self.deploy(key)
            except StaleCloudState:
                if "localstack" in self.started:  # a fresh LocalStack failed: the template is at fault
                    raise
                say("localstack: the deploy failed on the running LocalStack, whose CloudFormation cannot update "
                    "some resources in place (an API stage, localstack issue 13505); restarting it to deploy "
                    "afresh (its AWS state is in memory; the data in ClickHouse, PostgreSQL and Kafka stays)")
                self.ensure(self.service("localstack"), force_restart=True)
                api_url = self.deploy(key)
        else:
            api_url = (read_endpoints(self.ctx.layout) or {}).get("api")
        endpoints = build_endpoints(self.ctx.layout, api_url, self.ctx.env)
        write_endpoints(self.ctx.layout, endpoints)
        if bootstrap and api_url:
            self.bootstrap()
        if self.frontend is not None and self.frontend.enabled(self.ctx):
            # a new API URL changes its fingerprint, which restarts it
            self.ensure(self.frontend)
        say(f"stack up in {time.monotonic() - t0:.1f}s; endpoints in {self.ctx.layout.endpoints_file} (mode 0600):")
        print(json.dumps(endpoints, indent=2), flush=True)
        return endpoints

    def retire_unknown(self) -> None:
        """Stop processes an earlier version of the stack started for a service it no longer
        has (e.g. ``s3lite``, Tansu's storage before the broker was Apache Kafka)."""
        known = {s.name for s in self.services}
        for name in self.pids.names():
            if name not in known and self.pids.read(name) is not None:
                say(f"{name}: no longer part of the stack; stopping it")
                self.stop_service(name)

    def rollback(self) -> None:
        """Stop what this invocation started (newest first)."""
        for name in reversed(self.started):
            say(f"{name}: stopping (started by this failed `up`)")
            self.stop_service(name)
        self.started.clear()

    def deploy(self, key: str | None = None, project: Path | None = None) -> str | None:
        key = key or admin_api_key(self.ctx.layout)
        project = Path(project).resolve() if project else self.ctx.layout.root
        if not (project / "template.yaml").exists():
            say("deploy: template.yaml not found; skipping the application deploy (api: null)")
            return None
        say(f"deploy: {project / 'template.yaml'} -> LocalStack")
        dep = deploy(self.ctx, key, project, echo=lambda m: say(m.strip()))
        if dep.api_url is None:
            say("deploy: the stack has no REST API; api stays null")
        ep = build_endpoints(self.ctx.layout, dep.api_url, self.ctx.env)
        write_endpoints(self.ctx.layout, ep)
        return dep.api_url

    def bootstrap(self) -> None:
        """Load data and train the first model, if the training package exists (idempotent)."""
        env = self.ctx.base_env()
        found = subprocess.run([str(self.ctx.layout.project_python), "-c",
                                "import importlib.util,sys; sys.exit(0 if importlib.util.find_spec('movierecs_training') else 1)"],
                               env=env, capture_output=True).returncode == 0
        if not found:
            say("bootstrap: movierecs_training not present; skipping data bootstrap")
            return
        log = self.ctx.layout.logs / "bootstrap.log"
        say(f"bootstrap: python -m movierecs_training bootstrap (log: {log})")
        t0 = time.monotonic()
        argv = [str(self.ctx.layout.project_python), "-m", "movierecs_training", "bootstrap", "--endpoints",
                str(self.ctx.layout.endpoints_file)]
        with open(log, "a") as f:
            f.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n")
            f.flush()
            p = subprocess.Popen(argv, env=env, cwd=self.ctx.layout.root, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            assert p.stdout is not None
            for line in p.stdout:
                f.write(line)
                print(f"  | {line.rstrip()}", flush=True)
            rc = p.wait()
        if rc:
            raise ServiceError(f"data bootstrap failed (exit {rc}); see {log}")
        say(f"bootstrap: done in {time.monotonic() - t0:.0f}s")

    def down(self) -> bool:
        known = [s.name for s in reversed(self.services)]
        names = known + [n for n in self.pids.names() if n not in known]
        ok = True
        for name in names:
            t = self.pids.read(name)
            if t is None:
                continue
            if not t.running():
                say(f"{name}: not running (stale pid file removed)")
                self.pids.remove(name)
                continue
            svc = self.service(name)
            t0 = time.monotonic()
            if self.stop_service(name):
                say(f"{name}: stopped (pid {t.pid}) in {time.monotonic() - t0:.1f}s")
            else:
                say(f"{name}: could not stop pid {t.pid}")
                ok = False
            if svc is not None and not procs.wait_port_free(svc.port(self.ctx)):
                say(f"{name}: port {svc.port(self.ctx)} still busy")
                ok = False
        return ok

    # -- status -------------------------------------------------------------------------------------------
    def health(self, name: str) -> tuple[bool, str]:
        c = self.ctx
        try:
            if name == "postgres":
                conn = pg_connect(c, timeout=2.0)
                n = conn.run("SELECT count(*) FROM movies")[0][0]
                conn.close()
                return True, f"connect ok ({n} movies)"
            if name == "clickhouse":
                st, body = http_get(c.clickhouse_url + "/ping")
                return st == 200, f"/ping {st} {body.decode(errors='replace').strip()}"
            if name == "localstack":
                st, body = http_get(c.localstack_url + "/_localstack/health")
                if st != 200:
                    return False, f"/_localstack/health {st}"
                svcs = json.loads(body).get("services", {})
                up = sum(1 for v in svcs.values() if v in ("running", "available"))
                return True, f"/_localstack/health ok ({up} services available)"
            if name == "kafka":
                topics = kafka_topics(c, 3000)
                return True, "metadata ok; topics: " + (", ".join(f"{t}({p})" for t, p in sorted(topics.items())) or "-") \
                    + "; " + consumer_lag_line(c)
            if name == "frontend":
                st, _ = http_get(f"http://{HOST}:{c.port('frontend')}/")
                return 200 <= st < 400, f"GET / {st}"
        except Exception as ex:
            return False, f"{type(ex).__name__}: {str(ex)[:100]}"
        return False, "unknown"

    def status(self) -> bool:
        ok = True
        cmap = procs.children_map()
        rows = []
        total_rss = 0
        for svc in self.services:
            if not svc.enabled(self.ctx) and not self.pids.read(svc.name):
                continue
            t = self.pids.running(svc.name)
            port = svc.port(self.ctx)
            if t:
                tree = [t.pid, *procs.descendants(t.pid, cmap)]
                rss = procs.rss_bytes(tree)
                total_rss += rss
                healthy, detail = self.health(svc.name)
                rows.append((svc.name, str(t.pid), str(port), "up" if healthy else "UNHEALTHY", f"{rss / 2**20:.0f} MB",
                             detail))
                ok &= healthy
            else:
                rows.append((svc.name, "-", str(port), "DOWN", "-", "not running"))
                ok = False
        ep = read_endpoints(self.ctx.layout) or {}
        api = ep.get("api")
        if api:
            st, body = http_get(api.rstrip("/") + "/health", 10.0)
            detail = body.decode(errors="replace")[:100]
            rows.append(("api", "-", str(self.ctx.port("localstack")), "up" if st == 200 else "UNHEALTHY", "-",
                         f"GET /health {st} {detail}"))
            ok &= st == 200
        else:
            rows.append(("api", "-", "-", "NOT DEPLOYED", "-", "run `make up` (or `make deploy`)"))
            ok = False
        w = [max(len(r[i]) for r in rows + [("service", "pid", "port", "state", "rss", "check")]) for i in range(5)]
        print("  ".join(h.ljust(w[i]) for i, h in enumerate(("service", "pid", "port", "state", "rss"))) + "  check")
        for r in rows:
            print("  ".join(r[i].ljust(w[i]) for i in range(5)) + "  " + r[5])
        print(f"total RSS of tracked processes: {total_rss / 2**20:.0f} MB; logs: {self.ctx.layout.logs}/<service>.log")
        if api:
            print(f"api: {api}")
        return ok
