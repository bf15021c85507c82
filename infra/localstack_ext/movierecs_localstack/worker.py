"""The process that *is* one Lambda execution environment (runs on the project's Python 3.11).

Started by :mod:`movierecs_localstack.executor` as ``python -u -P worker.py ...``. It is
stdlib-only on purpose: it must import nothing from LocalStack (which lives in another
interpreter) and nothing that could shadow the function's own modules.

Lifecycle, as on AWS Lambda:

1. put the function code folder first on ``sys.path``, then each layer's ``python/`` folders
   (later layers first, because on Lambda a later layer overwrites an earlier one in ``/opt``);
2. import the handler module once (module-level init runs once per environment) and report
   ``ready`` or an init error (``Runtime.ImportModuleError`` ...);
3. serve invocations one at a time: call ``handler(event, context)`` and answer with the JSON
   result or an error document ``{errorMessage, errorType, requestId, stackTrace}``.

Transport: a ``socketpair`` end inherited from the executor, messages framed as a 4-byte
big-endian length followed by a 1-byte kind and the body. No HTTP and no TCP, so there is no
Nagle/delayed-ACK stall and no port to allocate. An invocation request carries the document
LocalStack's executor endpoint would POST to ``/invoke`` (``invoke-id``,
``invoked-function-arn``, ``trace-id``, plus ``deadline-ms``) as a JSON line, followed by the
raw ``payload`` bytes (not embedded as a JSON string, so a 1 MB batch is not escaped twice).

stdout/stderr (file descriptors 1 and 2) are a log file owned by the executor, which reads
each invocation's slice after the answer arrives; the worker flushes before answering.

Orphans: the executor holds the write end of a "lifeline" pipe; when LocalStack dies, the
read end sees EOF and this process kills its whole process group (itself and any children).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from typing import Any, Callable

# Message kinds (first byte of a frame body).
KIND_INVOKE = b"V"  # executor -> worker: invocation request (JSON)
KIND_READY = b"I"  # worker -> executor: handler imported
KIND_INIT_ERROR = b"F"  # worker -> executor: init failed (JSON error document)
KIND_RESPONSE = b"R"  # worker -> executor: handler result (JSON text)
KIND_ERROR = b"E"  # worker -> executor: unhandled error (JSON error document)

_HEADER = struct.Struct(">I")


class ChannelClosed(Exception):
    """The other end of the control channel went away."""


def send_frame(sock: socket.socket, kind: bytes, body: bytes) -> None:
    """Send one frame in a single ``sendall`` (header and body together)."""
    sock.sendall(_HEADER.pack(len(body) + 1) + kind + body)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(min(n, 1 << 20))
        if not chunk:
            raise ChannelClosed("control channel closed")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def recv_frame(sock: socket.socket) -> tuple[bytes, bytes]:
    """Receive one frame; returns ``(kind, body)``; raises :class:`ChannelClosed` on EOF."""
    (length,) = _HEADER.unpack(_recv_exact(sock, _HEADER.size))
    data = _recv_exact(sock, length)
    return data[:1], data[1:]


def error_document(exc: BaseException, request_id: str | None = None,
                   error_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    """The error shape the AWS Python runtime returns for an unhandled exception."""
    # Drop this module's own frames: the trace starts in the function's code, as on AWS.
    tb = [f for f in traceback.extract_tb(exc.__traceback__)
          if f.filename != __file__ and not f.filename.startswith("<frozen")
          and f.filename != importlib.__file__]
    doc: dict[str, Any] = {
        "errorMessage": message if message is not None else str(exc),
        "errorType": error_type or type(exc).__name__,
    }
    if request_id:
        doc["requestId"] = request_id
    doc["stackTrace"] = traceback.format_list(tb)
    return doc


def log_error_document(doc: dict[str, Any]) -> None:
    """Write the error to the function log the way the Lambda runtime does (``[ERROR] ...``)."""
    lines = [f"[ERROR] {doc['errorType']}: {doc['errorMessage']}"]
    if doc.get("stackTrace"):
        lines.append("Traceback (most recent call last):")
        lines.extend(line.rstrip("\n") for line in doc["stackTrace"])
    sys.stderr.write("\n".join(lines) + "\n")


class LambdaContext:
    """The ``context`` argument, with the attributes and method of the AWS Python runtime."""

    def __init__(self, request_id: str, invoked_function_arn: str, deadline_ms: float) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = invoked_function_arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = int(env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128") or 128)
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int(self._deadline_ms - time.time() * 1000))

    def __repr__(self) -> str:
        return (f"LambdaContext(aws_request_id={self.aws_request_id!r}, "
                f"function_name={self.function_name!r})")


class _RequestIdFilter(logging.Filter):
    request_id = ""

    def filter(self, record: logging.LogRecord) -> bool:
        record.aws_request_id = _RequestIdFilter.request_id
        return True


def install_lambda_logging() -> None:
    """Root logger handler with the Lambda Python runtime's line format (level stays WARNING)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(_RequestIdFilter())
    formatter = logging.Formatter(
        "[%(levelname)s]\t%(asctime)s.%(msecs)03dZ\t%(aws_request_id)s\t%(message)s",
        "%Y-%m-%dT%H:%M:%S",
    )
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logging.getLogger().addHandler(handler)


