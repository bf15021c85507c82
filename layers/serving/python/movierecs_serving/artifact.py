"""The model artifact: a versioned folder of .npz arrays plus manifest.json.

Layout (docs/DESIGN.md, "Model artifacts"):
  manifest.json  version, created_at, data range, hyperparameters, metrics, id maps, sha256 of every file
  model.npz      user_factors, item_factors, user_ids, item_ids, popular, popular_scores
  seen.npz       CSR of each model user's training items: indptr, indices (item rows), data (weights)
  report.json    the evaluation report

Loading never unpickles (``allow_pickle=False``) and verifies every file's sha256 and every
array's shape before anything is served: a corrupt or mismatched artifact raises
``ArtifactError`` with a message saying what is wrong.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from movierecs_serving.manifest import (
    FORMAT_VERSION,
    MODEL_FILE,
    SEEN_FILE,
    Manifest,
    ManifestError,
    TrainingData,
    is_valid_version,
)

MANIFEST = "manifest.json"
REPORT_FILE = "report.json"

MODEL_ARRAYS = ("user_factors", "item_factors", "user_ids", "item_ids", "popular", "popular_scores")
SEEN_ARRAYS = ("indptr", "indices", "data")


class ArtifactError(Exception):
    """The artifact is missing, corrupt, or inconsistent; the message says which file and why."""


def new_version(now: datetime | None = None) -> str:
    """A sortable, unique version id: ``YYYYMMDDTHHMMSSZ-<8 hex>``."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + os.urandom(4).hex()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelArtifact:
    """Arrays of one model version, verified. Row ``i`` of ``user_factors`` is user ``user_ids[i]``."""

    path: Path
    manifest: Manifest
    user_factors: np.ndarray  # (n_users, f) float32
    item_factors: np.ndarray  # (n_items, f) float32
    user_ids: np.ndarray  # (n_users,) int64, external user ids
    item_ids: np.ndarray  # (n_items,) int64, external movie ids
    popular: np.ndarray  # item ROW indices, most popular first
    popular_scores: np.ndarray  # float64, aligned with popular
    seen_indptr: np.ndarray  # (n_users + 1,) int64
    seen_indices: np.ndarray  # item rows, int32
    seen_data: np.ndarray  # training weights, float32
    report: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self.manifest.hyperparameters)

    @classmethod
    def load(cls, path: str | os.PathLike[str], verify: bool = True) -> "ModelArtifact":
        """Load a local artifact folder; raises ArtifactError if anything does not match the manifest."""
        root = Path(path)
        manifest_path = root / MANIFEST
        if not manifest_path.is_file():
            raise ArtifactError(f"{root}: no {MANIFEST}; not a model artifact folder (or an unfinished download)")
        try:
            doc = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ArtifactError(f"{manifest_path}: unreadable manifest: {e}") from e
        try:
            manifest = Manifest.from_json(doc)
        except ManifestError as e:
            raise ArtifactError(f"{manifest_path}: {e}") from None
        files = manifest.files
        if verify:
            for name, expected in files.items():
                if "/" in name or name.startswith("."):
                    raise ArtifactError(f"{manifest_path}: bad file name {name!r}")
                p = root / name
                if not p.is_file():
                    raise ArtifactError(f"{root}: {name} is listed in the manifest but missing")
                actual = sha256_file(p)
                if actual != expected:
                    raise ArtifactError(
                        f"{p}: sha256 {actual[:12]}... does not match the manifest ({str(expected)[:12]}...): "
                        "the file is corrupt or from another version; re-download it"
                    )
        model = _load_npz(root / MODEL_FILE, MODEL_ARRAYS)
        seen = _load_npz(root / SEEN_FILE, SEEN_ARRAYS)
        for name, arr, kind in (("seen indices", seen["indices"], "iu"), ("seen indptr", seen["indptr"], "iu"),
                                ("user ids", model["user_ids"], "iu"), ("item ids", model["item_ids"], "iu"),
                                ("popular", model["popular"], "iu"), ("user factors", model["user_factors"], "f"),
                                ("item factors", model["item_factors"], "f"), ("seen data", seen["data"], "f")):
            if arr.dtype.kind not in kind:
                raise ArtifactError(f"{root}: {name} have dtype {arr.dtype}, expected {'integers' if kind == 'iu' else 'floats'}")
        report: dict[str, Any] = {}
        if REPORT_FILE in files:
            try:
                report = json.loads((root / REPORT_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ArtifactError(f"{root / REPORT_FILE}: unreadable report: {e}") from e
        art = cls(
            path=root,
            manifest=manifest,
            user_factors=np.ascontiguousarray(model["user_factors"], dtype=np.float32),
            item_factors=np.ascontiguousarray(model["item_factors"], dtype=np.float32),
            user_ids=model["user_ids"].astype(np.int64, copy=False),
            item_ids=model["item_ids"].astype(np.int64, copy=False),
            popular=model["popular"].astype(np.int64, copy=False),
            popular_scores=model["popular_scores"].astype(np.float64, copy=False),
            seen_indptr=seen["indptr"].astype(np.int64, copy=False),
            seen_indices=seen["indices"].astype(np.int32, copy=False),
            seen_data=seen["data"].astype(np.float32, copy=False),
            report=report,
        )
        art._check_shapes()
        return art

    def _check_shapes(self) -> None:
        where = str(self.path)
        nu, f = self.user_factors.shape if self.user_factors.ndim == 2 else (-1, -1)
        ni, f2 = self.item_factors.shape if self.item_factors.ndim == 2 else (-1, -1)
        problems = []
        if nu < 0 or ni < 0:
            problems.append("factors must be 2-d")
        if f != f2:
            problems.append(f"user factors have {f} columns, item factors {f2}")
        if self.user_ids.shape != (nu,):
            problems.append(f"{len(self.user_ids)} user ids for {nu} user factor rows")
        if self.item_ids.shape != (ni,):
            problems.append(f"{len(self.item_ids)} item ids for {ni} item factor rows")
        if len(np.unique(self.user_ids)) != len(self.user_ids) or len(np.unique(self.item_ids)) != len(self.item_ids):
            problems.append("duplicate ids")
        if self.popular.shape != self.popular_scores.shape:
            problems.append("popular and popular_scores differ in length")
        if len(self.popular) and (self.popular.min() < 0 or self.popular.max() >= ni):
            problems.append("popular refers to item rows out of range")
        if self.seen_indptr.shape != (nu + 1,) or (nu >= 0 and self.seen_indptr[-1] != len(self.seen_indices)):
            problems.append("seen.npz indptr does not match the users")
        if self.seen_indices.shape != self.seen_data.shape:
            problems.append("seen.npz indices and data differ in length")
        if len(self.seen_indices) and (self.seen_indices.min() < 0 or self.seen_indices.max() >= ni):
            problems.append("seen.npz refers to item rows out of range")
        m = self.manifest
        if m.n_users not in (None, nu) or m.n_items not in (None, ni):
            problems.append(f"manifest says {m.n_users} users / {m.n_items} items, arrays have {nu} / {ni}")
        if problems:
            raise ArtifactError(f"{where}: inconsistent artifact: " + "; ".join(problems))


def _load_npz(path: Path, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [n for n in names if n not in z.files]
            if missing:
                raise ArtifactError(f"{path}: missing arrays {missing}")
            return {n: z[n] for n in names}
    except ArtifactError:
        raise
    except Exception as e:  # zipfile.BadZipFile, ValueError (object arrays need pickle), OSError
        raise ArtifactError(f"{path}: not a readable numpy archive without pickle: {e}") from e


def write_artifact(
    out_dir: str | os.PathLike[str],
    *,
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    user_ids: np.ndarray,
    item_ids: np.ndarray,
    popular: np.ndarray,
    popular_scores: np.ndarray,
    seen_indptr: np.ndarray,
    seen_indices: np.ndarray,
    seen_data: np.ndarray,
    hyperparameters: Mapping[str, Any],
    data: Mapping[str, Any],
    training: TrainingData | None = None,
    metrics: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | None = None,
    version: str | None = None,
) -> Path:
    """Write a complete artifact folder ``out_dir/<version>`` and return its path.

    The manifest is written last, through a temporary file and a rename, so a folder with a
    manifest is always complete. ``popular`` holds item ROW indices (not movie ids).
    ``data`` summarises the training data; ``training`` adds what serving relies on.
    """
    version = version or new_version()
    if not is_valid_version(version):
        raise ValueError(f"bad version {version!r}")
    root = Path(out_dir) / version
    root.mkdir(parents=True, exist_ok=False)
    np.savez(
        root / MODEL_FILE,
        user_factors=np.ascontiguousarray(user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(item_factors, dtype=np.float32),
        user_ids=np.asarray(user_ids, dtype=np.int64),
        item_ids=np.asarray(item_ids, dtype=np.int64),
        popular=np.asarray(popular, dtype=np.int64),
        popular_scores=np.asarray(popular_scores, dtype=np.float64),
    )
    # seen.npz dominates the artifact's size (one entry per training interaction) and so the
    # cold start (read + sha256): store item rows as uint16 and weights as float16 when exact.
    n_items = int(np.shape(item_factors)[0])
    data32 = np.asarray(seen_data, dtype=np.float32)
    data16 = data32.astype(np.float16)
    np.savez(
        root / SEEN_FILE,
        indptr=np.asarray(seen_indptr, dtype=np.int64),
        indices=np.asarray(seen_indices, dtype=np.uint16 if n_items <= 65536 else np.int32),
        data=data16 if np.array_equal(data16.astype(np.float32), data32) else data32,
    )
    (root / REPORT_FILE).write_text(json.dumps(report or {}, indent=2, default=_json_default), encoding="utf-8")
    manifest = Manifest(
        format=FORMAT_VERSION,
        version=version,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        data=training.merged_into(data) if training else dict(data),
        hyperparameters=dict(hyperparameters),
        metrics=dict(metrics or {}),
        n_users=int(len(user_ids)),
        n_items=int(len(item_ids)),
        factors=int(np.shape(item_factors)[1]),
        files={n: sha256_file(root / n) for n in (MODEL_FILE, SEEN_FILE, REPORT_FILE)},
    )
    tmp = root / f".manifest-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest.to_json(), f, indent=2, default=_json_default)
    os.replace(tmp, root / MANIFEST)
    return root


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, datetime):
        return o.isoformat()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
