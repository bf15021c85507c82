"""The endpoints file and the admin key: contract keys, loopback URLs, mode 0600, atomic writes."""
from __future__ import annotations

import json
import stat

from movierecs_stack.config import Layout
from movierecs_stack.endpoints import KEYS, admin_api_key, build_endpoints, read_endpoints, write_endpoints


def mode(p) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_admin_key_is_random_private_and_stable(tmp_path):
    a, b = Layout(root=tmp_path / "a"), Layout(root=tmp_path / "b")
    k1 = admin_api_key(a)
    assert len(k1) >= 32 and mode(a.admin_key_file) == 0o600
    assert admin_api_key(a) == k1  # generated once per installation
    assert admin_api_key(b) != k1
    a.admin_key_file.chmod(0o644)
    assert admin_api_key(a) == k1 and mode(a.admin_key_file) == 0o600


def test_endpoints_file_matches_contract(tmp_path):
    lay = Layout(root=tmp_path)
    env = {"MOVIERECS_KAFKA_PORT": "29093", "MOVIERECS_FRONTEND_PORT": "13999"}
    ep = build_endpoints(lay, "http://127.0.0.1:4566/_aws/execute-api/abc/v1", env)
    assert tuple(ep) == KEYS
    assert ep["kafka"] == "127.0.0.1:29093"
    assert ep["frontend"] == "http://127.0.0.1:13999"
    assert ep["clickhouse"] == "http://127.0.0.1:18123"
    assert ep["postgres"] == "postgresql://movierecs@127.0.0.1:15432/movierecs"
    assert ep["admin_api_key"] == admin_api_key(lay)
    path = write_endpoints(lay, ep)
    assert mode(path) == 0o600
    assert json.loads(path.read_text()) == ep == read_endpoints(lay)
    assert not list(path.parent.glob(".*.tmp"))


def test_rewrite_keeps_0600_even_if_loosened(tmp_path):
    lay = Layout(root=tmp_path)
    write_endpoints(lay, {"api": None})
    lay.endpoints_file.chmod(0o666)
    write_endpoints(lay, {"api": "x"})
    assert mode(lay.endpoints_file) == 0o600
    assert read_endpoints(lay) == {"api": "x"}


def test_read_missing_or_broken(tmp_path):
    lay = Layout(root=tmp_path)
    assert read_endpoints(lay) is None
    lay.state.mkdir(parents=True)
    lay.endpoints_file.write_text("{not json")
    assert read_endpoints(lay) is None
