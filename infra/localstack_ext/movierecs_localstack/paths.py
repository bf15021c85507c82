"""Where the repository and the functions' interpreter are (no LocalStack imports: unit-testable)."""

from __future__ import annotations

import os
from pathlib import Path

#: The package's own folder; ``worker.py`` is started from here by path.
PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path:
    """``MOVIERECS_ROOT`` if set, else the checkout this (editable-installed) package lives in.

    ``infra/localstack_ext/movierecs_localstack/paths.py`` -> three folders up is the repo.
    """
    env = os.environ.get("MOVIERECS_ROOT")
    if env:
        return Path(env).resolve()
    return PACKAGE_DIR.parents[2]


def lambda_python() -> Path:
    """The interpreter every function process runs on: ``MOVIERECS_LAMBDA_PYTHON`` or the repo's
    ``.venv/bin/python`` (the project's Python 3.11 with all function dependencies)."""
    env = os.environ.get("MOVIERECS_LAMBDA_PYTHON")
    if env:
        return Path(env)
    return repo_root() / ".venv" / "bin" / "python"


WORKER_SCRIPT = PACKAGE_DIR / "worker.py"
