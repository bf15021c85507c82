"""The HTTP side and the on-disk store of s3lite.

Only the S3 calls Tansu 0.6.0 (Rust `object_store`) makes are implemented: PutObject with
If-Match / If-None-Match, GetObject (Range, If-Match, If-None-Match), HeadObject,
DeleteObject(s), ListObjectsV2, CreateBucket / HeadBucket / ListBuckets. Requests are
path-style; signatures are accepted unverified (the server binds 127.0.0.1 only).

Layout: `<data-dir>/<bucket>/o/<sha[:2]>/<sha256(key)>`, each file = one JSON header line
(key, etag, size, mtime, content type) + the body. Writes go to `<bucket>/tmp/` first and
are moved in place with os.replace, so a reader or a crash never sees half an object.
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import logging
import os
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.etree import ElementTree as ET
from xml.sax.saxutils import escape

log = logging.getLogger("s3lite")

HOST = "127.0.0.1"
_STRIPES = 256
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"


@dataclass(frozen=True)
class Meta:
    """What listing and HEAD need about one object (the body stays on disk)."""
    etag: str  # quoted md5 hex
    size: int
    mtime: float
    content_type: str


class S3Error(Exception):
    """An S3 error answer: HTTP status, S3 code, message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts * 1000) % 1000:03d}Z"


def _contents_xml(key: str, m: Meta) -> str:
    """One object's <Contents> element of a ListObjectsV2 answer."""
    return (f"<Contents><Key>{escape(key)}</Key><LastModified>{_iso(m.mtime)}</LastModified>"
            f"<ETag>{escape(m.etag)}</ETag><Size>{m.size}</Size><StorageClass>STANDARD</StorageClass></Contents>")


def _etag_matches(cond: str, etag: str) -> bool:
    """True when an If-Match / If-None-Match header value names this etag (or is `*`)."""
    for part in cond.split(","):
        part = part.strip()
        if part.startswith("W/"):
            part = part[2:]
        if part == "*" or part == etag or f'"{part.strip(chr(34))}"' == etag:
            return True
    return False


class Bucket:
    """One bucket: its folder, a sorted key list and key -> Meta, guarded by one short lock."""

    def __init__(self, root: Path, fsync: bool):
        self.root, self.fsync = root, fsync
        self.objects = root / "o"
        self.tmp = root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(exist_ok=True)
        self._index_lock = threading.Lock()
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self.keys: list[str] = []
        self.meta: dict[str, Meta] = {}
        # key -> (meta, its <Contents> XML): Tansu lists a partition's whole log on every fetch,
        # so the same thousands of elements are rendered again and again; render each once.
        self._xml: dict[str, tuple[Meta, str]] = {}
        self._load()

    # -- disk ---------------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        h = hashlib.sha256(key.encode()).hexdigest()
        return self.objects / h[:2] / h

    def _load(self) -> None:
        """Rebuild the index from the object files (headers only); drop leftover temp files."""
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        for sub in self.objects.iterdir():
            for f in sub.iterdir():
                try:
                    with open(f, "rb") as fh:
                        head = json.loads(fh.readline())
                    self.meta[head["key"]] = Meta(head["etag"], head["size"], head["mtime"], head["ct"])
                except (OSError, ValueError, KeyError):
                    log.warning("ignoring unreadable object file %s", f)
        self.keys = sorted(self.meta)

    def _lock(self, key: str) -> threading.Lock:
        return self._stripes[hash(key) % _STRIPES]

    # -- operations ---------------------------------------------------------------------------
    def put(self, key: str, body: bytes, content_type: str, if_match: str | None,
            if_none_match: str | None) -> Meta:
        etag = f'"{hashlib.md5(body).hexdigest()}"'
        meta = Meta(etag, len(body), time.time(), content_type)
        head = json.dumps({"key": key, "etag": etag, "size": len(body), "mtime": meta.mtime,
                           "ct": content_type}).encode() + b"\n"
        fd, tmp = tempfile.mkstemp(dir=self.tmp)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(head)
                fh.write(body)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            path = self._path(key)
            with self._lock(key):  # the check and the replace are one step for this key
                current = self.meta.get(key)
                if if_none_match is not None and current is not None and _etag_matches(if_none_match, current.etag):
                    raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
                if if_match is not None:
                    if current is None:
                        raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
                    if not _etag_matches(if_match, current.etag):
                        raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
                path.parent.mkdir(exist_ok=True)
                os.replace(tmp, path)
                tmp = None
                with self._index_lock:
                    if current is None:
                        bisect.insort(self.keys, key)
                    self.meta[key] = meta
            return meta
        finally:
            if tmp is not None:
                os.unlink(tmp)

    def read(self, key: str) -> tuple[Meta, bytes]:
        """The object's meta and body, read from one file (consistent even during a replace)."""
        try:
            with open(self._path(key), "rb") as fh:
                head = json.loads(fh.readline())
                body = fh.read()
        except FileNotFoundError:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.") from None
        return Meta(head["etag"], head["size"], head["mtime"], head["ct"]), body

    def head(self, key: str) -> Meta:
        m = self.meta.get(key)
        if m is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.")
        return m

    def contents_xml(self, key: str, m: Meta) -> str:
        """``_contents_xml(key, m)``, cached per object version (a put makes a new Meta)."""
        hit = self._xml.get(key)
        if hit is not None and hit[0] is m:
            return hit[1]
        xml = _contents_xml(key, m)
        self._xml[key] = (m, xml)
        return xml

    def delete(self, key: str) -> None:
        self._xml.pop(key, None)
        with self._lock(key):
            self._path(key).unlink(missing_ok=True)
            with self._index_lock:
                if self.meta.pop(key, None) is not None:
                    i = bisect.bisect_left(self.keys, key)
                    if i < len(self.keys) and self.keys[i] == key:
                        del self.keys[i]

    def list(self, prefix: str, delimiter: str, start: str, max_keys: int
             ) -> tuple[list[tuple[str, Meta]], list[str], str | None]:
        """Keys and common prefixes from `start` (inclusive); the next start when truncated."""
        contents: list[tuple[str, Meta]] = []
        prefixes: list[str] = []
        with self._index_lock:
            keys = self.keys
            i = bisect.bisect_left(keys, max(start, prefix))
            while i < len(keys):
                k = keys[i]
                if not k.startswith(prefix):
                    break
                if len(contents) + len(prefixes) >= max_keys:
                    return contents, prefixes, k
                if delimiter:
                    j = k.find(delimiter, len(prefix))
                    if j >= 0:
                        cp = k[: j + len(delimiter)]
                        prefixes.append(cp)
                        i = bisect.bisect_left(keys, cp[:-1] + chr(ord(cp[-1]) + 1), i)
                        continue
                contents.append((k, self.meta[k]))
                i += 1
        return contents, prefixes, None


