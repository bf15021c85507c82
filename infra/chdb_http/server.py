"""The HTTP server: a threaded loopback server, one chDB engine behind a lock.

Every response is written in a single ``sendall`` and accepted sockets get TCP_NODELAY:
a Python server that sends headers and body separately stalls ~40 ms per request on
loopback (Nagle + delayed ACK).
"""
from __future__ import annotations

import json
import logging
import socket
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from .engine import Engine, EngineError, Result
from collections import OrderedDict
import threading

from .protocol import (ProtocolError, build_request, decompress, http_status_for, parse_multipart, parse_set,
                       trailing_format)

log = logging.getLogger("chdb_http")

_TSV_DEFAULTS = {"TabSeparated", "TSV"}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    engine: Engine
    max_sessions = 1000

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # session_id -> settings SET in that session (a real server keeps them per HTTP session;
        # without a session a SET lasts for its own request only, as on a server)
        self.sessions: OrderedDict[str, dict[str, str]] = OrderedDict()
        self.sessions_lock = threading.Lock()

    def session_settings(self, session_id: str | None) -> dict[str, str]:
        if not session_id:
            return {}
        with self.sessions_lock:
            if session_id in self.sessions:
                self.sessions.move_to_end(session_id)
                return dict(self.sessions[session_id])
        return {}

    def remember(self, session_id: str, settings: dict[str, str]) -> None:
        with self.sessions_lock:
            self.sessions.setdefault(session_id, {}).update(settings)
            self.sessions.move_to_end(session_id)
            while len(self.sessions) > self.max_sessions:
                self.sessions.popitem(last=False)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (reset, broken pipe) is routine: log it in one line, not a traceback."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, exc)
            return
        log.exception("error while serving %s", client_address)

    def get_request(self):  # noqa: D401 - socketserver hook
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr


