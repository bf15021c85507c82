"""ClickHouse HTTP protocol details that do not depend on the engine (pure, unit-testable).

What a client sends (as clickhouse-connect and curl do):
- the statement in the ``query`` URL parameter, the POST body, or both (then ClickHouse
  joins them with a newline: the body carries an INSERT's data);
- ``param_<name>`` URL parameters for ``{name:Type}`` placeholders;
- ``database``, ``default_format``, ``query_id`` and transport parameters; every other URL
  parameter is a setting;
- optionally a compressed body (``Content-Encoding``) and a multipart/form-data body.
"""
from __future__ import annotations

import gzip
import re
import zlib
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP

# URL parameters that are not settings (consumed by the HTTP layer of a real server).
TRANSPORT_PARAMS = frozenset({
    "query", "database", "default_format", "query_id", "user", "password", "quota_key",
    "session_id", "session_timeout", "session_check", "compress", "decompress", "buffer_size",
    "wait_end_of_query", "client_protocol_version", "role", "send_progress_in_http_headers",
    "http_headers_progress_interval_ms", "enable_http_compression", "http_native_compression_disable_checksumming_on_decompress",
    "cancel_http_readonly_queries_on_client_close", "add_http_cors_header", "output_format_parallel_formatting",
    "http_zlib_compression_level", "max_query_size_for_http", "http_response_buffer_size",
})

_INSERT_RE = re.compile(
    rb"^\s*(?P<stmt>INSERT\s+INTO\s+.*?)\s+FORMAT\s+(?P<fmt>[A-Za-z][A-Za-z0-9_]*)[ \t]*(?:\r?\n)?",
    re.IGNORECASE | re.DOTALL,
)
_TRAILING_FORMAT_RE = re.compile(r"\bFORMAT\s+([A-Za-z][A-Za-z0-9_]*)\s*(?:SETTINGS\b[^;]*)?;?\s*$",
                                 re.IGNORECASE | re.DOTALL)
