"""``models/<version>/manifest.json``: one class that names every field once.

Why a class: the manifest is written by training (``write_artifact``) and read by serving
(``ModelArtifact``, ``Recommender``); a key spelled in both places, such as
``seen_has_all_ratings``, could drift without any test noticing. ``Manifest`` is a frozen
dataclass that is also a read-only mapping of its JSON form, so ``m.version`` and
``m["version"]`` agree and the JSON on disk is unchanged.
"""
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FORMAT_VERSION = 1
MODEL_FILE = "model.npz"
SEEN_FILE = "seen.npz"
_VERSION_RE = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{8}$")

ID_MAPS = {
    "user_ids": "model.npz user_ids[i] is the external user id of user_factors row i and seen.npz row i",
    "item_ids": "model.npz item_ids[j] is the movie id of item_factors row j; seen.npz indices and popular are item rows j",
}


class ManifestError(ValueError):
    """The manifest document is not one this library reads (the message says why)."""


def is_valid_version(version: object) -> bool:
    """True when ``version`` has the artifact version format (guards S3 keys and paths)."""
    return isinstance(version, str) and bool(_VERSION_RE.match(version))


@dataclass(frozen=True)
class TrainingData:
    """The manifest's ``data``: what the model was trained on, beside the data summary."""

    #: Every rating of the training data is among its users' training items, so serving
    #: need not read a known user's ratings again ("positive" weighting drops ratings < 4).
    seen_has_all_ratings: bool = False

    @classmethod
    def of(cls, data: Mapping[str, Any]) -> "TrainingData":
        return cls(**{f.name: bool(data[f.name]) for f in fields(cls) if f.name in data})

    def merged_into(self, summary: Mapping[str, Any]) -> dict[str, Any]:
        """``summary`` (rows, users, min_ts, ...) with these fields added: the ``data`` to write."""
        return {**summary, **asdict(self)}


@dataclass(frozen=True)
class Manifest(Mapping[str, Any]):
    """The manifest of one model version (see docs/DESIGN.md, "Model artifacts")."""

    version: str
    format: int = FORMAT_VERSION
    created_at: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    n_users: int | None = None
    n_items: int | None = None
    factors: int | None = None
    id_maps: dict[str, str] = field(default_factory=lambda: dict(ID_MAPS))
    files: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Any) -> "Manifest":
        """Check and wrap a parsed manifest.json; ``ManifestError`` says what is wrong."""
        if not isinstance(doc, dict) or not isinstance(doc.get("files"), dict):
            raise ManifestError("manifest has no 'files' table")
        if doc.get("format") != FORMAT_VERSION:
            raise ManifestError(f"artifact format {doc.get('format')!r}, expected {FORMAT_VERSION}")
        if not is_valid_version(doc.get("version")):
            raise ManifestError(f"bad version {doc.get('version')!r}")
        for required in (MODEL_FILE, SEEN_FILE):
            if required not in doc["files"]:
                raise ManifestError(f"manifest does not list {required}")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    def to_json(self) -> dict[str, Any]:
        """The document as written to manifest.json (key order as before)."""
        order = ("format", "version", "created_at", "data", "hyperparameters", "metrics",
                 "n_users", "n_items", "factors", "id_maps", "files")
        return {k: getattr(self, k) for k in order}

    @property
    def training(self) -> TrainingData:
        return TrainingData.of(self.data)

    # -- read-only mapping of the JSON form ----------------------------------------------
    def __getitem__(self, key: str) -> Any:
        if key not in self._keys():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def _keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in fields(self))
