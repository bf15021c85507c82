"""The search: validation folds inside the training period only, the choice recorded with its grid."""
from __future__ import annotations

import json

import pandas as pd

from movierecs_training import search


def test_search_records_grid_results_and_choice(tmp_path, monkeypatch):
    grid = {"factors": [8], "regularization": [10.0], "alpha": [2.0, 4.0], "weighting": ["binary", "positive"]}
    monkeypatch.setattr(search, "GRID", grid)
    out = tmp_path / "s.json"
    res = search.run("ml-100k", out=out)
    assert json.loads(out.read_text())["chosen"] == res["chosen"]
    assert len(res["results"]) == 3  # 1 pair, +1 alpha, +1 weighting
    best = max(res["results"], key=lambda r: r["map@10"])["params"]
    assert {k: res["chosen"][k] for k in best} == best
    outer = pd.Timestamp(search.OUTER_CUTOFF["ml-100k"], tz="UTC")
    for r in res["results"]:  # validation never reaches into the outer test period
        assert all(pd.Timestamp(c) < outer for c in r["cutoffs"]) and len(r["cutoffs"]) == 2
    assert set(res["test"]) == {"chosen", "prior", "seed"}
    # every recipe is scored on the same users (the unweighted later ratings)
    assert len({tuple(r["warm_users"]) for r in res["results"]}) == 1
