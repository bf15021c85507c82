"""Stack start: `make up` from a stopped stack to a deployed, healthy one, warm and cold; idle RSS.

What is timed: the wall time of `make up` (install check + every service + `sam build` +
`samlocal deploy` + data bootstrap + frontend) after `make down`, until it has written
.movierecs/endpoints.json; then `make status`-style health checks must all pass.

- warm: caches kept (LocalStack's FILESYSTEM_ROOT/TMPDIR, the `.aws-sam` build cache, the
  Reflex build, the installed venvs, PostgreSQL/ClickHouse data). LocalStack state is not
  durable, so every start redeploys and the bootstrap retrains the first model (S3 is empty).
- cold: the same after clearing `.movierecs/localstack/` (FILESYSTEM_ROOT and TMPDIR) and the
  `.aws-sam/` build cache. Venvs, OS page cache and durable data stay: "cold" is a cold
  LocalStack and SAM, not a fresh machine (a fresh install is timed by CI as a whole).
- baseline (same run): `up --no-deploy --no-bootstrap`, the backing services alone.
- idle RSS: 15 s after a warm start, the sum of RSS of every tracked pid and its descendants.

This stops and restarts the shared stack: run it when no test is using the stack. It leaves
the stack up. Target: warm start to a deployed, healthy stack in at most 90 s.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from bench import harness

ROOT = Path(__file__).resolve().parents[1]

from movierecs_stack import procs
from movierecs_stack.stack import Stack

_STARTED = re.compile(r"\[stack\] (\w+): started \(pid \d+, port \d+\) in ([\d.]+)s")
_DEPLOYED = re.compile(r"deployed in ([\d.]+)s")
_BOOT = re.compile(r"bootstrap: done in ([\d.]+)s")


def _run(argv: list[str], log: Path) -> tuple[float, str]:
    t0 = time.perf_counter()
    r = subprocess.run(argv, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    out = r.stdout + r.stderr
    with open(log, "a") as f:
        f.write(f"\n===== {' '.join(argv)} ({wall:.1f}s, exit {r.returncode})\n{out}")
    if r.returncode:
        raise RuntimeError(f"{' '.join(argv)} failed (exit {r.returncode}); last lines:\n"
                           + "\n".join(out.strip().splitlines()[-20:]))
    return wall, out


def _phases(out: str) -> dict[str, float]:
    ph = {m.group(1): float(m.group(2)) for m in _STARTED.finditer(out)}
    if m := _DEPLOYED.search(out):
        ph["deploy"] = float(m.group(1))
    if m := _BOOT.search(out):
        ph["bootstrap"] = float(m.group(1))
    return ph


def _healthy(stack: Stack) -> list[str]:
    bad = [s.name for s in stack.services if s.enabled(stack.ctx) and not stack.health(s.name)[0]]
    return bad


def _down() -> None:
    _run(["make", "down"], harness.RESULTS_DIR / "stack_start.log")


def _up(extra: list[str] | None = None) -> tuple[float, dict[str, float]]:
    log = harness.RESULTS_DIR / "stack_start.log"
    if extra:
        wall, out = _run([str(ROOT / ".venv/bin/python"), "-m", "movierecs_stack", "up", *extra], log)
    else:
        wall, out = _run(["make", "up"], log)
    return wall, _phases(out)


def idle_rss(stack: Stack) -> dict[str, float]:
    cmap = procs.children_map()
    out = {}
    for svc in stack.services:
        t = stack.pids.running(svc.name)
        if t:
            out[svc.name] = procs.rss_bytes([t.pid, *procs.descendants(t.pid, cmap)]) / 2**20
    return out


def run(quick: bool) -> dict:
    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    n_warm, n_base, n_cold = (1, 1, 1) if quick else (3, 3, 2)
    warm, base, cold, rows, unhealthy = [], [], [], [], []

    for i in range(n_base):
        _down()
        wall, ph = _up(["--no-deploy", "--no-bootstrap"])
        base.append(wall)
    for i in range(n_cold):
        _down()
        shutil.rmtree(ROOT / ".movierecs" / "localstack", ignore_errors=True)
        shutil.rmtree(ROOT / ".aws-sam", ignore_errors=True)
        wall, ph = _up()
        cold.append(wall)
        rows.append(["cold", i + 1, round(wall, 1), *[ph.get(k) for k in PHASES]])
    for i in range(n_warm):
        _down()
        wall, ph = _up()
        warm.append(wall)
        rows.append(["warm", i + 1, round(wall, 1), *[ph.get(k) for k in PHASES]])
        unhealthy += _healthy(Stack.create())
    time.sleep(15)
    stack = Stack.create()
    rss = idle_rss(stack)
    unhealthy += _healthy(stack)
    if unhealthy:
        raise RuntimeError(f"stack not healthy after start: {sorted(set(unhealthy))}")
    med = harness.summarize(warm)["p50"]
    figures = [
        harness.distribution("stack_up", "`make up` from a stopped stack to a deployed, healthy stack",
                             {"warm make up": warm, "cold make up": cold, "services only, no deploy (baseline)": base},
                             unit="s", baseline="services only, no deploy (baseline)",
                             note="warm: caches kept; cold: LocalStack FILESYSTEM_ROOT/TMPDIR and .aws-sam cleared; "
                                  "both redeploy and retrain the first model (LocalStack state is not durable). "
                                  f"Target warm <= 90 s: median {med:.1f} s."),
        harness.table("stack_up_phases", "Seconds per phase of each `make up`",
                      ["run", "#", "total s", *PHASES], rows),
        harness.scalars("stack_idle_rss", "Idle RSS of the stack (tracked pids and their children, 15 s after start)",
                        {**{k: (round(v, 1), "MB") for k, v in rss.items()},
                         "total": (round(sum(rss.values()), 1), "MB")}),
    ]
    params = {"warm_runs": n_warm, "cold_runs": n_cold, "baseline_runs": n_base,
              "loadavg_1m_before": round(load_before[0], 1), "loadavg_1m_after": round(os.getloadavg()[0], 1),
              "ports": {k: v for k, v in os.environ.items() if k.startswith("MOVIERECS_") and k.endswith("_PORT")}}
    return {"figures": figures, "params": params,
            "notes": "Restarts the stack of this checkout (its ports); leaves it up. Machine load is in params: "
                     "other work on the 2 cores slows every phase."}


PHASES = ("postgres", "clickhouse", "localstack", "kafka", "deploy", "bootstrap", "frontend")

if __name__ == "__main__":
    harness.cli("stack_start", run)
