"""The chDB side of the endpoint: one connection, one lock, per-request state.

chDB keeps one connection per data directory and that connection carries session state
(current database, ``SET`` values). A real ClickHouse server gives each HTTP request a
fresh context, so this module makes requests independent: under the lock it switches to
the request's database and applies the request's settings, putting back values that a
previous request changed and this one did not ask for.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

import chdb

_CODE_RE = re.compile(r"Code:\s*(\d+)")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class EngineError(Exception):
    """A ClickHouse exception, with its numeric code and its text as the server prints it."""

    def __init__(self, message: str, code: int | None = None):
        m = _CODE_RE.search(message)
        self.code = code if code is not None else (int(m.group(1)) if m else 1000)
        if not message.lstrip().startswith("Code:"):
            message = f"Code: {self.code}. DB::Exception: {message}"
        self.message = message.strip()
        super().__init__(self.message)


@dataclass
class Result:
    """Bytes of one statement's output and the figures the X-ClickHouse-Summary header reports."""

    body: bytes
    read_rows: int = 0
    read_bytes: int = 0
    written_rows: int = 0
    written_bytes: int = 0
    elapsed_ns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, str]:
        """The JSON object of the X-ClickHouse-Summary header (all values as strings, as ClickHouse does)."""
        return {
            "read_rows": str(self.read_rows),
            "read_bytes": str(self.read_bytes),
            "written_rows": str(self.written_rows),
            "written_bytes": str(self.written_bytes),
            "total_rows_to_read": "0",
            "result_rows": str(self.extra.get("result_rows", 0)),
            "result_bytes": str(len(self.body)),
            "elapsed_ns": str(self.elapsed_ns),
        }


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    """Thread-safe access to one chDB data directory."""

    def __init__(self, data_dir: str):
        self.data_dir = data_dir
        self._conn = chdb.connect(data_dir)
        self._lock = threading.Lock()
        self._database = "default"
        self._originals: dict[str, str] = {}  # setting -> value before we first changed it
        self._applied: dict[str, str] = {}  # setting -> value currently SET by a request
        self.timezone = self._raw("SELECT timezone()").decode().strip()
        self.version = self._raw("SELECT version()").decode().strip()

    def close(self) -> None:
        """Close the chDB connection (releases the data directory lock)."""
        with self._lock:
            self._conn.close()

    # -- low level ---------------------------------------------------------------------------
    def _raw(self, sql: str, fmt: str = "TabSeparated", params: Mapping[str, str] | None = None) -> bytes:
        try:
            return self._conn.query(sql, fmt, params=dict(params or {})).bytes() or b""
        except Exception as ex:  # chdb raises ChdbError / RuntimeError with ClickHouse's text
            raise EngineError(str(ex)) from ex

    def _prepare(self, database: str | None, settings: Mapping[str, str]) -> None:
        """Make the session look like a fresh request context (call with the lock held)."""
        db = database or "default"
        if db != self._database:
            self._raw(f"USE `{db.replace('`', '')}`")
            self._database = db
        # put back settings that an earlier request changed and this one does not set
        for name in [n for n in self._applied if n not in settings]:
            self._raw(f"SET {name} = {_quote(self._originals[name])}")
            del self._applied[name]
        for name, value in settings.items():
            if not _NAME_RE.match(name):
                raise EngineError(f"Setting name {name!r} is not valid. (BAD_ARGUMENTS)", 36)
            if self._applied.get(name) == value:
                continue
            if name not in self._originals:
                row = self._raw("SELECT value FROM system.settings WHERE name = {n:String}", params={"n": name})
                if not row:
                    raise EngineError(f"Setting {name} is neither a builtin setting nor started with the prefix 'custom_'. (UNKNOWN_SETTING)", 115)
                self._originals[name] = row.decode().rstrip("\n")
            self._raw(f"SET {name} = {_quote(value)}")
            self._applied[name] = value

    # -- public ------------------------------------------------------------------------------
    def query(self, sql: str, fmt: str, *, params: Mapping[str, str] | None = None,
              database: str | None = None, settings: Mapping[str, str] | None = None) -> Result:
        """Run one statement; an embedded ``FORMAT`` clause wins over ``fmt`` (as on a server)."""
        with self._lock:
            self._prepare(database, settings or {})
            start = time.perf_counter_ns()
            try:
                res = self._conn.query(sql, fmt, params=dict(params or {}))
            except Exception as ex:
                raise EngineError(str(ex)) from ex
            elapsed = time.perf_counter_ns() - start
        body = res.bytes() or b""
        out = Result(body=body, elapsed_ns=elapsed)
        try:
            out.read_rows, out.read_bytes = int(res.rows_read()), int(res.bytes_read())
        except Exception:
            pass
        return out

    def insert(self, statement: str, fmt: str, chunks: Iterable[bytes], *, database: str | None = None,
               settings: Mapping[str, str] | None = None) -> Result:
        """Stream data in ``fmt`` into ``statement`` (``INSERT INTO t (cols)``, no FORMAT clause).

        Uses chDB's streaming inserter, so no temporary file is needed.
        """
        with self._lock:
            self._prepare(database, settings or {})
            start = time.perf_counter_ns()
            try:
                ins = self._conn.send_insert(statement, fmt)
            except Exception as ex:
                raise EngineError(str(ex)) from ex
            try:
                for chunk in chunks:
                    if chunk:
                        ins.append(chunk)
                res = ins.finish()
            except Exception as ex:
                try:
                    ins.cancel()
                except Exception:
                    pass
                raise EngineError(str(ex)) from ex
            elapsed = time.perf_counter_ns() - start
        rows, nbytes = int(getattr(res, "rows_written", 0) or 0), int(getattr(res, "bytes_written", 0) or 0)
        return Result(body=b"", written_rows=rows, written_bytes=nbytes, read_rows=rows, read_bytes=nbytes,
                      elapsed_ns=elapsed)
