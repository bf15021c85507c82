"""Pid files and process-group handling: stale pids are never acted on; stop() ends a whole tree."""
from __future__ import annotations

import os
import subprocess
import sys
import time

from movierecs_stack import procs


def test_pid_file_roundtrip(tmp_path):
    store = procs.PidStore(tmp_path / "pids")
    t = store.write("me", os.getpid())
    assert store.read("me") == t
    assert store.running("me") == t
    assert store.names() == ["me"]
    assert (tmp_path / "pids" / "me.pid").read_text().split()[0] == str(os.getpid())
    store.remove("me")
    assert store.read("me") is None and store.names() == []


def test_stale_pid_with_other_start_time_is_not_running(tmp_path):
    store = procs.PidStore(tmp_path)
    (tmp_path / "x.pid").write_text(f"{os.getpid()} 1\n")  # same pid, different start time: a reused pid
    assert store.read("x") is not None
    assert store.running("x") is None


def test_malformed_or_dead_pid_file(tmp_path):
    store = procs.PidStore(tmp_path)
    (tmp_path / "bad.pid").write_text("garbage")
    assert store.read("bad") is None
    p = subprocess.Popen(["true"])
    p.wait()
    (tmp_path / "dead.pid").write_text(f"{p.pid} 12345\n")
    assert store.running("dead") is None


def test_stop_never_signals_a_process_that_is_not_ours():
    me = procs.Tracked("me", os.getpid(), 1)  # wrong start time: must not be killed
    assert procs.stop(me, timeout=0.5) is True
    assert procs.alive(os.getpid())


def test_spawn_and_stop_kill_the_whole_group_and_escaped_children(tmp_path):
    # a leader with a child in its group and a grandchild that escaped into a new session
    script = ("import subprocess, time, sys\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
              "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'], start_new_session=True)\n"
              "time.sleep(300)\n")
    proc = procs.spawn([sys.executable, "-c", script], log=tmp_path / "x.log")
    store = procs.PidStore(tmp_path / "pids")
    t = store.write("x", proc.pid)
    deadline = time.monotonic() + 10
    while len(procs.descendants(proc.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    kids = procs.descendants(proc.pid)
    assert len(kids) == 2
    assert os.getpgid(proc.pid) == proc.pid  # leads its own group
    assert procs.stop(t, timeout=5)
    proc.wait(timeout=5)
    time.sleep(0.2)
    assert not any(procs.alive(k) for k in kids)
    assert "start:" in (tmp_path / "x.log").read_text()


def test_rss_and_group_members():
    assert procs.rss_bytes([os.getpid()]) > 1 << 20
    assert os.getpid() in procs.group_members(os.getpgid(os.getpid()))


def test_stack_lock_is_exclusive_between_processes(tmp_path):
    from movierecs_stack.config import Layout
    from movierecs_stack.services import Ctx
    from movierecs_stack.stack import Stack

    held = Stack(Ctx(Layout(root=tmp_path), {}))
    held.lock()  # kept referenced: the lock lives as long as its file object
    code = ("import sys\n"
            "from movierecs_stack.config import Layout\nfrom movierecs_stack.services import Ctx, ServiceError\n"
            "from movierecs_stack.stack import Stack\nfrom pathlib import Path\n"
            "try:\n    Stack(Ctx(Layout(root=Path(%r)), {})).lock(timeout=1)\nexcept ServiceError as e:\n"
            "    print('LOCKED', e); sys.exit(3)\n" % str(tmp_path))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "LOCKED" in r.stdout and "waiting for another" in r.stdout