def layer_paths(layer_roots: list[str]) -> list[str]:
    """``sys.path`` entries for layers given in Lambda order (first layer first).

    Lambda unpacks layers into ``/opt`` in order, a later layer overwriting an earlier one,
    and puts ``/opt/python/lib/python3.X/site-packages`` and ``/opt/python`` on the path. Here
    each layer keeps its own folder, so later layers come first to win the same way.
    """
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    paths: list[str] = []
    for root in reversed(layer_roots):
        paths.append(os.path.join(root, "python", "lib", ver, "site-packages"))
        paths.append(os.path.join(root, "python"))
    return paths


def load_handler(handler_spec: str) -> Callable[..., Any]:
    """Import ``module.function`` (``a/b.c`` and ``a.b.c`` allowed) the way Lambda does.

    Raises :class:`InitError` with the Lambda runtime's error types.
    """
    spec = handler_spec.replace("/", ".")
    if "." not in spec:
        raise InitError("Runtime.MalformedHandlerName",
                        f"Bad handler '{handler_spec}': not enough values to unpack "
                        "(expected 2, got 1)")
    module_name, func_name = spec.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except SyntaxError as exc:
        raise InitError("Runtime.UserCodeSyntaxError",
                        f"Syntax error in module '{module_name}': {exc}", exc) from exc
    except ImportError as exc:
        raise InitError("Runtime.ImportModuleError",
                        f"Unable to import module '{module_name}': {exc}", exc) from exc
    except Exception as exc:  # module-level code raised: report it as the runtime does
        raise InitError(type(exc).__name__, str(exc), exc) from exc
    func = getattr(module, func_name, None)
    if func is None:
        raise InitError("Runtime.HandlerNotFound",
                        f"Handler '{func_name}' missing on module '{module_name}'")
    return func


class InitError(Exception):
    def __init__(self, error_type: str, message: str, cause: BaseException | None = None):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.cause = cause

    def document(self) -> dict[str, Any]:
        doc = error_document(self.cause or self, error_type=self.error_type, message=self.message)
        return doc


def _watch_lifeline(fd: int) -> None:
    """Block until the executor's end of the lifeline closes, then kill our process group."""
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    try:
        os.killpg(os.getpgrp(), signal.SIGKILL)
    finally:
        os._exit(137)


def serve(sock: socket.socket, handler: Callable[..., Any]) -> None:
    """Invocation loop: one request at a time until the channel closes."""
    while True:
        try:
            kind, body = recv_frame(sock)
        except ChannelClosed:
            return
        if kind != KIND_INVOKE:
            continue
        # body = JSON header (invoke-id, invoked-function-arn, trace-id, deadline-ms) + "\n"
        # + the raw event payload (not re-encoded as a JSON string: big batches stay cheap)
        header, _, payload = body.partition(b"\n")
        req = json.loads(header)
        request_id = req.get("invoke-id", "")
        _RequestIdFilter.request_id = request_id
        if req.get("trace-id"):
            os.environ["_X_AMZN_TRACE_ID"] = req["trace-id"]
        context = LambdaContext(request_id, req.get("invoked-function-arn", ""),
                                float(req.get("deadline-ms") or (time.time() + 900) * 1000))
        try:
            if not payload and "payload" in req:  # executor of an older version (in-memory)
                payload = (req["payload"] or "").encode()
            event = json.loads(payload) if payload.strip() else {}
            result = handler(event, context)
            try:
                out = json.dumps(result).encode()
            except (TypeError, ValueError) as exc:
                doc = error_document(exc, request_id, "Runtime.MarshalError",
                                     f"Unable to marshal response: {exc}")
                doc["stackTrace"] = []
                log_error_document(doc)
                _flush()
                send_frame(sock, KIND_ERROR, json.dumps(doc).encode())
                continue
            _flush()
            send_frame(sock, KIND_RESPONSE, out)
        except Exception as exc:  # the function's unhandled error
            doc = error_document(exc, request_id)
            log_error_document(doc)
            _flush()
            send_frame(sock, KIND_ERROR, json.dumps(doc).encode())


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--handler", required=True, help="Lambda handler, e.g. app.handler")
    parser.add_argument("--task-root", required=True, help="unzipped function code folder")
    parser.add_argument("--layer", action="append", default=[],
                        help="unzipped layer folder, in the function's layer order (repeat)")
    parser.add_argument("--control-fd", type=int, required=True, help="inherited socketpair end")
    parser.add_argument("--lifeline-fd", type=int, default=-1,
                        help="inherited pipe read end; EOF means the parent died")
    args = parser.parse_args(argv)

    if args.lifeline_fd >= 0:
        threading.Thread(target=_watch_lifeline, args=(args.lifeline_fd,), daemon=True,
                         name="lifeline").start()

    sock = socket.socket(fileno=args.control_fd)
    sys.path[:0] = [args.task_root] + layer_paths(args.layer)
    os.chdir(args.task_root)
    install_lambda_logging()
    try:
        handler = load_handler(args.handler)
    except InitError as exc:
        doc = exc.document()
        log_error_document(doc)
        _flush()
        send_frame(sock, KIND_INIT_ERROR, json.dumps(doc).encode())
        return 1
    except BaseException as exc:  # SystemExit & co. during init
        doc = error_document(exc, error_type="Runtime.ExitError",
                             message=f"Runtime exited during init: {exc!r}")
        log_error_document(doc)
        _flush()
        send_frame(sock, KIND_INIT_ERROR, json.dumps(doc).encode())
        return 1
    _flush()
    send_frame(sock, KIND_READY, b"")
    serve(sock, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