class Store:
    """All buckets under one data folder."""

    def __init__(self, data_dir: Path, fsync: bool):
        self.data_dir, self.fsync = Path(data_dir), fsync
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.buckets: dict[str, Bucket] = {
            d.name: Bucket(d, fsync) for d in sorted(self.data_dir.iterdir()) if d.is_dir() and (d / "o").is_dir()}

    def bucket(self, name: str) -> Bucket:
        b = self.buckets.get(name)
        if b is None:
            raise S3Error(404, "NoSuchBucket", f"The specified bucket {name!r} does not exist.")
        return b

    def create(self, name: str) -> None:
        if not _BUCKET_RE.match(name):
            raise S3Error(400, "InvalidBucketName", f"{name!r} is not a valid bucket name (3-63 chars: a-z 0-9 . -).")
        with self._lock:
            if name not in self.buckets:
                self.buckets[name] = Bucket(self.data_dir / name, self.fsync)


def _decode_aws_chunked(raw: bytes) -> bytes:
    """Body of a `STREAMING-*` (aws-chunked) upload: `<hex>[;ext]\\r\\n<data>\\r\\n` ... `0\\r\\n`."""
    out, pos = bytearray(), 0
    while True:
        eol = raw.index(b"\r\n", pos)
        size = int(raw[pos:eol].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += raw[eol + 2: eol + 2 + size]
        pos = eol + 2 + size + 2


class Handler(BaseHTTPRequestHandler):
    """One S3 request -> one response, written with a single send (no Nagle stall)."""

    protocol_version = "HTTP/1.1"
    server: "S3LiteServer"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt: str, *args) -> None:  # the access log is opt-in
        pass

    # -- plumbing -------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              head_only: bool = False) -> None:
        lines = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                 f"Date: {formatdate(usegmt=True)}", "Server: s3lite", "x-amz-request-id: s3lite"]
        hdrs = {"Content-Length": str(len(body))} | (headers or {})
        lines += [f"{k}: {v}" for k, v in hdrs.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not head_only and status not in (204, 304):
            data += body
        self.wfile.write(data)
        if self.server.access_log:
            log.info("%s %s -> %d", self.command, self.path, status)

    def _xml(self, status: int, xml: str) -> None:
        self._send(status, ('<?xml version="1.0" encoding="UTF-8"?>\n' + xml).encode(),
                   {"Content-Type": "application/xml"})

    def _error(self, e: S3Error) -> None:
        body = (f"<Error><Code>{e.code}</Code><Message>{escape(e.message)}</Message>"
                f"<Resource>{escape(self.path)}</Resource><RequestId>s3lite</RequestId></Error>")
        if self.command == "HEAD":
            self._send(e.status, b"", {"Content-Type": "application/xml"})
        else:
            self._xml(e.status, body)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            raw = bytes(out)
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("x-amz-content-sha256", "").startswith("STREAMING-") or \
                "aws-chunked" in self.headers.get("Content-Encoding", ""):
            raw = _decode_aws_chunked(raw)
        return raw

    def _route(self) -> tuple[str, str, dict[str, str]]:
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        path = parts.path.lstrip("/")
        bucket, _, key = path.partition("/")
        return unquote(bucket), unquote(key), q

    def _dispatch(self) -> None:
        body = self._body() if self.command in ("PUT", "POST") else b""
        try:
            bucket, key, q = self._route()
            getattr(self, f"_{self.command.lower()}")(bucket, key, q, body)
        except S3Error as e:
            self._error(e)
        except (ValueError, ET.ParseError) as e:
            self._error(S3Error(400, "InvalidRequest", f"malformed request: {e}"))

    do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _dispatch

    # -- operations -----------------------------------------------------------------------------
    def _put(self, bucket: str, key: str, q: dict[str, str], body: bytes) -> None:
        store = self.server.store
        if not key:
            store.create(bucket)
            self._send(200, b"", {"Location": f"/{bucket}"})
            return
        if "x-amz-copy-source" in self.headers or "uploadId" in q or "partNumber" in q:
            raise S3Error(501, "NotImplemented", "s3lite implements plain PutObject only (no copy, no multipart).")
        meta = store.bucket(bucket).put(key, body, self.headers.get("Content-Type", "binary/octet-stream"),
                                        self.headers.get("If-Match"), self.headers.get("If-None-Match"))
        self._send(200, b"", {"ETag": meta.etag})

    def _obj_headers(self, m: Meta) -> dict[str, str]:
        return {"ETag": m.etag, "Last-Modified": formatdate(m.mtime, usegmt=True),
                "Content-Type": m.content_type, "Accept-Ranges": "bytes"}

    def _check_get_conditions(self, m: Meta) -> bool:
        """False (after answering 304) when If-None-Match holds; raises 412 when If-Match fails."""
        im, inm = self.headers.get("If-Match"), self.headers.get("If-None-Match")
        if im is not None and not _etag_matches(im, m.etag):
            raise S3Error(412, "PreconditionFailed", "At least one of the pre-conditions you specified did not hold")
        if inm is not None and _etag_matches(inm, m.etag):
            self._send(304, b"", {"ETag": m.etag, "Last-Modified": formatdate(m.mtime, usegmt=True)})
            return False
        return True

    def _get(self, bucket: str, key: str, q: dict[str, str], _body: bytes) -> None:
        store = self.server.store
        if not bucket:
            names = "".join(f"<Bucket><Name>{escape(n)}</Name><CreationDate>{_iso(0)}</CreationDate></Bucket>"
                            for n in sorted(store.buckets))
            self._xml(200, f'<ListAllMyBucketsResult xmlns="{_XMLNS}"><Owner><ID>s3lite</ID></Owner>'
                           f"<Buckets>{names}</Buckets></ListAllMyBucketsResult>")
            return
        b = store.bucket(bucket)
        if not key:
            self._list(bucket, b, q)
            return
        m, data = b.read(key)
        if not self._check_get_conditions(m):
            return
        headers = self._obj_headers(m)
        rng = self.headers.get("Range")
        if rng:
            start, end = self._range(rng, len(data))
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            self._send(206, data[start:end + 1], headers)
        else:
            self._send(200, data, headers)

    @staticmethod
    def _range(rng: str, size: int) -> tuple[int, int]:
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
        if not m or (m.group(1) == "" and m.group(2) == ""):
            raise S3Error(400, "InvalidRange", f"unsupported Range {rng!r}; use bytes=a-b, bytes=a- or bytes=-n")
        if m.group(1) == "":
            n = int(m.group(2))
            start, end = max(0, size - n), size - 1
        else:
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        if start >= size or start > end:
            raise S3Error(416, "InvalidRange", "The requested range is not satisfiable")
        return start, end

    def _head(self, bucket: str, key: str, q: dict[str, str], _body: bytes) -> None:
        b = self.server.store.bucket(bucket)
        if not key:
            self._send(200, b"", {"x-amz-bucket-region": "us-east-1"}, head_only=True)
            return
        m = b.head(key)
        if self._check_get_conditions(m):
            self._send(200, b"", self._obj_headers(m) | {"Content-Length": str(m.size)}, head_only=True)

    def _delete(self, bucket: str, key: str, q: dict[str, str], _body: bytes) -> None:
        b = self.server.store.bucket(bucket)
        if not key:
            raise S3Error(501, "NotImplemented", "s3lite does not delete buckets; remove its data folder instead.")
        b.delete(key)
        self._send(204)

    def _post(self, bucket: str, key: str, q: dict[str, str], body: bytes) -> None:
        if "delete" not in q or key:
            raise S3Error(501, "NotImplemented", "s3lite implements POST ?delete (DeleteObjects) only.")
        b = self.server.store.bucket(bucket)
        root = ET.fromstring(body)
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        quiet = (root.findtext(f"{ns}Quiet") or "").lower() == "true"
        out = []
        for obj in root.iter(f"{ns}Object"):
            k = obj.findtext(f"{ns}Key") or ""
            b.delete(k)
            if not quiet:
                out.append(f"<Deleted><Key>{escape(k)}</Key></Deleted>")
        self._xml(200, f'<DeleteResult xmlns="{_XMLNS}">{"".join(out)}</DeleteResult>')

    def _list(self, name: str, b: Bucket, q: dict[str, str]) -> None:
        if q.get("list-type") != "2":
            raise S3Error(501, "NotImplemented", "s3lite implements ListObjectsV2 only (list-type=2).")
        prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
        max_keys = max(0, min(int(q.get("max-keys", "1000")), 1000))
        start = q.get("start-after", "")
        if start:
            start += "\x00"
        token = q.get("continuation-token")
        if token:
            try:
                start = base64.urlsafe_b64decode(token.encode()).decode()
            except ValueError:
                raise S3Error(400, "InvalidArgument", "The continuation token provided is incorrect") from None
        contents, prefixes, nxt = b.list(prefix, delimiter, start, max_keys)
        enc = q.get("encoding-type") == "url"
        k = (lambda s: quote(s, safe="/")) if enc else (lambda s: s)
        parts = [f'<ListBucketResult xmlns="{_XMLNS}"><Name>{escape(name)}</Name>',
                 f"<Prefix>{escape(k(prefix))}</Prefix>", f"<KeyCount>{len(contents) + len(prefixes)}</KeyCount>",
                 f"<MaxKeys>{max_keys}</MaxKeys>", f"<IsTruncated>{'true' if nxt is not None else 'false'}</IsTruncated>"]
        if delimiter:
            parts.append(f"<Delimiter>{escape(k(delimiter))}</Delimiter>")
        if enc:
            parts.append("<EncodingType>url</EncodingType>")
        if token:
            parts.append(f"<ContinuationToken>{escape(token)}</ContinuationToken>")
        if q.get("start-after"):
            parts.append(f"<StartAfter>{escape(k(q['start-after']))}</StartAfter>")
        if nxt is not None:
            parts.append("<NextContinuationToken>"
                         f"{base64.urlsafe_b64encode(nxt.encode()).decode()}</NextContinuationToken>")
        for key, m in contents:
            parts.append(_contents_xml(k(key), m) if enc else b.contents_xml(key, m))
        for cp in prefixes:
            parts.append(f"<CommonPrefixes><Prefix>{escape(k(cp))}</Prefix></CommonPrefixes>")
        parts.append("</ListBucketResult>")
        self._xml(200, "".join(parts))


class S3LiteServer(ThreadingHTTPServer):
    """Threaded loopback S3 server over a Store; port 0 picks a free port (see `.port`)."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, data_dir: Path | str, port: int = 0, fsync: bool = False, access_log: bool = False):
        self.store = Store(Path(data_dir), fsync)
        self.access_log = access_log
        super().__init__((HOST, port), Handler)

    @property
    def port(self) -> int:
        return self.server_address[1]

    def object_count(self) -> int:
        return sum(len(b.meta) for b in self.store.buckets.values())

    def request_stop(self) -> None:
        """Stop serve_forever from a signal handler (shutdown() itself would deadlock there)."""
        threading.Thread(target=self.shutdown, daemon=True).start()


def serve(data_dir: Path | str, port: int = 0, fsync: bool = False) -> tuple[S3LiteServer, threading.Thread]:
    """Start a server in a background thread (tests, embedding); stop with srv.shutdown()."""
    srv = S3LiteServer(data_dir, port=port, fsync=fsync)
    t = threading.Thread(target=srv.serve_forever, daemon=True, name="s3lite")
    t.start()
    return srv, t
