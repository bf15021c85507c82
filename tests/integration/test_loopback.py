"""Every server the stack started listens on loopback only (the network rule of this project).

Reads the kernel's socket table (``ss -ltnpH``) and keeps the sockets owned by the pids in
``.movierecs/pids`` and their descendants (Lambda workers, Reflex's worker, PostgreSQL's children).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PIDS = ROOT / ".movierecs" / "pids"


def _descendants(pid: int) -> set[int]:
    out = {pid}
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        for child in children.read_text().split():
            out |= _descendants(int(child))
    return out


def _stack_pids() -> set[int]:
    pids: set[int] = set()
    for f in PIDS.glob("*.pid"):
        first = f.read_text().split()
        if first and first[0].isdigit() and Path(f"/proc/{first[0]}").exists():
            pids |= _descendants(int(first[0]))
    return pids


def test_every_stack_listener_is_on_loopback(endpoints) -> None:
    pids = _stack_pids()
    assert pids, "no running stack process found in .movierecs/pids: run `make up` first"
    table = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    ours, offending = [], []
    for line in table.splitlines():
        cols = line.split()
        local, users = cols[3], " ".join(cols[5:])
        if not any(f"pid={p}," in users for p in pids):
            continue
        ours.append(local)
        host = local.rsplit(":", 1)[0].strip("[]")
        if not (host.startswith("127.") or host == "::1"):
            offending.append(line)
    assert ours, "the stack's processes listen on no TCP port at all"
    assert not offending, "servers listening beyond loopback:\n" + "\n".join(offending)
