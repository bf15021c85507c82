"""The whole recipe from interactions to an artifact folder: evaluate, fit, write.

Why its own module: it needs both ``train`` (fit, write) and ``evaluate`` (the time-split
report), and ``evaluate`` itself needs ``train``; keeping the composition above both keeps the
import graph a tree (train <- evaluate <- recipe).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from movierecs_training.evaluate import time_split_report
from movierecs_training.train import Params, fit, read_interactions, write_model


def train_artifact(interactions: pd.DataFrame | str | os.PathLike[str], out_dir: str | os.PathLike[str],
                   params: Params | dict | None = None, *, evaluate: bool = True, truth: pd.DataFrame | None = None) -> Path:
    """Interactions (frame or Parquet path) -> artifact folder; with ``evaluate`` its report.json
    holds the time-split evaluation of the same recipe (fit on the earlier 90 %, scored on the
    later 10 % of ``truth``: all interactions, unweighted; default ``interactions``)."""
    df = interactions if isinstance(interactions, pd.DataFrame) else read_interactions(interactions)
    p = params if isinstance(params, Params) else Params.from_dict(params)
    report: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    if evaluate:
        report = time_split_report(df, p, truth=truth)
        metrics = report.get("summary", {})
    fitted = fit(df, p)
    return write_model(fitted, df, out_dir, metrics=metrics, report=report)
