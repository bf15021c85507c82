"""Artifact folders: written, verified on load, refused when corrupt or inconsistent; never unpickled."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from movierecs_serving import ArtifactError, ModelArtifact, is_valid_version, new_version, write_artifact


def tiny(tmp_path: Path, **overrides) -> Path:
    rng = np.random.default_rng(1)
    n_users, n_items, f = 4, 6, 3
    arrays = dict(
        user_factors=rng.normal(size=(n_users, f)), item_factors=rng.normal(size=(n_items, f)),
        user_ids=np.array([10, 20, 30, 40]), item_ids=np.array([101, 102, 103, 104, 105, 106]),
        popular=np.array([2, 0, 1, 3, 4, 5]), popular_scores=np.array([6.0, 5, 4, 3, 2, 1]),
        seen_indptr=np.array([0, 2, 3, 3, 4]), seen_indices=np.array([0, 2, 1, 5]), seen_data=np.ones(4),
    )
    arrays.update(overrides)
    return write_artifact(tmp_path, **arrays, hyperparameters={"alpha": 4.0, "regularization": 1.0},
                          data={"rows": 4}, metrics={"map@10": 0.1}, report={"ok": True})


def test_round_trip_and_manifest(tmp_path):
    folder = tiny(tmp_path)
    art = ModelArtifact.load(folder)
    m = json.loads((folder / "manifest.json").read_text())
    assert art.version == folder.name and is_valid_version(art.version)
    assert set(m["files"]) == {"model.npz", "seen.npz", "report.json"}
    assert m["n_users"] == 4 and m["n_items"] == 6 and m["factors"] == 3
    assert m["hyperparameters"]["alpha"] == 4.0 and m["metrics"] == {"map@10": 0.1}
    assert art.report == {"ok": True}
    assert art.user_factors.dtype == np.float32 and art.item_ids.tolist() == [101, 102, 103, 104, 105, 106]


def test_a_flipped_byte_is_refused(tmp_path):
    folder = tiny(tmp_path)
    p = folder / "model.npz"
    raw = bytearray(p.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="sha256"):
        ModelArtifact.load(folder)


def test_missing_file_and_missing_manifest_are_refused(tmp_path):
    folder = tiny(tmp_path)
    (folder / "seen.npz").unlink()
    with pytest.raises(ArtifactError, match="missing"):
        ModelArtifact.load(folder)
    with pytest.raises(ArtifactError, match="manifest"):
        ModelArtifact.load(tmp_path / "nothing-here")


def test_inconsistent_shapes_are_refused(tmp_path):
    folder = tiny(tmp_path, user_ids=np.array([10, 20, 30]))  # 3 ids for 4 rows
    with pytest.raises(ArtifactError, match="user ids"):
        ModelArtifact.load(folder)


def test_out_of_range_seen_items_are_refused(tmp_path):
    folder = tiny(tmp_path, seen_indices=np.array([0, 2, 1, 9]))
    with pytest.raises(ArtifactError, match="out of range"):
        ModelArtifact.load(folder)


def test_an_object_array_needing_pickle_is_refused(tmp_path):
    folder = tiny(tmp_path)
    p = folder / "model.npz"
    with np.load(p) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["user_ids"] = np.array([{"evil": 1}] * 4, dtype=object)
    np.savez(p, **arrays)
    m = json.loads((folder / "manifest.json").read_text())
    from movierecs_serving.artifact import sha256_file

    m["files"]["model.npz"] = sha256_file(p)  # even with a matching checksum
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="pickle"):
        ModelArtifact.load(folder)


def test_a_manifest_pointing_outside_the_folder_is_refused(tmp_path):
    folder = tiny(tmp_path)
    m = json.loads((folder / "manifest.json").read_text())
    m["files"]["../x"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="bad file name"):
        ModelArtifact.load(folder)


def test_versions_sort_by_time_and_are_validated():
    a, b = new_version(), new_version()
    assert is_valid_version(a) and is_valid_version(b)
    for bad in ("", "../CURRENT", "20261127T000000Z-XYZ", None, 5):
        assert not is_valid_version(bad)


def test_importing_the_serving_library_loads_numpy_only():
    code = textwrap.dedent("""
        import sys, movierecs_serving
        from movierecs_serving import ModelArtifact, Recommender, ModelStore
        heavy = {"pandas", "scipy", "rectools", "implicit", "sklearn", "boto3", "botocore", "pyarrow"}
        print(sorted({m.split(".")[0] for m in sys.modules} & heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
