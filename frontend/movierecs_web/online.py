"""The ops page's online like-rate and experiments as plain data (no Reflex, no HTTP).

Why a module of its own: what the page shows about the like-rate per version and about an
experiment is arithmetic and wording over the API's JSON (GET /admin/stats `online`,
GET /admin/experiments, docs/EXPERIMENTS.md), and that is easiest to get right, and to
test, away from the Reflex state. `tests/unit/test_frontend_online.py` covers it.
"""
from __future__ import annotations

import math
from typing import Any

# Line colours, one per model version in the order the API lists them; distinct in the
# light and the dark theme. A band is the same colour at low opacity (8-digit hex).
PALETTE = ("#3e63dd", "#e5484d", "#30a46c", "#f76b15", "#8e4ec6", "#12a594", "#d6409f",
           "#978365", "#0090ff", "#ffc53d")
BAND_ALPHA = "26"  # about 15 % opacity

DECISION_WORDS = {"promote": "promote the candidate", "keep": "keep the control"}


def _num(value: Any) -> float | None:
    """A finite float, or None for anything else (missing, null, NaN, text)."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _ci(value: Any) -> tuple[float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 2:
        lo, hi = _num(value[0]), _num(value[1])
        if lo is not None and hi is not None:
            return lo, hi
    return None


def pct(rate: Any) -> str:
    """A rate 0..1 as a percentage with the digits a small rate needs ("0.84 %", "12.3 %")."""
    r = _num(rate)
    if r is None:
        return "–"
    p = r * 100
    return f"{p:.2f} %" if abs(p) < 10 else f"{p:.1f} %"


def interval_text(ci: Any) -> str:
    """A 95 % interval of a rate as "0.29 – 2.47 %"."""
    iv = _ci(ci)
    if iv is None:
        return "–"
    return f"{pct(iv[0])[:-2]} – {pct(iv[1])}"


def pp(diff: Any, signed: bool = True) -> str:
    """A difference of two rates in percentage points ("+1.25 pp")."""
    d = _num(diff)
    if d is None:
        return "–"
    p = d * 100
    digits = 2 if abs(p) < 10 else 1 if abs(p) < 1000 else 0
    return f"{p:+.{digits}f} pp" if signed else f"{p:.{digits}f} pp"


def hour_label(t: str, multi_day: bool) -> str:
    """The x-axis label of an hourly point ("17:00", or "12-03 17:00" over several days)."""
    t = str(t)
    if len(t) < 16:
        return t
    return f"{t[5:10]} {t[11:16]}" if multi_day else t[11:16]


def _round_pct(x: float) -> float:
    """A rate as % for the chart: two decimals, three below 1 % (rates here are often tiny)."""
    p = x * 100
    return round(p, 2 if abs(p) >= 1 else 3)


def online_chart(online: dict | None) -> tuple[list[dict], list[dict]]:
    """GET /admin/stats' `online` as chart rows (one per hour) and series (one per version).

    A row holds, per series key `sN`, the hour's like-rate in % and under `sN_ci` its 95 %
    interval as [lo, hi] in % (a range area draws it as a band; the tooltip shows
    "lo ~ hi"). An hour a version served nothing is absent from its row, so its line skips it.
    """
    versions = [v for v in (online or {}).get("versions") or [] if isinstance(v, dict)]
    series: list[dict] = []
    rows: dict[str, dict] = {}
    for i, v in enumerate(versions):
        key = f"s{i}"
        color = PALETTE[i % len(PALETTE)]
        series.append({"version": str(v.get("model_version", "")), "key": key,
                       "band": f"{key}_ci", "color": color, "fill": color + BAND_ALPHA})
        for point in v.get("hourly") or []:
            rate = _num(point.get("rate"))
            t = str(point.get("t", ""))
            if rate is None or not t:
                continue
            row = rows.setdefault(t, {"t": t})
            row[key] = _round_pct(rate)
            iv = _ci(point.get("ci95"))
            if iv is not None:
                row[f"{key}_ci"] = [_round_pct(iv[0]), _round_pct(iv[1])]
    days = {t[:10] for t in rows}
    out = []
    for t in sorted(rows):
        rows[t]["hour"] = hour_label(t, len(days) > 1)
        out.append(rows[t])
    return out, series


def _arm_text(by_arm: dict) -> str:
    parts = []
    for arm in ("control", "candidate", "none"):
        a = by_arm.get(arm)
        if isinstance(a, dict):
            name = "no experiment" if arm == "none" else arm
            parts.append(f"{name} {pct(a.get('rate'))} of {int(_num(a.get('impressions')) or 0)}")
    return " · ".join(parts)


def version_rows(online: dict | None, colors: dict[str, str] | None = None) -> list[dict]:
    """One table row per version: impressions, converted, likes, rate, its 95 % interval, arms."""
    colors = colors or {}
    rows = []
    for v in (online or {}).get("versions") or []:
        if not isinstance(v, dict):
            continue
        version = str(v.get("model_version", ""))
        rows.append({
            "version": version, "color": colors.get(version, "#8b8d98"),
            "impressions": int(_num(v.get("impressions")) or 0),
            "converted": int(_num(v.get("converted")) or 0),
            "likes": int(_num(v.get("likes")) or 0),
            "rate": pct(v.get("rate")), "interval": interval_text(v.get("ci95")),
            "arms": _arm_text(v.get("by_arm") or {}),
        })
    return rows


def _arm_view(report: dict, arm: str) -> dict:
    a = (report.get("arms") or {}).get(arm) or {}
    return {
        "version": str(a.get("version") or report.get(arm) or ""),
        "users": int(_num(a.get("users")) or 0),
        "impressions": int(_num(a.get("impressions")) or 0),
        "converted": int(_num(a.get("converted")) or 0),
        "rate": pct(a.get("rate")), "interval": interval_text(a.get("ci95")),
        "user_rate": pct(a.get("user_rate")),
    }


def difference_interval_text(interval: Any) -> str:
    """The always-valid interval of candidate - control, or why there is none yet."""
    iv = _ci(interval)
    if iv is None:
        return "not yet (too few users in an arm)"
    return f"{pp(iv[0])} to {pp(iv[1])}"


def decision_text(decision: Any) -> str:
    return DECISION_WORDS.get(str(decision or ""), "no decision yet")


def experiment_view(report: dict) -> dict:
    """One experiment report as the strings the panel shows (flat, for Reflex state)."""
    rules = report.get("rules") or {}
    share = _num(report.get("share"))
    alpha = _num(report.get("alpha"))
    ended = str(report.get("ended_at") or "")
    return {
        "experiment_id": str(report.get("experiment_id", "")),
        "status": str(report.get("status", "")),
        "control": _arm_view(report, "control"),
        "candidate": _arm_view(report, "candidate"),
        "share": f"{share * 100:g} %" if share is not None else "–",
        "min_impressions": int(_num(report.get("min_impressions")) or 0),
        "max_hours": f"{_num(report.get('max_hours')) or 0:g}",
        "difference": pp(report.get("difference")),
        "interval": difference_interval_text(report.get("interval")),
        "test": str(report.get("test") or ""),
        "level": f"{(1 - alpha) * 100:g} %" if alpha is not None else "95 %",
        "rules_decision": str(rules.get("decision") or ""),
        "rules_text": decision_text(rules.get("decision")),
        "rules_reason": str(rules.get("reason") or ""),
        "decision": str(report.get("decision") or ""),
        "reason": str(report.get("reason") or ""),
        "created_at": str(report.get("created_at") or "")[:19].replace("T", " "),
        "ended_at": ended[:19].replace("T", " "),
    }


def split_experiments(items: list[dict] | None) -> tuple[dict | None, list[dict]]:
    """The running experiment (at most one runs) and the ended ones, newest first."""
    running, past = None, []
    for report in items or []:
        if not isinstance(report, dict):
            continue
        if report.get("status") == "running" and running is None:
            running = report
        else:
            past.append(report)
    return running, past


def start_body(control: str, candidate: str, share: str, min_impressions: str,
               max_hours: str) -> tuple[dict | None, str]:
    """The POST /admin/experiments body from the form's text, or a message for the person.

    Only what cannot be sent is checked here (no version, not a number); whether a value
    is allowed (share in (0, 1), positive counts) is the API's to say, and its 400
    message is shown as it is.
    """
    if not control or not candidate:
        return None, "Pick a control and a candidate version."
    body: dict[str, Any] = {"control": control, "candidate": candidate}
    for name, text, kind, label in (("share", share, float, "Share"),
                                    ("min_impressions", min_impressions, int, "Min impressions"),
                                    ("max_hours", max_hours, float, "Max hours")):
        text = str(text).strip()
        try:
            value = kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            return None, f"{label} must be {what} (got {text or 'nothing'!r})."
        if kind is float and not math.isfinite(value):
            return None, f"{label} must be a finite number."
        body[name] = value
    return body, ""


def stop_confirm_text(decision: str, control: str, candidate: str) -> str:
    if decision == "promote":
        return (f"Promote the candidate {candidate}? The experiment ends and every user is "
                f"served {candidate}.")
    return (f"Keep the control {control}? The experiment ends and every user is served "
            f"{control}.")


def stop_result_text(report: dict) -> str:
    """What the page says after POST /admin/experiments/{id}/stop answered."""
    decision = str(report.get("decision") or "")
    served = report.get("candidate") if decision == "promote" else report.get("control")
    return (f"Experiment {report.get('experiment_id', '')} ended: {decision_text(decision)}; "
            f"now serving {served} to everyone.")