class Handler(BaseHTTPRequestHandler):
    """Answers /ping, / and ClickHouse queries (GET and POST)."""

    protocol_version = "HTTP/1.1"
    server_version = "chdb-http"
    # Idle keep-alive connections are closed after 10 s, as ClickHouse's keep_alive_timeout does:
    # each open connection holds a thread, and Lambda worker processes keep pools open.
    timeout = 10
    server: _Server

    def log_message(self, fmt: str, *args) -> None:  # route access logs to logging, quietly
        log.debug("%s " + fmt, self.address_string(), *args)

    # -- plumbing --------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}"]
        hdrs = {"Content-Type": "text/plain; charset=UTF-8", "Content-Length": str(len(body)),
                "X-ClickHouse-Server-Display-Name": "chdb-http", "Keep-Alive": "timeout=10",
                "Connection": "Keep-Alive"}
        hdrs.update(headers or {})
        lines += [f"{k}: {v}" for k, v in hdrs.items()]
        self.wfile.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        self.wfile.flush()

    def _error(self, code: int, message: str, query_id: str = "") -> None:
        if not message.startswith("Code:"):
            message = f"Code: {code}. DB::Exception: {message}"
        body = f"{message} (version {getattr(self.server.engine, 'version', '')})\n".encode()
        self._send(http_status_for(code), body, {"X-ClickHouse-Exception-Code": str(code),
                                                 "X-ClickHouse-Query-Id": query_id})

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            parts = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline(3)
            return b"".join(parts)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    # -- verbs -------------------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and not url.query):
            self._send(200, b"Ok.\n")
            return
        self._handle(url, b"")

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        try:
            body = self._read_body()
        except (ValueError, OSError) as ex:
            self.close_connection = True
            self._error(33, f"Cannot read request body: {ex}. (CANNOT_READ_ALL_DATA)")
            return
        self._handle(url, body)

    def _handle(self, url, body: bytes) -> None:
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        query_id = params.get("query_id") or str(uuid.uuid4())
        try:
            if params.get("decompress") in ("1", "true"):
                raise ProtocolError("ClickHouse-native request compression (decompress=1) is not supported by this "
                                    "endpoint; use Content-Encoding (lz4, zstd, gzip) instead. (NOT_IMPLEMENTED)", 48)
            body = decompress(body, self.headers.get("Content-Encoding"))
            form = None
            ctype = self.headers.get("Content-Type") or ""
            if ctype.startswith("multipart/form-data"):
                form = parse_multipart(body, ctype)
            req = build_request(params, body, form)
            engine = self.server.engine
            req.settings = {**self.server.session_settings(req.session_id), **req.settings}
            fmt_header: str | None
            if req.insert_statement is not None:
                data = req.insert_data
                res = engine.insert(req.insert_statement, req.insert_format or "TabSeparated",
                                    [data[i:i + (8 << 20)] for i in range(0, len(data), 8 << 20)],
                                    database=req.database, settings=req.settings)
                fmt_header = None
            else:
                sql = req.sql.decode("utf-8", errors="surrogateescape")
                fmt = trailing_format(sql)
                assigned = parse_set(sql)
                if assigned is not None:
                    # validated like any request's settings, never left on the shared chDB connection
                    res = engine.query("SELECT 1", "TabSeparated", database=req.database,
                                       settings={**req.settings, **assigned})
                    res.body = b""
                    if req.session_id:
                        self.server.remember(req.session_id, assigned)
                    fmt_header = None
                elif fmt is not None:
                    res = engine.query(sql, fmt, params=req.params, database=req.database, settings=req.settings)
                    fmt_header = fmt
                elif req.default_format in _TSV_DEFAULTS:
                    # a server reports X-ClickHouse-Format only for statements that produce a result set:
                    # with names, a result set always has a first line, a DDL statement has none
                    res = engine.query(sql, "TabSeparatedWithNames", params=req.params, database=req.database,
                                       settings=req.settings)
                    if res.body:
                        nl = res.body.find(b"\n")
                        res.body = res.body[nl + 1:] if nl >= 0 else b""
                        fmt_header = req.default_format
                    else:
                        fmt_header = None
                else:
                    res = engine.query(sql, req.default_format, params=req.params, database=req.database,
                                       settings=req.settings)
                    fmt_header = req.default_format if res.body else None
        except ProtocolError as ex:
            self._error(ex.code, str(ex), query_id)
            return
        except EngineError as ex:
            self._error(ex.code, ex.message, query_id)
            return
        except Exception as ex:  # never drop a connection without an answer
            log.exception("internal error")
            self._error(1001, f"std::exception. {type(ex).__name__}: {ex}. (STD_EXCEPTION)", query_id)
            return
        self._ok(res, fmt_header, query_id)

    def _ok(self, res: Result, fmt_header: str | None, query_id: str) -> None:
        headers = {"X-ClickHouse-Query-Id": query_id, "X-ClickHouse-Timezone": self.server.engine.timezone,
                   "X-ClickHouse-Summary": json.dumps(res.summary(), separators=(",", ":"))}
        if fmt_header:
            headers["X-ClickHouse-Format"] = fmt_header
            if fmt_header in ("Native", "RowBinary", "Arrow", "ArrowStream", "Parquet"):
                headers["Content-Type"] = "application/octet-stream"
            elif fmt_header.startswith("JSON"):
                headers["Content-Type"] = "application/json; charset=UTF-8"
        self._send(200, res.body, headers)


def serve(host: str, port: int, data_dir: str) -> None:
    """Open the data directory and serve until interrupted."""
    engine = Engine(data_dir)
    srv = _Server((host, port), Handler)
    srv.engine = engine
    log.info("chdb_http %s serving %s on http://%s:%d (timezone %s)", engine.version, data_dir, host, port, engine.timezone)
    try:
        srv.serve_forever(poll_interval=0.5)
    finally:
        srv.server_close()
        engine.close()
        log.info("stopped at %s", time.strftime("%H:%M:%S"))
