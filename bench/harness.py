"""Shared helpers for every benchmark module: the protocol, timing, percentiles, machine info, JSON.

Why one module: every figure in docs/BENCHMARKS.md must say on which machine, with which
command and when it was measured, and must sit next to its baseline measured in the same
run. Putting the result schema and the helpers here keeps the eight figure modules
consistent and lets `bench/report.py` render any of them without knowing their internals.

The protocol (also written in docs/DESIGN.md, "Benchmark protocol")
-------------------------------------------------------------------
A figure module is `bench/<name>.py` exposing

    def run(quick: bool) -> dict:
        return {"figures": [harness.distribution(...), harness.xy(...), ...],
                "params": {...},          # what was measured with (sizes, counts, urls)
                "notes": "free text"}     # optional

* `quick=True` must finish in about a minute (CI / smoke); `quick=False` is the full figure.
* Return figures built with the constructors below (`distribution`, `xy`, `table`,
  `scalars`); put the baseline series in the same figure and name it in `baseline=`.
* Raise on failure (do not return half a result silently); to report a figure that could
  not be measured, raise or return it with `harness.unavailable(id, title, reason)`.
* The runner (`python -m bench`) runs each module in its own process, adds machine, command,
  date, duration and status, and writes `bench/results/<name>.json`; `bench/report.py` turns
  `bench/results/*.json` into docs/BENCHMARKS.md and docs/img/*.png.
* A module may also run alone: end it with
  `if __name__ == "__main__": harness.cli("<name>", run)`.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import ipaddress
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
ENDPOINTS_FILE = ROOT / ".movierecs" / "endpoints.json"
SCHEMA_VERSION = 1

# Figure modules in the order the report shows them; `python -m bench` runs these.
MODULES: tuple[str, ...] = ("stack_start", "api", "model", "retrain", "frontend", "load")
# Modules too long for every `make bench` (the soak runs up to an hour) or that change the
# deployed functions or publish model versions (experiments, impressions): run them by name,
# `python -m bench --only soak` or `python -m bench.soak`; their results are still rendered.
ON_REQUEST: frozenset[str] = frozenset({"soak", "experiments", "impressions"})

# Percentiles every distribution reports (the quantile curve keeps 0..100 for plots).
SUMMARY_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)


# --------------------------------------------------------------------------- modules and results
# Here (not in __main__) because both the runner and bench/report.py collect the results.
BENCH_DIR = ROOT / "bench"
#: bench/*.py files that are not figure modules.
NOT_MODULES = {"__init__", "__main__", "harness", "report"}


def discover() -> list[str]:
    """Known modules in report order, then any other bench/<name>.py that defines run()."""
    extra = sorted(p.stem for p in BENCH_DIR.glob("*.py")
                   if p.stem not in NOT_MODULES and p.stem not in MODULES and not p.stem.startswith("_"))
    return list(MODULES) + extra


def collect_all() -> dict:
    """Every bench/results/<name>.json present (each keeps its own date and command)."""
    out: dict[str, dict] = {}
    for p in sorted(RESULTS_DIR.glob("*.json")):
        if p.name == "all.json" or p.name.startswith("."):
            continue
        try:
            data = json.loads(p.read_text())
            if not isinstance(data, dict) or "schema" not in data:
                data = {"name": p.stem, "status": "ignored", "figures": [],
                        "error": f"bench/results/{p.name} was not written by the harness (no 'schema' key)"}
            out[p.stem] = data
        except json.JSONDecodeError as e:
            out[p.stem] = {"name": p.stem, "status": "failed", "error": f"unreadable results file: {e}",
                           "figures": []}
    order = {n: i for i, n in enumerate(discover())}
    return {"generated_at": utc_now(), "machine": machine_info(),
            "modules": dict(sorted(out.items(), key=lambda kv: order.get(kv[0], 999)))}


# --------------------------------------------------------------------------- statistics
def percentile(sorted_samples: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default) of already sorted samples."""
    n = len(sorted_samples)
    if n == 0:
        return math.nan
    if n == 1:
        return float(sorted_samples[0])
    pos = (n - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, n - 1)
    frac = pos - lo
    return float(sorted_samples[lo] + (sorted_samples[hi] - sorted_samples[lo]) * frac)


