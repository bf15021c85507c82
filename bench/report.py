"""Render bench results (bench/results/*.json) into docs/BENCHMARKS.md and PNG plots in docs/img/.

Why generic: each figure module returns figures built with the harness constructors
(distribution, xy, table, scalars, unavailable), so this file renders any of them without
knowing the module; a few well-known ids are also combined into headline figures (end-to-end
recommendation latency next to the no-op function and the seed's serving path). Every
figure says the machine, the command and the date it was measured with, in the text and
in the picture.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path
from typing import Any

from bench import harness

DEFAULT_MD = harness.ROOT / "docs" / "BENCHMARKS.md"
DEFAULT_IMG = harness.ROOT / "docs" / "img"
IMG_PREFIX = "bench-"

TITLES = {
    "stack_start": "Stack start (`make up`)",
    "api": "HTTP API: recommendation latency, ingest, freshness, cold starts",
    "model": "Model: serving cost, training time and memory against data size, quality",
    "retrain": "Retraining workflow: duration and model quality per version",
    "frontend": "Frontend",
    "load": "Load test: 20,000 GET /recommendations at concurrency 16 with a like stream",
    "load_isolated": "Load test at 50 likes/s: beyond what the local broker drains (see docs/SCALING.md, Ingest backlog)",
}

STATUS_MARK = {"ok": "ok", "failed": "**FAILED**", "missing": "**missing**", "timeout": "**TIMEOUT**",
               "skipped": "skipped", "ignored": "ignored"}


# --------------------------------------------------------------------------- formatting
def fmt(v: Any, unit: str = "") -> str:
    """Readable number: 3 significant digits for small values, thousands separators for big ones."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "not measured"
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    a = abs(v)
    if isinstance(v, int) or (a >= 1000 and float(v).is_integer()):
        s = f"{int(round(v)):,}"
    elif a >= 100:
        s = f"{v:,.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    elif a >= 1:
        s = f"{v:.2f}"
    elif a == 0:
        s = "0"
    else:
        s = f"{v:.3g}"
    return f"{s} {unit}".rstrip() if unit else s


def md_table(columns: list[str], rows: list[list[Any]]) -> str:
    def cell(x: Any) -> str:
        return (x if isinstance(x, str) else fmt(x)).replace("|", "\\|").replace("\n", " ")
    out = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def provenance(env: dict) -> str:
    m = env.get("machine") or {}
    commit = m.get("git_commit", "")
    return (f"Measured on {harness.machine_line(m)}; command `{env.get('command', '?')}`"
            f"{' (quick)' if env.get('quick') else ''}; {env.get('started_at', '?')}"
            f"{f'; commit {commit}' if commit else ''}.")


def slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-")


# --------------------------------------------------------------------------- plots
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _stamp(fig, env: dict) -> None:
    m = env.get("machine") or {}
    fig.text(0.01, 0.01, f"{m.get('cpu_model', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB | "
             f"{env.get('command', '?')} | {env.get('started_at', '?')}", fontsize=7, color="#555555")


def _title(ax, text: str) -> None:
    import textwrap
    ax.set_title("\n".join(textwrap.wrap(text, 90)), fontsize=10 if len(text) > 70 else 11)