_LITERAL_RE = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`(?:[^`\\]|\\.)*`|--[^\n]*|/\*.*?\*/", re.DOTALL)


class ProtocolError(Exception):
    """A malformed request: answered with HTTP 400 and a ClickHouse-style error body."""

    def __init__(self, message: str, code: int = 36):
        super().__init__(message)
        self.code = code


@dataclass
class Request:
    """A decoded ClickHouse HTTP request."""

    sql: bytes
    params: dict[str, str] = field(default_factory=dict)  # placeholder values, without the param_ prefix
    settings: dict[str, str] = field(default_factory=dict)
    database: str | None = None
    default_format: str = "TabSeparated"
    query_id: str | None = None
    insert_statement: str | None = None  # set for "INSERT INTO ... FORMAT X" followed by data
    insert_format: str | None = None
    insert_data: bytes = b""
    session_id: str | None = None


_SET_RE = re.compile(r"^\s*SET\s+(?!ROLE\b|DEFAULT\s+ROLE\b)(?P<body>.+?)\s*;?\s*$", re.IGNORECASE | re.DOTALL)
_ASSIGN_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^'\\]|\\.)*'|[^,]+?)\s*(?:,|$)")


def parse_set(sql: str) -> dict[str, str] | None:
    """``SET a = 1, b = 'x'`` as {"a": "1", "b": "x"}; None if ``sql`` is not a settings SET."""
    m = _SET_RE.match(sql)
    if not m:
        return None
    body, out, pos = m.group("body"), {}, 0
    while pos < len(body):
        a = _ASSIGN_RE.match(body, pos)
        if not a or a.end() == pos:
            raise ProtocolError(f"Cannot parse SET statement: {sql.strip()[:100]}. (SYNTAX_ERROR)", 62)
        value = a.group(2).strip()
        if value.startswith("'") and value.endswith("'") and len(value) >= 2:
            value = value[1:-1].replace("\\'", "'").replace("\\\\", "\\")
        out[a.group(1)] = value
        pos = a.end()
    return out


def decompress(body: bytes, encoding: str | None) -> bytes:
    """Undo a request's Content-Encoding (gzip, deflate, lz4, zstd, br when their modules exist)."""
    enc = (encoding or "").strip().lower()
    if not enc or enc == "identity":
        return body
    try:
        if enc in ("gzip", "x-gzip"):
            return gzip.decompress(body)
        if enc == "deflate":
            return zlib.decompress(body)
        if enc == "lz4":
            import lz4.frame  # clickhouse-connect writes lz4 frames

            return lz4.frame.decompress(body)
        if enc == "zstd":
            try:
                from compression import zstd  # Python 3.14+
            except ImportError:
                import zstandard as zstd  # type: ignore[no-redef]
            return zstd.decompress(body) if hasattr(zstd, "decompress") else zstd.ZstdDecompressor().decompress(body)
        if enc == "br":
            import brotli  # type: ignore[import-not-found]

            return brotli.decompress(body)
    except ImportError as ex:
        raise ProtocolError(f"Unsupported HTTP compression method: {enc} (the endpoint lacks the module {ex.name})", 1) from ex
    except Exception as ex:
        raise ProtocolError(f"Cannot decompress request body with {enc}: {ex}. (CANNOT_DECOMPRESS)", 271) from ex
    raise ProtocolError(f"Unknown HTTP compression method: {enc}. Use gzip, deflate, lz4 or zstd. (UNKNOWN_COMPRESSION_METHOD)", 1)


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """Fields of a multipart/form-data body (clickhouse-connect's form-encoded query mode)."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    fields: dict[str, bytes] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name:
            fields[str(name)] = part.get_payload(decode=True) or b""
    return fields


def build_request(url_params: dict[str, str], body: bytes, form: dict[str, bytes] | None = None) -> Request:
    """Combine URL parameters, form fields and body into one decoded request."""
    values: dict[str, str] = dict(url_params)
    if form:
        if "query" in form and "query" not in values:
            values["query"] = form.pop("query").decode()
        for k, v in form.items():
            if k.startswith("param_") or k in TRANSPORT_PARAMS:
                values[k] = v.decode()
        body = b""
    query = values.get("query")
    if query is not None and body:
        sql = query.encode() + b"\n" + body
    elif query is not None:
        sql = query.encode()
    else:
        sql = body
    if not sql.strip():
        raise ProtocolError("Empty query. (SYNTAX_ERROR)", 62)
    req = Request(sql=sql)
    for k, v in values.items():
        if k.startswith("param_"):
            req.params[k[6:]] = v
        elif k not in TRANSPORT_PARAMS:
            req.settings[k] = v
    req.database = values.get("database") or None
    req.default_format = values.get("default_format") or "TabSeparated"
    req.query_id = values.get("query_id") or None
    req.session_id = values.get("session_id") or None
    m = _INSERT_RE.match(sql)
    if m and not re.search(rb"\bSELECT\b", m.group("stmt"), re.IGNORECASE):
        req.insert_statement = m.group("stmt").decode()
        req.insert_format = m.group("fmt").decode()
        req.insert_data = sql[m.end():]
    return req


def trailing_format(sql: str) -> str | None:
    """The output format named by the statement's ``FORMAT X`` clause (at the end, or before a final
    SETTINGS clause), ignoring string literals, quoted identifiers and comments."""
    m = _TRAILING_FORMAT_RE.search(_LITERAL_RE.sub("''", sql))
    return m.group(1) if m else None


_HTTP_STATUS_BY_CODE = {
    # as ClickHouse's HTTPHandler maps exception codes to HTTP statuses
    **{c: 400 for c in (27, 36, 38, 43, 44, 46, 53, 62, 69, 70, 72, 73, 115, 117, 130, 184, 352, 386, 403)},
    **{c: 404 for c in (60, 81, 83, 84, 85)},
    **{c: 401 for c in (192, 193, 194, 516)},
    164: 403, 159: 504,
}


def http_status_for(code: int) -> int:
    """HTTP status a real ClickHouse server answers for an exception code (500 by default)."""
    return _HTTP_STATUS_BY_CODE.get(code, 500)
