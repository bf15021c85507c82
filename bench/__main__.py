"""`python -m bench`: run every figure module, each in its own process, then render the report.

Why one process per module: a crash, a hang or a memory-hungry training run in one module
must not take the others down or pollute their peak-memory figures; each child writes its
own `bench/results/<name>.json`, and a module that is missing, fails or times out is
recorded with that status (the report shows it; nothing is hidden).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench import harness

BENCH_DIR = harness.BENCH_DIR
discover = harness.discover


def _child(name: str, quick: bool, out: Path, command: str) -> int:
    """Inside the child process: import bench.<name>, call run(quick), write the envelope."""
    started = harness.utc_now()
    try:
        mod = importlib.import_module(f"bench.{name}")
    except Exception as e:  # noqa: BLE001 - an import error is a result to report
        env = harness.envelope(name, status="failed", command=command, started_at=started, duration_s=0.0,
                               quick=quick, error=f"import failed: {type(e).__name__}: {e}")
        harness.write_json(out, env)
        return 1
    run = getattr(mod, "run", None)
    if not callable(run):
        env = harness.envelope(name, status="failed", command=command, started_at=started, duration_s=0.0,
                               quick=quick, error=f"bench/{name}.py has no run(quick: bool) -> dict")
        harness.write_json(out, env)
        return 1
    env = harness.run_module_inline(name, run, quick, command)
    harness.write_json(out, env)
    return 0 if env["status"] == "ok" else 1


def run_one(name: str, quick: bool, timeout: float, command: str) -> dict:
    """Run one module in a child process with a time limit; always returns an envelope."""
    final = harness.RESULTS_DIR / f"{name}.json"
    if not (BENCH_DIR / f"{name}.py").exists():
        env = harness.envelope(name, status="missing", command=command, started_at=harness.utc_now(),
                               duration_s=0.0, quick=quick, error=f"bench/{name}.py does not exist yet")
        harness.write_json(final, env)
        return env
    tmp = harness.RESULTS_DIR / f".{name}.partial.json"
    tmp.unlink(missing_ok=True)
    argv = [sys.executable, "-m", "bench", "--_child", name, "--_out", str(tmp), "--_command", command]
    if quick:
        argv.append("--quick")
    started = harness.utc_now()
    t0 = time.perf_counter()
    # own session = own process group, so a timeout ends the module and everything it started
    proc = subprocess.Popen(argv, cwd=harness.ROOT, start_new_session=True)
    status, error = None, ""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        status, error = "timeout", f"stopped after the {timeout:.0f}s limit (--timeout)"
    except KeyboardInterrupt:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()
        raise
    duration = time.perf_counter() - t0
    if status is None and tmp.exists():
        env = json.loads(tmp.read_text())
    else:
        env = harness.envelope(name, status=status or "failed", command=command, started_at=started,
                               duration_s=duration, quick=quick,
                               error=error or f"process exited with code {proc.returncode} without a result")
    tmp.unlink(missing_ok=True)
    harness.write_json(final, env)
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the MovieRecs benchmarks (each next to its baseline), write bench/results/*.json "
                    "and render docs/BENCHMARKS.md with plots in docs/img/. Needs `make up` for the "
                    "stack-facing modules. Modules: " + ", ".join(discover()) + ".")
    ap.add_argument("--only", metavar="NAME[,NAME]", help="run only these modules (comma-separated)")
    ap.add_argument("--quick", action="store_true", help="small, fast versions of every figure (about a minute each)")
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds allowed per module (default 1800, 300 with --quick)")
    ap.add_argument("--no-report", action="store_true", help="do not render docs/BENCHMARKS.md")
    ap.add_argument("--list", action="store_true", help="list the modules and whether each exists, then exit")
    ap.add_argument("--_child", help=argparse.SUPPRESS)
    ap.add_argument("--_out", help=argparse.SUPPRESS)
    ap.add_argument("--_command", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._child:
        return _child(args._child, args.quick, Path(args._out), args._command or "")

    names = discover()
    if args.list:
        for n in names:
            print(f"{n:14s} {'present' if (BENCH_DIR / f'{n}.py').exists() else 'missing'}")
        return 0
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in wanted if n not in names]
        if unknown:
            ap.error(f"unknown module(s) {', '.join(unknown)}; known: {', '.join(names)}")
        names = wanted
    else:
        names = [n for n in names if n not in harness.ON_REQUEST]
    timeout = args.timeout or (300.0 if args.quick else 1800.0)
    command = "python -m bench" + "".join(f" {shlex.quote(a)}" for a in (argv if argv is not None else sys.argv[1:]))

    harness.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    summary: list[tuple[str, str, float, str]] = []
    for name in names:
        print(f"== bench {name} ({'quick' if args.quick else 'full'}) ==", flush=True)
        env = run_one(name, args.quick, timeout, command)
        first_err = (env.get("error") or "").strip().splitlines()[:1]
        summary.append((name, env["status"], env.get("duration_s", 0.0), first_err[0] if first_err else ""))
        print(f"-- {name}: {env['status']} ({env.get('duration_s', 0):.1f}s) {first_err[0] if first_err else ''}",
              flush=True)

    everything = harness.collect_all()
    harness.write_json(harness.RESULTS_DIR / "all.json", everything)
    if not args.no_report:
        from bench import report
        md = report.render(everything, out_md=report.DEFAULT_MD, img_dir=report.DEFAULT_IMG)
        print(f"report: {md.relative_to(harness.ROOT)}")
        if report.update_scaling(everything):
            print("measured numbers refreshed in docs/SCALING.md")
    print("\nsummary:")
    for name, status, dur, err in summary:
        print(f"  {name:14s} {status:8s} {dur:7.1f}s  {err}")
    return 0 if all(s == "ok" for _, s, _, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main())
