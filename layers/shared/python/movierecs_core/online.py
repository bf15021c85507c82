"""The online metric (issue 13): like-rate per impression, per model version, arm, strategy, hour.

An impression is one list served to a user. A like credits the newest impression of that user
that showed the liked movie at most ``window`` seconds before it (default 30 min), so each like
counts once; an impression *converts* when at least one like credits it. The like-rate is
converted / impressions, given with a 95 % Wilson interval (sound for small counts and rates
near 0, where the normal interval is not). Lists without a user (similar movies) are not
counted: nobody can be credited.
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Z95 = 1.959963984540054


def wilson(converted: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion; (0, 1) when nothing was observed."""
    if n <= 0:
        return 0.0, 1.0
    p = converted / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass
class Rate:
    """Counts of one slice of impressions."""

    impressions: int = 0
    converted: int = 0
    likes: int = 0

    def add(self, impressions: int, converted: int, likes: int) -> None:
        self.impressions += impressions
        self.converted += converted
        self.likes += likes

    def to_json(self) -> dict[str, Any]:
        lo, hi = wilson(self.converted, self.impressions)
        rate = self.converted / self.impressions if self.impressions else None
        return {"impressions": self.impressions, "converted": self.converted, "likes": self.likes,
                "rate": None if rate is None else round(rate, 6), "ci95": [round(lo, 6), round(hi, 6)]}


def _hour(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:00:00Z")


def by_version(rows: Iterable[Sequence[Any]], window_seconds: int) -> dict[str, Any]:
    """GET /admin/stats' ``online``: per version its total, per arm, per strategy and per hour,
    from ``clickhouse.like_rates`` rows (version, arm, strategy, hour, impressions, converted, likes)."""
    total: dict[str, Rate] = defaultdict(Rate)
    arms: dict[str, dict[str, Rate]] = defaultdict(lambda: defaultdict(Rate))
    strategies: dict[str, dict[str, Rate]] = defaultdict(lambda: defaultdict(Rate))
    hours: dict[str, dict[str, Rate]] = defaultdict(lambda: defaultdict(Rate))
    for version, arm, strategy, hour, n, k, likes in rows:
        counts = (int(n), int(k), int(likes or 0))
        total[version].add(*counts)
        arms[version][arm or "none"].add(*counts)
        strategies[version][strategy].add(*counts)
        hours[version][_hour(hour)].add(*counts)
    versions = [
        {"model_version": v, **total[v].to_json(),
         "by_arm": {a: r.to_json() for a, r in sorted(arms[v].items())},
         "by_strategy": {s: r.to_json() for s, r in sorted(strategies[v].items())},
         "hourly": [{"t": h, **r.to_json()} for h, r in sorted(hours[v].items())]}
        for v in sorted(total)
    ]
    return {"window_seconds": window_seconds, "versions": versions}