def plot_few(fig_d: dict, env: dict, path: Path) -> None:
    """Few samples per series: a percentile curve would mislead; bars at the median, whiskers min..max."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = list(fig_d["series"])
    base = fig_d.get("baseline")
    med = [fig_d["series"][n]["summary"].get("p50", 0.0) for n in names]
    lo = [m - fig_d["series"][n]["summary"].get("min", m) for n, m in zip(names, med)]
    hi = [fig_d["series"][n]["summary"].get("max", m) - m for n, m in zip(names, med)]
    colors = ["#999999" if n == base else f"C{i}" for i, n in enumerate(names)]
    ax.barh(range(len(names)), med, xerr=[lo, hi], color=colors, capsize=4)
    ax.set_yticks(range(len(names)), [f"{n} (n={fig_d['series'][n]['summary'].get('n', 0)})" + (" [baseline]" if n == base else "")
                                      for n in names], fontsize=8)
    ax.invert_yaxis()
    for i, m in enumerate(med):
        ax.text(m, i, f" {fmt(m)}", va="center", fontsize=8)
    ax.set_xlabel(f"{fig_d.get('unit', '')} (bar: median; whisker: min..max)")
    ax.grid(True, axis="x", alpha=0.3)
    _title(ax, fig_d["title"])
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _stamp(fig, env)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_distribution(fig_d: dict, env: dict, path: Path) -> None:
    """Percentile plot: x = percentile on a 'nines' scale (50, 90, 99, 99.9), y = latency."""
    if max((s["summary"].get("n", 0) for s in fig_d["series"].values()), default=0) < 20:
        return plot_few(fig_d, env, path)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    qs = list(range(0, 101)) + [99.5, 99.9]
    base = fig_d.get("baseline")
    ymax, ymin = 0.0, math.inf
    for name, s in fig_d["series"].items():
        q = s.get("quantiles") or []
        if not q:
            continue
        pts = sorted(zip(qs[: len(q)], q))
        pts = [(p, v) for p, v in pts if 1 <= p < 100]  # 'nines' axis: -log10(1 - p)
        x = [-math.log10(1 - p / 100.0) for p, _ in pts]
        y = [v for _, v in pts]
        ymax, ymin = max(ymax, max(y)), min(ymin, min(v for v in y if v > 0) if any(v > 0 for v in y) else ymin)
        n, err = s["summary"].get("n", 0), s.get("errors", 0)
        label = f"{name} (n={n:,}{f', errors={err}' if err else ''})"
        ax.plot(x, y, ("--" if name == base else "-"), lw=2 if name != base else 1.5, label=label + (" [baseline]" if name == base else ""))
    ticks = [50, 90, 99, 99.9]
    ax.set_xticks([-math.log10(1 - t / 100) for t in ticks], [f"p{t:g}" for t in ticks])
    ax.set_xlim(0, 3)
    if ymin < math.inf and ymax / max(ymin, 1e-9) > 30:
        ax.set_yscale("log")
    ax.set_ylabel(fig_d.get("unit", ""))
    ax.set_xlabel("percentile")
    ax.grid(True, alpha=0.3, which="both")
    _title(ax, fig_d["title"])
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _stamp(fig, env)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_xy(fig_d: dict, env: dict, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    xs = fig_d["x"]
    numeric = all(isinstance(v, (int, float)) for v in xs)
    xpos = xs if numeric else list(range(len(xs)))
    base = fig_d.get("baseline")
    for name, ys in fig_d["series"].items():
        pts = [(x, y) for x, y in zip(xpos, ys) if y is not None]
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ("--o" if name == base else "-o"),
                label=name + (" [baseline]" if name == base else ""))
    if not numeric:
        ax.set_xticks(xpos, [str(v) for v in xs], rotation=20 if len(xs) > 3 else 0, ha="right" if len(xs) > 3 else "center",
                      fontsize=8)
    if fig_d.get("log_x") and numeric:
        ax.set_xscale("log")
    if fig_d.get("log_y"):
        ax.set_yscale("log")
    ax.set_xlabel(fig_d.get("x_label", ""))
    ax.set_ylabel(fig_d.get("unit", ""))
    ax.grid(True, alpha=0.3)
    _title(ax, fig_d["title"])
    ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _stamp(fig, env)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --------------------------------------------------------------------------- figure sections
def distribution_table(fig_d: dict) -> str:
    unit = fig_d.get("unit", "")
    base = fig_d.get("baseline")
    bsum = fig_d["series"].get(base, {}).get("summary", {}) if base else {}
    cols = ["series", "n", "errors", f"p50 ({unit})", f"p90 ({unit})", f"p99 ({unit})", f"p99.9 ({unit})",
            f"max ({unit})", f"mean ({unit})"]
    if base:
        cols += ["p50 / baseline", "p99 / baseline"]
    rows = []
    for name, s in fig_d["series"].items():
        sm = s.get("summary", {})
        row = [name + (" (baseline)" if name == base and "baseline" not in name else ""), sm.get("n", 0), s.get("errors", 0),
               sm.get("p50"), sm.get("p90"), sm.get("p99"), sm.get("p99.9"), sm.get("max"), sm.get("mean")]
        if base:
            def ratio(k: str) -> str:
                a, b = sm.get(k), bsum.get(k)
                if a is None or not b:
                    return "n/a"
                r = a / b
                return f"{r:.2f}x" if r >= 0.1 or r == 0 else f"{r:.2g}x (1/{1 / r:,.0f})"
            row += [ratio("p50"), ratio("p99")]
        rows.append(row)
    return md_table(cols, rows)


def xy_table(fig_d: dict) -> str:
    unit = fig_d.get("unit", "")
    cols = [fig_d.get("x_label", "x")] + [f"{k} ({unit})" + (" (baseline)" if k == fig_d.get("baseline") and "baseline" not in k else "")
                                          for k in fig_d["series"]]
    rows = [[str(x) if not isinstance(x, (int, float)) else x] + [fig_d["series"][k][i] for k in fig_d["series"]]
            for i, x in enumerate(fig_d["x"])]
    return md_table(cols, rows)


def render_figure(mod: str, fig_d: dict, env: dict, img_dir: Path, written: set[Path]) -> list[str]:
    kind = fig_d.get("kind")
    out = [f"#### {fig_d.get('title', fig_d.get('id'))}", ""]
    if fig_d.get("note"):
        out += [fig_d["note"], ""]
    if kind == "distribution":
        png = img_dir / f"{IMG_PREFIX}{slug(mod)}-{slug(fig_d['id'])}.png"
        plot_distribution(fig_d, env, png)
        written.add(png)
        out += [distribution_table(fig_d), "", f"![{fig_d['title']}](img/{png.name})", ""]
    elif kind == "xy":
        png = img_dir / f"{IMG_PREFIX}{slug(mod)}-{slug(fig_d['id'])}.png"
        plot_xy(fig_d, env, png)
        written.add(png)
        out += [xy_table(fig_d), "", f"![{fig_d['title']}](img/{png.name})", ""]
    elif kind == "table":
        out += [md_table(fig_d["columns"], fig_d["rows"]), ""]
    elif kind == "scalars":
        out += [md_table(["what", "value"], [[k, fmt(v.get("value"), v.get("unit", ""))]
                                               for k, v in fig_d["values"].items()]), ""]
    elif kind == "unavailable":
        out += ["**Not measured in this run.**", ""]
    else:
        out += [f"(unknown figure kind {kind!r})", ""]
    out += [f"<sub>{provenance(env)}</sub>", ""]
    return out


def find_figure(everything: dict, mod: str, fig_id: str) -> tuple[dict, dict] | None:
    """The first distribution figure of `mod` whose id is one of `fig_id` ('a|b|c')."""
    env = everything.get("modules", {}).get(mod)
    if not env or env.get("status") != "ok":
        return None
    for fid in fig_id.split("|"):
        for f in env.get("figures", []):
            if f.get("id") == fid and f.get("kind") == "distribution":
                return f, env
    return None


def headline(everything: dict, img_dir: Path, written: set[Path]) -> list[str]:
    """End-to-end recommendation latency next to the no-op function and the seed serving path."""
    a = find_figure(everything, "api", "api_rec_latency_c1|recommend_latency")
    b = find_figure(everything, "model", "serving_latency")
    out = ["## Headline: recommendation latency next to its baselines", ""]
    if not a and not b:
        return out + ["Not measured yet: needs `bench/api.py` (figure `recommend_latency`) and "
                      "`bench/model.py` (figure `serving_latency`).", ""]
    series: dict[str, dict] = {}
    envs = []
    for got, prefix in ((a, "API"), (b, "in-process")):
        if got:
            f, env = got
            envs.append(env)
            for k, s in f["series"].items():
                label = f"{prefix}: {k}"
                if prefix == "in-process" and "rectools" in k.lower():
                    label = f"seed serving path, in process: {k}"
                series[label] = s
    combined = {"id": "headline", "kind": "distribution", "unit": "ms", "baseline": None,
                "title": "GET /recommendations end to end, the no-op function, the seed's serving path",
                "series": series}
    png = img_dir / f"{IMG_PREFIX}headline-recommendation-latency.png"
    plot_distribution(combined, envs[0], png)
    written.add(png)
    out += ["End-to-end series go through API Gateway (LocalStack) and the Lambda executor; in-process "
            "series time the serving code alone in one Python process. Detailed tables below.", "",
            distribution_table(combined), "", f"![headline](img/{png.name})", ""]
    out += [f"<sub>{provenance(e)}</sub>" for e in envs] + [""]
    if not a:
        out += ["End-to-end API figure: not measured yet (`bench/api.py`).", ""]
    if not b:
        out += ["In-process seed serving path: not measured yet (`bench/model.py`).", ""]
    return out


# figures whose numbers are the starting point in docs/SCALING.md (module, figure id, what it means)
KEY_FIGURES: tuple[tuple[str, str, str], ...] = (
    ("api", "api_rec_latency_c1|recommend_latency", "GET /recommendations end to end, 1 client (warm)"),
    ("api", "api_rec_latency_c8", "GET /recommendations end to end, 8 clients"),
    ("api", "api_throughput", "API throughput in the latency runs"),
    ("model", "serving_latency", "serving work in process"),
    ("model", "cold_process", "a fresh process loading the model and answering once"),
    ("api", "cold_start", "cold start of a new execution environment"),
    ("api", "cold_start_init", "init duration of the recommend function"),
    ("load", "load_summary", "load test (GET /recommendations at concurrency 16 + like stream)"),
    ("load", "like_drain", "consumer backlog drain after the load test"),
    ("load_isolated", "load_summary", "load test at 50 likes/s (broker falls behind)"),
    ("api", "likes_throughput|ingest_throughput", "ingest throughput"),
    ("api", "likes_freshness|freshness", "freshness (like acknowledged -> visible)"),
    ("model", "train_time", "training time against data size"),
    ("model", "train_memory", "training peak memory against data size"),
    ("retrain", "retrain_duration", "retraining workflow duration"),
    ("stack_start", "stack_up", "local stack start"),
)
SCALING_MD = harness.ROOT / "docs" / "SCALING.md"
SCALING_BEGIN, SCALING_END = "<!-- measured:begin (bench/report.py) -->", "<!-- measured:end -->"


def key_numbers(everything: dict) -> str:
    """A compact table of the measured numbers SCALING.md starts from ('not measured yet' otherwise)."""
    mods = everything.get("modules", {})
    rows: list[list[Any]] = []
    for mod, fid, what in KEY_FIGURES:
        env = mods.get(mod) or {}
        fig = next((f for one in fid.split("|") for f in env.get("figures", []) if f.get("id") == one), None)
        src = f"`{mod}.{fig['id'] if fig else fid.split('|')[0]}`"
        if env.get("status") != "ok" or fig is None or fig.get("kind") == "unavailable":
            why = "" if not env else f" ({env.get('status')})" if env.get("status") != "ok" else ""
            rows.append([what, "not measured yet" + why, src, ""])
            continue
        date = env.get("started_at", "")
        if fig["kind"] == "distribution":
            u = fig.get("unit", "")
            parts = []
            for name, sr in fig["series"].items():
                sm = sr.get("summary", {})
                err = f", {sr.get('errors')} errors" if sr.get("errors") else ""
                parts.append(f"{name}: p50 {fmt(sm.get('p50'), u)}, p99 {fmt(sm.get('p99'), u)} (n={sm.get('n', 0):,}{err})")
            rows.append([what, "; ".join(parts), src, date])
        elif fig["kind"] == "xy":
            u = fig.get("unit", "")
            parts = []
            for name, ys in fig["series"].items():
                pts = list(zip(fig["x"], ys))
                if len(pts) > 6:  # a long curve: its ends say enough here; the plot has the rest
                    pts = [pts[0], pts[-1]]
                parts.append(f"{name}: " + ", ".join(f"{fmt(x)} -> {fmt(y, u)}" for x, y in pts))
            rows.append([what, "; ".join(parts), src, date])
        elif fig["kind"] == "scalars":
            rows.append([what, "; ".join(f"{k}: {fmt(v.get('value'), v.get('unit', ''))}" for k, v in fig["values"].items()),
                         src, date])
        else:
            rows.append([what, f"see docs/BENCHMARKS.md ({fig.get('title')})", src, date])
    m = everything.get("machine", {})
    return (f"Machine: {harness.machine_line(m)}. Command: `make bench` (`python -m bench`); each row's date is "
            f"when it was measured.\n\n" + md_table(["what", "measured", "figure", "date"], rows))


def update_scaling(everything: dict, path: Path = SCALING_MD) -> bool:
    """Refresh the measured block of docs/SCALING.md (between the markers), if the file has them."""
    if not path.exists():
        return False
    text = path.read_text()
    if SCALING_BEGIN not in text or SCALING_END not in text:
        return False
    head, rest = text.split(SCALING_BEGIN, 1)
    _old, tail = rest.split(SCALING_END, 1)
    path.write_text(f"{head}{SCALING_BEGIN}\n{key_numbers(everything)}\n{SCALING_END}{tail}")
    return True


def render(everything: dict, *, out_md: Path = DEFAULT_MD, img_dir: Path = DEFAULT_IMG) -> Path:
    """Write the Markdown report and its PNGs; delete our stale PNGs (bench-*.png not written now)."""
    img_dir.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    mods: dict[str, dict] = everything.get("modules", {})
    lines = [
        "# MovieRecs benchmarks",
        "",
        "Generated by `python -m bench` (= `make bench`) from `bench/results/*.json`; do not edit by hand.",
        "Run everything: `make bench` (needs `make up`). One module: `python -m bench --only api`. "
        "Small and fast: `python -m bench --quick`. Re-render from existing results: `python -m bench.report`. "
        "`python -m bench --help` lists the options; the protocol for figure modules is in docs/DESIGN.md "
        "(\"Benchmark protocol\").",
        "",
        f"Report generated {everything.get('generated_at', '?')} on {harness.machine_line(everything.get('machine', {}))}. "
        "Each figure below states its own machine, command and date.",
        "",
        "## Modules",
        "",
    ]
    rows = []
    for name in harness.MODULES:
        if name not in mods:
            rows.append([f"`{name}`", "**not run**", "", "", "results file absent"])
    for name, env in mods.items():
        err = (env.get("error") or "").strip().splitlines()
        rows.append([f"`{name}`", STATUS_MARK.get(env.get("status"), env.get("status", "?")),
                     env.get("started_at", ""), fmt(env.get("duration_s"), "s"), err[0][:160] if err else ""])
    lines += [md_table(["module", "status", "date", "duration", "error"], rows), ""]
    lines += headline(everything, img_dir, written)

    ordered = [n for n in harness.MODULES if n in mods] + [n for n in mods if n not in harness.MODULES]
    for name in ordered:
        env = mods[name]
        src = (f"Module `bench/{name}.py`" if (harness.ROOT / "bench" / f"{name}.py").exists()
               else f"Results file `bench/results/{name}.json` (written by the command below)")
        lines += [f"## {TITLES.get(name, name)}", "", f"{src}, status: "
                  f"{STATUS_MARK.get(env.get('status'), env.get('status'))}. {provenance(env)}", ""]
        if env.get("params"):
            def short(v: Any) -> str:
                t = json.dumps(v, default=str)
                return t if len(t) <= 200 else t[:200] + " …"
            lines += ["Parameters: " + ", ".join(f"`{k}`={short(v)}" for k, v in env["params"].items()), ""]
        if env.get("notes"):
            lines += [env["notes"], ""]
        if env.get("error"):
            lines += ["```", *env["error"].strip().splitlines()[-15:], "```", ""]
        for f in env.get("figures", []):
            try:
                lines += render_figure(name, f, env, img_dir, written)
            except Exception as e:  # noqa: BLE001 - a malformed figure is shown, not fatal
                lines += [f"#### {f.get('title', f.get('id'))}", "", f"Could not render: {type(e).__name__}: {e}", ""]
    for stale in img_dir.glob(f"{IMG_PREFIX}*.png"):
        if stale not in written:
            stale.unlink()
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_md.write_text("\n".join(lines).rstrip() + "\n")
    return out_md


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.report",
                                 description="Re-render docs/BENCHMARKS.md and docs/img/bench-*.png from bench results JSON.")
    ap.add_argument("--results", type=Path, default=harness.RESULTS_DIR, help="folder of <name>.json results")
    ap.add_argument("--out", type=Path, default=DEFAULT_MD, help="Markdown file to write")
    ap.add_argument("--img-dir", type=Path, default=None, help="PNG folder (default: img/ next to --out)")
    args = ap.parse_args()
    if args.results != harness.RESULTS_DIR:
        harness.RESULTS_DIR = args.results  # collect_all reads harness.RESULTS_DIR
    everything = harness.collect_all()  # same collection as the runner
    img = args.img_dir or (args.out.parent / "img")
    md = render(everything, out_md=args.out, img_dir=img)
    print(f"wrote {md}")
    if args.out == DEFAULT_MD and update_scaling(everything):
        print(f"refreshed the measured block of {SCALING_MD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