def summarize(samples: Iterable[float]) -> dict[str, float]:
    """n, mean, min, max and the SUMMARY_PERCENTILES of a sample list (NaN-free input)."""
    s = sorted(float(x) for x in samples)
    out: dict[str, float] = {"n": len(s)}
    if not s:
        return out
    out["mean"] = sum(s) / len(s)
    out["min"] = s[0]
    out["max"] = s[-1]
    for q in SUMMARY_PERCENTILES:
        out[f"p{q:g}"] = percentile(s, q)
    return out


def quantile_curve(samples: Iterable[float]) -> list[float]:
    """Percentiles 0..100 in steps of 1, plus 99.5 and 99.9 at the end: enough for a CDF plot."""
    s = sorted(float(x) for x in samples)
    if not s:
        return []
    return [percentile(s, q) for q in range(0, 101)] + [percentile(s, 99.5), percentile(s, 99.9)]


# --------------------------------------------------------------------------- timing
@contextmanager
def timer() -> Iterator[dict[str, float]]:
    """`with timer() as t: ...` then `t["s"]` (seconds) and `t["ms"]`; monotonic clock."""
    box: dict[str, float] = {}
    t0 = time.perf_counter()
    try:
        yield box
    finally:
        box["s"] = time.perf_counter() - t0
        box["ms"] = box["s"] * 1000.0


def time_calls(fn: Callable[[], Any], n: int, warmup: int = 3) -> list[float]:
    """Call `fn` warmup + n times; return the n latencies in milliseconds."""
    for _ in range(warmup):
        fn()
    out: list[float] = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000.0)
    return out


