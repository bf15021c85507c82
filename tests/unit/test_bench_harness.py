"""Unit tests of the benchmark harness and report renderer (no stack; sample results only)."""
from __future__ import annotations

import json
import math

import pytest

from bench import harness, report


def test_percentile_matches_linear_interpolation():
    s = sorted([1.0, 2.0, 3.0, 4.0, 100.0])
    assert harness.percentile(s, 50) == 3.0
    assert harness.percentile(s, 0) == 1.0 and harness.percentile(s, 100) == 100.0
    assert harness.percentile(s, 90) == pytest.approx(4 + 0.6 * 96)
    assert math.isnan(harness.percentile([], 50))


def test_summary_and_quantiles():
    sm = harness.summarize(range(1, 101))
    assert sm["n"] == 100 and sm["p50"] == pytest.approx(50.5) and sm["max"] == 100
    q = harness.quantile_curve([5.0] * 10)
    assert len(q) == 103 and set(q) == {5.0}


def test_constructors_validate_baseline_and_lengths():
    with pytest.raises(ValueError):
        harness.distribution("a", "a", {"x": [1.0]}, baseline="nope")
    with pytest.raises(ValueError):
        harness.xy("a", "a", "n", [1, 2], {"s": [1.0]}, unit="s")
    assert harness.validate_result({"figures": [harness.table("t", "t", ["a"], [[1]])]}) == []
    assert harness.validate_result({"nofigures": 1})
    assert harness.validate_result({"figures": [{"kind": "pie"}]})


def test_loopback_guard():
    assert harness._require_loopback("http://127.0.0.1:4566/x")
    assert harness._require_loopback("127.0.0.1:19092")
    with pytest.raises(RuntimeError):
        harness._require_loopback("http://10.0.0.5:4566")


def test_failing_module_is_reported_not_raised():
    def run(quick):
        raise RuntimeError("deliberate")
    env = harness.run_module_inline("x", run, True, "python -m bench --only x")
    assert env["status"] == "failed" and "deliberate" in env["error"]
    assert env["machine"]["cores"] >= 1 and env["command"] == "python -m bench --only x"


def test_report_renders_tables_plots_and_statuses(tmp_path):
    res = {"figures": [
        harness.distribution("recommend_latency", "lat", {"recommend": [10.0, 12.0, 30.0], "no-op function": [5.0, 6.0, 7.0]},
                             baseline="no-op function", errors={"recommend": 2}),
        harness.xy("train_time", "train", "interactions", [1_000_000, 5_000_000], {"iALS": [1.0, 5.0], "Popular": [0.1, None]},
                   unit="s", baseline="Popular"),
        harness.scalars("s", "s", {"throughput": (123.4, "req/s")}),
        harness.unavailable("u", "u", "not there"),
    ]}
    ok = harness.envelope("api", status="ok", command="python -m bench --only api", started_at="2026-01-01T00:00:00Z",
                          duration_s=1.0, quick=False, result=res)
    bad = harness.envelope("model", status="failed", command="python -m bench", started_at="2026-01-01T00:00:00Z",
                           duration_s=1.0, quick=False, error="Boom: it broke")
    everything = {"generated_at": "now", "machine": harness.machine_info(), "modules": {"api": ok, "model": bad}}
    json.dumps(everything)
    md = report.render(everything, out_md=tmp_path / "B.md", img_dir=tmp_path / "img").read_text()
    assert "**FAILED**" in md and "Boom: it broke" in md and "**not run**" in md
    assert "| recommend | 3 | 2 |" in md  # errors are shown next to the samples
    assert "2.00x" in md  # p50 ratio against the baseline
    assert "Not measured in this run" in md and "not measured" in md  # the None point
    assert (tmp_path / "img" / "bench-api-recommend-latency.png").stat().st_size > 1000
    assert (tmp_path / "img" / "bench-api-train-time.png").exists()


def test_concurrent_latency_counts_each_call_once_and_errors_apart():
    from bench import harness

    calls: list[int] = []

    def factory():
        def call(i: int) -> bool:
            if i >= 0:
                calls.append(i)
            if i == 7:
                raise RuntimeError("boom")
            return i % 10 != 3

        return call

    lat, errors = harness.concurrent_latency(factory, 50, 4, warmup=2)
    assert sorted(calls) == list(range(50))
    assert errors == 5 + 1  # i % 10 == 3 five times, plus the exception
    assert len(lat) == 44 and all(ms >= 0 for ms in lat)
