"""The CLI: --help everywhere, train + recommend on ML-100K, clear errors for bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest


def cli(*args, check=True):
    return subprocess.run([sys.executable, "-m", "movierecs_training", *args], capture_output=True, text=True, check=check, timeout=300)


@pytest.mark.parametrize("cmd", ["fetch", "load", "train", "evaluate", "search", "recommend", "bootstrap"])
def test_help(cmd):
    assert "usage" in cli(cmd, "--help").stdout


def test_train_then_recommend(tmp_path):
    out = cli("train", "--data", "ml-100k", "--out", str(tmp_path), "--factors", "16", "--iterations", "5", "--no-eval")
    assert "trained" in out.stdout
    r = json.loads(cli("recommend", "--model", str(tmp_path), "--user", "1", "-k", "5").stdout)
    assert r["strategy"] == "personal" and len(r["items"]) == 5
    r = json.loads(cli("recommend", "--model", str(tmp_path), "--user", "999999", "--liked", "1,2").stdout)
    assert r["strategy"] == "fold_in"


def test_bad_input_is_a_message_not_a_traceback(tmp_path):
    p = cli("train", "--data", str(tmp_path), "--out", str(tmp_path), check=False)
    assert p.returncode == 2 and "missing" in p.stderr and "Traceback" not in p.stderr
    p = cli("bootstrap", "--endpoints", str(tmp_path / "none.json"), check=False)
    assert p.returncode != 0 and "make up" in p.stderr
