"""MovieRecs serving: load a model artifact and answer recommendations with numpy alone.

Why numpy only: rectools rebuilds the whole user-item matrix on every call (~31 ms for one
user) and its stack (335 MB) does not fit a Lambda zip; a dot product and a partial sort give
the same top-k in ~0.02 ms. Nothing here imports pandas, scipy, implicit or rectools, and
boto3 is never imported: `ModelStore` receives a ready S3 client.
"""
from movierecs_serving.artifact import (
    ArtifactError,
    ModelArtifact,
    new_version,
    is_valid_version,
    write_artifact,
)
from movierecs_serving.holder import ModelHolder, ModelUnavailable
from movierecs_serving.manifest import Manifest, TrainingData
from movierecs_serving.recommender import Basis, Explanation, Recommendation, Recommender, Strategy, UnknownItemError
from movierecs_serving.store import ModelNotFoundError, ModelStore

__all__ = [
    "ArtifactError",
    "Basis",
    "Explanation",
    "Manifest",
    "ModelArtifact",
    "ModelHolder",
    "ModelUnavailable",
    "ModelNotFoundError",
    "ModelStore",
    "Recommendation",
    "Recommender",
    "Strategy",
    "TrainingData",
    "UnknownItemError",
    "is_valid_version",
    "new_version",
    "write_artifact",
]
