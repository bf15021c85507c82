"""The ops page's like-rate chart and experiments panel as pure data (frontend/movierecs_web/online.py).

online.py imports neither Reflex nor requests, so it is loaded from the frontend folder as
test_frontend_controls.py does. The inputs are shaped like the API's answers
(GET /admin/stats `online`, GET /admin/experiments; docs/EXPERIMENTS.md).
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "frontend"))

from movierecs_web import online  # noqa: E402


def _point(t: str, n: int, k: int, lo: float, hi: float) -> dict:
    return {"t": t, "impressions": n, "converted": k, "likes": k, "rate": k / n, "ci95": [lo, hi]}


ONLINE = {
    "window_seconds": 1800,
    "versions": [
        {"model_version": "20261203T163954Z-f8a6058a", "impressions": 5, "converted": 1,
         "likes": 2, "rate": 0.2, "ci95": [0.036224, 0.624465],
         "by_arm": {"none": {"impressions": 5, "converted": 1, "likes": 2, "rate": 0.2,
                             "ci95": [0.036224, 0.624465]}},
         "hourly": [_point("2026-12-03T17:00:00Z", 5, 1, 0.036224, 0.624465)]},
        {"model_version": "20261203T170845Z-9be56de3", "impressions": 409, "converted": 5,
         "likes": 13, "rate": 0.012225, "ci95": [0.005233, 0.028295],
         "by_arm": {"candidate": {"impressions": 7, "rate": 0.0, "ci95": [0.0, 0.35433]},
                    "control": {"impressions": 235, "rate": 0.004255, "ci95": [0.0007, 0.0237]}},
         "hourly": [_point("2026-12-03T16:00:00Z", 200, 2, 0.002714, 0.0358),
                    _point("2026-12-03T17:00:00Z", 209, 3, 0.0049, 0.0413)]},
    ],
}


def test_chart_has_one_series_per_version_and_one_row_per_hour():
    rows, series = online.online_chart(ONLINE)
    assert [s["version"] for s in series] == [v["model_version"] for v in ONLINE["versions"]]
    assert [s["key"] for s in series] == ["s0", "s1"]
    assert len({s["color"] for s in series}) == 2
    assert all(s["fill"].startswith(s["color"]) and len(s["fill"]) == 9 for s in series)
    assert [r["t"] for r in rows] == ["2026-12-03T16:00:00Z", "2026-12-03T17:00:00Z"]
    assert [r["hour"] for r in rows] == ["16:00", "17:00"]


def test_chart_rates_and_bands_are_percent_and_missing_hours_are_absent():
    rows, _ = online.online_chart(ONLINE)
    first, second = rows
    assert "s0" not in first and "s0_ci" not in first  # version 0 served nothing at 16:00
    assert second["s0"] == pytest.approx(20.0)
    assert second["s0_ci"] == pytest.approx([3.62, 62.45], abs=0.006)  # 2 decimals from 1 %
    assert first["s1"] == pytest.approx(1.0)
    assert first["s1_ci"] == [0.271, 3.58]  # three decimals below 1 %, two above
    assert first["s1_ci"][0] < first["s1"] < first["s1_ci"][1]


def test_chart_labels_carry_the_date_over_several_days():
    data = {"versions": [{"model_version": "v", "hourly": [
        _point("2026-12-02T23:00:00Z", 10, 1, 0.01, 0.4),
        _point("2026-12-03T00:00:00Z", 10, 2, 0.05, 0.5)]}]}
    rows, _ = online.online_chart(data)
    assert [r["hour"] for r in rows] == ["12-02 23:00", "12-03 00:00"]


def test_chart_of_nothing_and_of_bad_points():
    assert online.online_chart(None) == ([], [])
    assert online.online_chart({"versions": []}) == ([], [])
    rows, series = online.online_chart({"versions": [{"model_version": "v", "hourly": [
        {"t": "2026-12-03T17:00:00Z", "rate": None}, {"t": "", "rate": 0.1},
        {"t": "2026-12-03T18:00:00Z", "rate": 0.1, "ci95": None}]}]})
    assert len(series) == 1
    assert rows == [{"t": "2026-12-03T18:00:00Z", "s0": 10.0, "hour": "18:00"}]


def test_colours_cycle_past_the_palette():
    many = {"versions": [{"model_version": f"v{i}", "hourly": []} for i in range(12)]}
    _, series = online.online_chart(many)
    assert series[0]["color"] == series[len(online.PALETTE)]["color"]
    assert len({s["color"] for s in series[:len(online.PALETTE)]}) == len(online.PALETTE)


def test_version_table_rows():
    colors = {"20261203T170845Z-9be56de3": "#123456"}
    rows = online.version_rows(ONLINE, colors)
    assert [r["version"] for r in rows] == [v["model_version"] for v in ONLINE["versions"]]
    second = rows[1]
    assert (second["impressions"], second["converted"], second["likes"]) == (409, 5, 13)
    assert second["rate"] == "1.22 %"
    assert second["interval"] == "0.52 – 2.83 %"
    assert second["color"] == "#123456"
    assert rows[0]["color"] == "#8b8d98"  # no colour given: neutral grey
    assert second["arms"] == "control 0.43 % of 235 · candidate 0.00 % of 7"
    assert rows[0]["arms"] == "no experiment 20.0 % of 5"


@pytest.mark.parametrize("rate, text", [(0.2, "20.0 %"), (0.012225, "1.22 %"), (0.0, "0.00 %"),
                                        (1.0, "100.0 %"), (None, "–"), ("x", "–"),
                                        (float("nan"), "–")])
def test_pct(rate, text):
    assert online.pct(rate) == text


@pytest.mark.parametrize("ci, text", [([0.005233, 0.028295], "0.52 – 2.83 %"),
                                      ([0.036, 0.62], "3.60 – 62.0 %"), (None, "–"),
                                      ([0.1], "–"), ([None, 0.2], "–")])
def test_interval_text(ci, text):
    assert online.interval_text(ci) == text


@pytest.mark.parametrize("diff, text", [(0.0125, "+1.25 pp"), (-0.003, "-0.30 pp"),
                                        (0.066667, "+6.67 pp"), (0.5, "+50.0 pp"),
                                        (-356.46761, "-35647 pp"), (None, "–")])
def test_pp(diff, text):
    assert online.pp(diff) == text


REPORT = {
    "experiment_id": "exp-5d54454bf34a", "control": "20261203T172644Z-1c462003",
    "candidate": "20261203T172654Z-ed41f31e", "share": 0.1, "min_impressions": 2000,
    "max_hours": 72.0, "alpha": 0.05, "status": "running", "decision": None, "reason": None,
    "created_at": "2026-12-03T17:28:24.235032Z", "ended_at": None,
    "arms": {
        "control": {"version": "20261203T172644Z-1c462003", "users": 24, "impressions": 72,
                    "converted": 49, "rate": 0.680556, "ci95": [0.566077, 0.776744],
                    "user_rate": 0.680556},
        "candidate": {"version": "20261203T172654Z-ed41f31e", "users": 36, "impressions": 108,
                      "converted": 55, "rate": 0.509259, "ci95": [0.416291, 0.601591],
                      "user_rate": 0.509259},
    },
    "difference": -0.171297, "interval": [-0.4, 0.05],
    "test": "asymptotic confidence sequence (always valid), users' like-rates, IPW",
    "rules": {"decision": None, "reason": "running: 180 of at least 2000 impressions"},
}


def test_experiment_view_of_a_running_experiment():
    v = online.experiment_view(REPORT)
    assert v["experiment_id"] == "exp-5d54454bf34a" and v["status"] == "running"
    assert v["control"] == {"version": "20261203T172644Z-1c462003", "users": 24,
                            "impressions": 72, "converted": 49, "rate": "68.1 %",
                            "interval": "56.6 – 77.7 %", "user_rate": "68.1 %"}
    assert v["candidate"]["users"] == 36 and v["candidate"]["rate"] == "50.9 %"
    assert v["share"] == "10 %" and v["level"] == "95 %"
    assert v["min_impressions"] == 2000 and v["max_hours"] == "72"
    assert v["difference"] == "-17.1 pp"
    assert v["interval"] == "-40.0 pp to +5.00 pp"
    assert v["rules_decision"] == "" and v["rules_text"] == "no decision yet"
    assert v["rules_reason"] == "running: 180 of at least 2000 impressions"
    assert v["created_at"] == "2026-12-03 17:28:24" and v["ended_at"] == ""


def test_experiment_view_without_an_interval_and_with_a_rules_decision():
    report = {**REPORT, "interval": None, "rules": {"decision": "promote", "reason": "x"},
              "arms": {}}
    v = online.experiment_view(report)
    assert v["interval"] == "not yet (too few users in an arm)"
    assert v["rules_text"] == "promote the candidate"
    # No arm counts yet: the versions still come from the experiment itself.
    assert v["control"]["version"] == REPORT["control"] and v["control"]["users"] == 0
    assert v["candidate"]["rate"] == "–"


def test_split_experiments_finds_the_running_one():
    ended = {**REPORT, "experiment_id": "exp-000000000001", "status": "stopped",
             "decision": "keep"}
    running, past = online.split_experiments([REPORT, ended])
    assert running is REPORT and past == [ended]
    assert online.split_experiments([ended]) == (None, [ended])
    assert online.split_experiments(None) == (None, [])


def test_start_body_sends_numbers_and_leaves_ranges_to_the_api():
    body, problem = online.start_body("a", "a", " 0.1 ", "2000", "72")
    assert problem == ""
    assert body == {"control": "a", "candidate": "a", "share": 0.1, "min_impressions": 2000,
                    "max_hours": 72.0}
    # Share 0 is the API's to refuse (its 400 is shown): it is sent as it is.
    body, problem = online.start_body("a", "b", "0", "2000", "72")
    assert body is not None and body["share"] == 0.0 and problem == ""


@pytest.mark.parametrize("args, words", [
    (("", "b", "0.1", "10", "1"), "Pick a control and a candidate"),
    (("a", "b", "ten", "10", "1"), "Share must be a number (got 'ten')"),
    (("a", "b", "0.1", "1.5", "1"), "Min impressions must be a whole number"),
    (("a", "b", "0.1", "10", ""), "Max hours must be a number (got 'nothing')"),
    (("a", "b", "nan", "10", "1"), "Share must be a finite number"),
])
def test_start_body_refuses_what_cannot_be_sent(args, words):
    body, problem = online.start_body(*args)
    assert body is None and words in problem


def test_stop_texts_name_the_version_that_will_be_served():
    assert "every user is served c" in online.stop_confirm_text("keep", "c", "d")
    assert "every user is served d" in online.stop_confirm_text("promote", "c", "d")
    done = {"experiment_id": "exp-1", "control": "c", "candidate": "d", "decision": "keep"}
    assert online.stop_result_text(done) == (
        "Experiment exp-1 ended: keep the control; now serving c to everyone.")
    assert "now serving d" in online.stop_result_text({**done, "decision": "promote"})
