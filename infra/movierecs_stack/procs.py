"""Processes the stack starts: pid files, process groups, ports, resource use.

Why pid files carry the process start time: after a machine restart a pid number may be
reused by an unrelated process; a pid file whose start time no longer matches is stale and
is never acted on. Every service leads its own process group (``start_new_session``) so
``down`` can stop a service with all its children and touch nothing else.
"""
from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence


# --- /proc helpers ------------------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (index 0 = state)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    return raw[raw.rfind(")") + 2:].split()


def start_time(pid: int) -> int | None:
    """Kernel start time of a process (clock ticks since boot), or None if it does not exist."""
    f = _stat_fields(pid)
    return int(f[19]) if f else None


def alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    f = _stat_fields(pid)
    return bool(f) and f[0] not in ("Z", "X")


def all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def children_map() -> dict[int, list[int]]:
    """ppid -> [pid] for every live process."""
    out: dict[int, list[int]] = {}
    for pid in all_pids():
        f = _stat_fields(pid)
        if f and f[0] not in ("Z", "X"):
            out.setdefault(int(f[1]), []).append(pid)
    return out


def descendants(pid: int, cmap: Mapping[int, list[int]] | None = None) -> list[int]:
    """All live descendants of a process (children, grandchildren, ...)."""
    cmap = cmap if cmap is not None else children_map()
    out, todo = [], list(cmap.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(cmap.get(p, []))
    return out


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is ``pgid``."""
    out = []
    for pid in all_pids():
        f = _stat_fields(pid)
        if f and f[0] not in ("Z", "X") and int(f[2]) == pgid:
            out.append(pid)
    return out


def rss_bytes(pids: Iterable[int]) -> int:
    """Sum of resident set sizes of the given processes."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    for pid in set(pids):
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return total


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


# --- ports ----------------------------------------------------------------------------------------
def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if a server could bind host:port now (SO_REUSEADDR: TIME_WAIT leftovers do not count)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
        return True
    except OSError as ex:
        if ex.errno in (errno.EADDRINUSE, errno.EACCES):
            return False
        raise
    finally:
        s.close()


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def listening_inodes(port: int) -> set[str]:
    """Socket inodes of TCP listeners (IPv4 and IPv6) on ``port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 9 and parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(parts[9])
    return inodes


def listeners(port: int) -> list[int]:
    """Pids of processes holding a listening socket on ``port`` (needs permission to read their fds)."""
    inodes = listening_inodes(port)
    if not inodes:
        return []
    targets = {f"socket:[{i}]" for i in inodes}
    out = []
    for pid in all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in targets:
                    out.append(pid)
                    break
            except OSError:
                continue
    return sorted(out)


# --- pid files ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tracked:
    """A process the stack started: its pid (= its process group id) and kernel start time."""

    name: str
    pid: int
    started: int

    def running(self) -> bool:
        return alive(self.pid) and start_time(self.pid) == self.started


class PidStore:
    """``<dir>/<service>.pid`` files holding ``<pid> <start time>``."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def write(self, name: str, pid: int) -> Tracked:
        st = start_time(pid)
        if st is None:
            raise RuntimeError(f"{name}: process {pid} exited right after it was started")
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path(name).with_suffix(".tmp")
        tmp.write_text(f"{pid} {st}\n")
        os.replace(tmp, self.path(name))
        return Tracked(name, pid, st)

    def read(self, name: str) -> Tracked | None:
        """The tracked process, or None if there is no pid file or it is malformed."""
        try:
            pid_s, st_s = self.path(name).read_text().split()[:2]
            return Tracked(name, int(pid_s), int(st_s))
        except (OSError, ValueError):
            return None

    def running(self, name: str) -> Tracked | None:
        """The tracked process if it still runs (same pid and start time), else None."""
        t = self.read(name)
        return t if t and t.running() else None

    def remove(self, name: str) -> None:
        try:
            self.path(name).unlink()
        except FileNotFoundError:
            pass

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.dir.glob("*.pid")) if self.dir.is_dir() else []


# --- start / stop -------------------------------------------------------------------------------
def spawn(argv: Sequence[str], *, log: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None,
          user: str | None = None) -> subprocess.Popen:
    """Start a process leading a new session (its own process group), output appended to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab", buffering=0) as out:
        out.write(f"\n===== {time.strftime('%Y-%m-%d %H:%M:%S')} start: {' '.join(argv)}\n".encode())
        kwargs: dict = {}
        if user is not None:
            import pwd

            pw = pwd.getpwnam(user)
            kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(env) if env is not None else None, cwd=cwd, start_new_session=True,
                                close_fds=True, **kwargs)


def stop(t: Tracked, *, first_signal: int = signal.SIGTERM, timeout: float = 20.0) -> bool:
    """Stop a tracked process, its process group and its descendants; True once all are gone.

    The leader gets ``first_signal`` (PostgreSQL wants SIGINT for a fast shutdown), the rest
    of its group and descendants SIGTERM; whatever is left after ``timeout`` gets SIGKILL.
    Nothing is signalled if the pid no longer belongs to the process we started.
    """
    if not t.running():
        return True
    victims = set(descendants(t.pid)) | set(group_members(t.pid))
    victims.discard(t.pid)
    _signal(t.pid, first_signal)
    if first_signal == signal.SIGTERM:
        _signal_group(t.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not t.running() and not any(alive(p) for p in victims | set(group_members(t.pid))):
            return True
        if not t.running():  # leader gone: finish its leftovers
            for p in victims:
                _signal(p, signal.SIGTERM)
        time.sleep(0.1)
    left = set(group_members(t.pid)) | {p for p in victims if alive(p)}
    if t.running():
        left.add(t.pid)
    for p in left:
        _signal(p, signal.SIGKILL)
    _signal_group(t.pid, signal.SIGKILL)
    # the kernel may take seconds to tear down a large process on a loaded machine
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (t.running() or any(alive(p) for p in left)):
        time.sleep(0.1)
    return not t.running()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_port_free(port: int, timeout: float = 15.0, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_free(port, host):
            return True
        time.sleep(0.1)
    return port_free(port, host)