def concurrent_latency(call_factory: Callable[[], Callable[[int], bool]], n: int, concurrency: int,
                       warmup: int = 0) -> tuple[list[float], int]:
    """n calls spread over ``concurrency`` threads (a closed loop: each thread sends its next call
    when the last one answered). ``call_factory`` runs once per thread and returns that thread's
    ``call(i) -> ok`` (its own client or session); ``warmup`` calls per thread are not counted.
    Returns (latencies in ms of the successful calls, error count); an exception is an error."""
    import threading

    lat: list[float] = []
    errors = 0
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        nonlocal errors
        call = call_factory()
        for _ in range(warmup):
            try:
                call(-1)
            except Exception:  # noqa: BLE001 - a lasting failure is counted below
                pass
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            t0 = time.perf_counter()
            try:
                ok = call(i)
            except Exception:  # noqa: BLE001 - an error is a counted result
                ok = False
            ms = (time.perf_counter() - t0) * 1000.0
            with lock:
                if ok:
                    lat.append(ms)
                else:
                    errors += 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, errors


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure_subprocess(argv: Sequence[str], *, env: dict[str, str] | None = None,
                       cwd: str | os.PathLike | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run a command; return its wall seconds, peak RSS (MiB, from wait4) and exit code.

    Why wait4: peak memory of *that* child only, not of the benchmark runner, so training
    memory figures are not polluted by whatever the bench process loaded before.
    """
    import tempfile

    out_f = tempfile.TemporaryFile(mode="w+")  # files, not pipes: a chatty child cannot block
    err_f = tempfile.TemporaryFile(mode="w+")
    t0 = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, cwd=cwd, stdout=out_f, stderr=err_f, text=True)
    deadline = None if timeout is None else t0 + timeout
    timed_out = False
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if deadline is not None and time.perf_counter() > deadline:
            proc.kill()
            timed_out = True
            pid, status, ru = os.wait4(proc.pid, 0)
            break
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    out_f.seek(0)
    err_f.seek(0)
    stdout, stderr = out_f.read(), err_f.read()
    out_f.close()
    err_f.close()
    return {"seconds": seconds, "peak_rss_mb": ru.ru_maxrss / 1024.0, "returncode": proc.returncode,
            "stdout": stdout, "stderr": stderr, "timed_out": timed_out}


# --------------------------------------------------------------------------- machine, endpoints
def machine_info() -> dict[str, Any]:
    """CPU model, cores, memory, OS, Python, git commit: printed under every figure."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = math.nan
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = int(line.split()[1]) / 1024 / 1024
                break
    except OSError:
        pass
    commit = ""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count() or 0,
        "memory_gib": round(mem_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "git_commit": commit,
    }


def machine_line(m: dict[str, Any]) -> str:
    """One human line: 'AMD EPYC, 2 cores, 23.4 GiB, Linux 6.1, Python 3.11.2'."""
    return (f"{m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB RAM, "
            f"{m.get('os', '?')}, Python {m.get('python', '?')}")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _require_loopback(url: str) -> str:
    host = urlparse(url if "://" in url else f"tcp://{url}").hostname or ""
    if host != "localhost":
        try:
            if not ipaddress.ip_address(host).is_loopback:
                raise ValueError
        except ValueError:
            raise RuntimeError(f"refusing to benchmark a non-loopback address: {url!r}") from None
    return url


def endpoints(required: bool = True) -> dict[str, str]:
    """The stack's `.movierecs/endpoints.json`; every URL in it is checked to be loopback.

    Benchmarks and load tests send traffic only to this machine; this is the one guard.
    """
    if not ENDPOINTS_FILE.exists():
        if required:
            raise RuntimeError(f"{ENDPOINTS_FILE} not found: run `make up` first")
        return {}
    data = json.loads(ENDPOINTS_FILE.read_text())
    for key in ("api", "frontend", "kafka", "clickhouse", "postgres"):
        if data.get(key):
            _require_loopback(str(data[key]))
    return data


# --------------------------------------------------------------------------- figure constructors
def distribution(id: str, title: str, series: dict[str, Sequence[float]], *, unit: str = "ms",
                 baseline: str | None = None, note: str = "", errors: dict[str, int] | None = None) -> dict:
    """A latency-like distribution per series (raw samples in, summary + quantile curve out).

    `baseline` names the series the others are compared with (ratios of p50/p99 in the report).
    `errors` counts failed samples per series (they are not in the samples; never hide them).
    """
    if baseline is not None and baseline not in series:
        raise ValueError(f"baseline {baseline!r} is not one of the series {list(series)}")
    return {
        "id": id, "kind": "distribution", "title": title, "unit": unit, "baseline": baseline, "note": note,
        "series": {k: {"summary": summarize(v), "quantiles": quantile_curve(v),
                       "errors": int((errors or {}).get(k, 0))} for k, v in series.items()},
    }


def xy(id: str, title: str, x_label: str, x: Sequence[Any], series: dict[str, Sequence[float | None]], *,
       unit: str, baseline: str | None = None, note: str = "", log_x: bool = False, log_y: bool = False) -> dict:
    """Values against a parameter (data size, model version, concurrency); None = not measured."""
    for k, v in series.items():
        if len(v) != len(x):
            raise ValueError(f"series {k!r} has {len(v)} values for {len(x)} x values")
    if baseline is not None and baseline not in series:
        raise ValueError(f"baseline {baseline!r} is not one of the series {list(series)}")
    return {"id": id, "kind": "xy", "title": title, "x_label": x_label, "x": list(x), "unit": unit,
            "series": {k: [None if y is None else float(y) for y in v] for k, v in series.items()},
            "baseline": baseline, "note": note, "log_x": log_x, "log_y": log_y}


def table(id: str, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, note: str = "") -> dict:
    """A plain table (no plot), e.g. per-version metrics with their hyperparameters."""
    return {"id": id, "kind": "table", "title": title, "columns": list(columns),
            "rows": [list(r) for r in rows], "note": note}


def scalars(id: str, title: str, values: dict[str, tuple[float | int | str, str]], *, note: str = "") -> dict:
    """Named single numbers with units: {"throughput": (812.3, "req/s"), "errors": (0, "")}."""
    return {"id": id, "kind": "scalars", "title": title, "note": note,
            "values": {k: {"value": v[0], "unit": v[1]} for k, v in values.items()}}


def unavailable(id: str, title: str, reason: str) -> dict:
    """A figure that could not be measured in this run, and why (shown as such in the report)."""
    return {"id": id, "kind": "unavailable", "title": title, "note": reason}


FIGURE_KINDS = ("distribution", "xy", "table", "scalars", "unavailable")


def validate_result(result: Any) -> list[str]:
    """Problems with a module's `run()` return value (empty list = fine)."""
    problems: list[str] = []
    if not isinstance(result, dict):
        return [f"run() returned {type(result).__name__}, expected dict"]
    figs = result.get("figures")
    if not isinstance(figs, list):
        return ["run() result has no 'figures' list"]
    seen: set[str] = set()
    for i, f in enumerate(figs):
        if not isinstance(f, dict) or f.get("kind") not in FIGURE_KINDS:
            problems.append(f"figure {i} is not built with a harness constructor (kind={f.get('kind') if isinstance(f, dict) else f!r})")
            continue
        if not f.get("id") or f["id"] in seen:
            problems.append(f"figure {i} has a missing or duplicate id {f.get('id')!r}")
        seen.add(f.get("id", ""))
    try:
        json.dumps(result, allow_nan=True)
    except (TypeError, ValueError) as e:
        problems.append(f"result is not JSON-serialisable: {e}")
    return problems


# --------------------------------------------------------------------------- JSON files
def write_json(path: Path, data: Any) -> Path:
    """Write JSON atomically (tmp + rename) so a crashed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False, default=str) + "\n")
    tmp.replace(path)
    return path


def envelope(name: str, *, status: str, command: str, started_at: str, duration_s: float, quick: bool,
             result: dict | None = None, error: str = "") -> dict:
    """What `bench/results/<name>.json` holds: the module's result plus where/when/how."""
    result = result or {}
    return {
        "schema": SCHEMA_VERSION,
        "name": name,
        "status": status,          # ok | failed | missing | skipped | timeout
        "error": error,
        "quick": quick,
        "command": command,
        "started_at": started_at,
        "duration_s": round(duration_s, 3),
        "machine": machine_info(),
        "params": result.get("params", {}),
        "notes": result.get("notes", ""),
        "figures": result.get("figures", []),
    }


def run_module_inline(name: str, run: Callable[[bool], dict], quick: bool, command: str) -> dict:
    """Call one module's run(), validate it, wrap it in the envelope (never raises)."""
    import traceback

    started = utc_now()
    t0 = time.perf_counter()
    try:
        result = run(quick)
        problems = validate_result(result)
        if problems:
            return envelope(name, status="failed", command=command, started_at=started,
                            duration_s=time.perf_counter() - t0, quick=quick,
                            result=result if isinstance(result, dict) else None,
                            error="invalid result: " + "; ".join(problems))
        return envelope(name, status="ok", command=command, started_at=started,
                        duration_s=time.perf_counter() - t0, quick=quick, result=result)
    except Exception as e:  # noqa: BLE001 - a failing module is reported, not hidden
        tb = traceback.format_exc(limit=8)
        return envelope(name, status="failed", command=command, started_at=started,
                        duration_s=time.perf_counter() - t0, quick=quick,
                        error=f"{type(e).__name__}: {e}\n{tb}")


def cli(name: str, run: Callable[[bool], dict]) -> None:
    """`python -m bench.<name> [--quick]`: run one module alone and write its results file."""
    ap = argparse.ArgumentParser(prog=f"python -m bench.{name}",
                                 description=f"Run the '{name}' benchmark alone; writes bench/results/{name}.json.")
    ap.add_argument("--quick", action="store_true", help="small, fast version (about a minute)")
    args = ap.parse_args()
    command = f"python -m bench.{name}" + (" --quick" if args.quick else "")
    env = run_module_inline(name, run, args.quick, command)
    path = write_json(RESULTS_DIR / f"{name}.json", env)
    print(f"{name}: {env['status']} in {env['duration_s']:.1f}s -> {path.relative_to(ROOT)}")
    if env["error"]:
        print(env["error"], file=sys.stderr)
    sys.exit(0 if env["status"] == "ok" else 1)
