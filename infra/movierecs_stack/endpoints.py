"""The contract's endpoints file and the installation's admin API key (both mode 0600).

Files are written to a temporary name created with mode 0600 and renamed into place, so a
reader never sees a partial file and the secret is never world-readable, even briefly.
"""
from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from .config import HOST, Layout, port_for

KEYS = ("api", "frontend", "admin_api_key", "kafka", "clickhouse", "postgres")


def write_private(path: Path, text: str) -> None:
    """Atomically write ``text`` to ``path`` with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        raise


def admin_api_key(layout: Layout) -> str:
    """The admin key: generated once per installation (secrets.token_urlsafe), then reused."""
    path = layout.admin_key_file
    try:
        key = path.read_text().strip()
        if len(key) >= 16:
            if path.stat().st_mode & 0o077:
                os.chmod(path, 0o600)
            return key
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(32)
    write_private(path, key + "\n")
    return key


def build_endpoints(layout: Layout, api_url: str | None, env: dict[str, str] | None = None) -> dict[str, Any]:
    """The endpoints document exactly as the public contract (docs/API.md) specifies it."""
    env = env if env is not None else dict(os.environ)
    return {
        "api": api_url,
        "frontend": f"http://{HOST}:{port_for('frontend', env)}",
        "admin_api_key": admin_api_key(layout),
        "kafka": f"{HOST}:{port_for('kafka', env)}",
        "clickhouse": f"http://{HOST}:{port_for('clickhouse', env)}",
        "postgres": f"postgresql://movierecs@{HOST}:{port_for('postgres', env)}/movierecs",
    }


def write_endpoints(layout: Layout, data: dict[str, Any]) -> Path:
    write_private(layout.endpoints_file, json.dumps(data, indent=2) + "\n")
    return layout.endpoints_file


def read_endpoints(layout: Layout) -> dict[str, Any] | None:
    try:
        return json.loads(layout.endpoints_file.read_text())
    except (FileNotFoundError, ValueError):
        return None
