"""The recipe's hyperparameters and the weighting of ratings, without numpy or pandas.

Why apart from train.py: the CLI builds its options from them and the retraining handler
checks requests against them, and neither should pay for importing the training stack.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class Weighting(StrEnum):
    """How ratings become interaction weights (a str, so manifests and JSON show the value)."""

    BINARY = "binary"  # every rating weighs 1
    POSITIVE = "positive"  # only ratings >= 4, weight 1
    RATING = "rating"  # every rating, weight r/4


WEIGHTINGS = tuple(w.value for w in Weighting)


@dataclass
class Params:
    """Hyperparameters; the defaults are the tuned setting (docs/MODEL.md)."""

    factors: int = 64
    regularization: float = 50.0
    alpha: float = 4.0
    iterations: int = 15
    weighting: Weighting = Weighting.RATING
    like_weight: float = 1.0
    random_state: int = 42
    num_threads: int = 2

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Params":
        d = dict(d or {})
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {self.weighting!r}")
        self.weighting = Weighting(self.weighting)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SEED_PARAMS = {"factors": 200, "alpha": 40.0, "regularization": 0.01, "iterations": 15}
