"""LocalStack runtime executor that runs each Lambda execution environment as a local process.

LocalStack (host mode, no Docker) creates one :class:`ProcessRuntimeExecutor` per execution
environment; its own assignment service decides how many environments run (one invocation
at a time each), so concurrency works exactly as with the docker executor.

Per environment there is one persistent worker process (:mod:`movierecs_localstack.worker`)
on the project's Python 3.11. The executor talks to it over a ``socketpair`` instead of the
HTTP executor-endpoint round trips (``/invoke`` + ``/status/ready`` + ``/logs`` +
``/response`` through the gateway): the messages are the same, but one invocation costs two
local socket writes instead of three HTTP requests, which keeps a no-op invoke well under a
millisecond of executor overhead.

The executor, not the worker, enforces the timeout: when the answer does not arrive in time
it kills the worker's process group and reports ``Task timed out after N.NN seconds``. The
next invocation on that environment starts a fresh worker (init runs again, as on AWS after
a timeout).
"""

from __future__ import annotations

import atexit
import datetime
import json
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from localstack import config
from localstack.aws.api.lambda_ import PackageType
from localstack.services.lambda_.invocation.executor_endpoint import StatusErrorException
from localstack.services.lambda_.invocation.lambda_models import FunctionVersion, InvocationResult
from localstack.services.lambda_.invocation.runtime_executor import (
    LambdaRuntimeException,
    RuntimeExecutor,
)

from movierecs_localstack import paths, worker
from movierecs_localstack.worker import (
    KIND_ERROR,
    KIND_INIT_ERROR,
    KIND_INVOKE,
    KIND_READY,
    KIND_RESPONSE,
    ChannelClosed,
    recv_frame,
    send_frame,
)

LOG = logging.getLogger(__name__)

#: Environment variables taken from LocalStack's own process (nothing else is inherited:
#: in particular not PYTHONPATH, which points into LocalStack's Python 3.13 world).
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME")

#: Live executors, so that an orderly LocalStack exit kills every worker (the lifeline pipe
#: covers a crash or SIGKILL of LocalStack).
_LIVE: "weakref.WeakSet[ProcessRuntimeExecutor]" = weakref.WeakSet()


def _kill_all_workers() -> None:
    for executor in list(_LIVE):
        try:
            executor.stop()
        except Exception:
            pass


atexit.register(_kill_all_workers)


def _gateway_host_port() -> tuple[str, int]:
    listen = config.GATEWAY_LISTEN[0]
    host = listen.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    return host, listen.port


def _log_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "movierecs-lambda-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class ProcessRuntimeExecutor(RuntimeExecutor):
    """One Lambda execution environment = one worker process (see module docstring)."""

    def __init__(self, id: str, function_version: FunctionVersion) -> None:
        super().__init__(id=id, function_version=function_version)
        self._lock = threading.Lock()  # one invocation at a time; serializes (re)spawns
        self._proc: subprocess.Popen | None = None
        self._sock: socket.socket | None = None
        self._lifeline_w: int | None = None
        self._env: dict[str, str] = {}
        self._needs_restart = False
        self._stopped = False
        self._log_path = _log_dir() / f"{function_version.id.function_name}-{id}.log"
        self._log_offset = 0

    # ----------------------------------------------------------------------------- lifecycle
    def start(self, env_vars: dict[str, str]) -> None:
        self._env = self._build_env(env_vars)
        _LIVE.add(self)
        with self._lock:
            error = self._spawn()
        if error is not None:
            # LocalStack drops the logs of a failed start (they never reach CloudWatch):
            # keep the function's init output visible in LocalStack's own log.
            LOG.warning("movierecs-process: init of %s failed in environment %s: %s\n%s",
                        self.function_version.qualified_arn, self.id,
                        error.decode("utf-8", "replace")[:2000], self.get_logs()[-4000:])
            raise StatusErrorException("Environment startup failed", payload=error)

    def _build_env(self, env_vars: dict[str, Any]) -> dict[str, str]:
        env = {k: os.environ[k] for k in INHERITED_ENV if k in os.environ}
        env.update({k: str(v) for k, v in env_vars.items() if v is not None})
        host, port = _gateway_host_port()
        # boto3 in handlers talks to LocalStack; region and credentials exist even if
        # LocalStack's STS answer lacked them.
        env.setdefault("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        env.setdefault("AWS_ACCESS_KEY_ID", "test")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        env.setdefault("AWS_REGION", self.function_version.id.region)
        env.setdefault("AWS_DEFAULT_REGION", self.function_version.id.region)
        code = self._code_dir()
        if code is not None:
            env["LAMBDA_TASK_ROOT"] = str(code)
        env["AWS_EXECUTION_ENV"] = "AWS_Lambda_python3.11"
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _code_dir(self) -> Path | None:
        code = self.function_version.config.code
        return Path(code.get_unzipped_code_location()) if code else None

    def _layer_dirs(self) -> list[str]:
        dirs = []
        for layer in self.function_version.config.layers or []:
            if layer.code is not None:
                dirs.append(str(layer.code.get_unzipped_code_location()))
        return dirs

    def _spawn(self) -> bytes | None:
        """Start a worker and wait for its init. Returns the init error document or None.

        Caller holds ``self._lock``.
        """
        self._kill_worker()
        code_dir = self._code_dir()
        handler = self.function_version.config.handler
        if code_dir is None or not handler:
            return json.dumps({"errorType": "Runtime.InvalidEntrypoint",
                               "errorMessage": "movierecs-process runs zip-packaged functions "
                                               "with a handler only"}).encode()
        parent_sock, child_sock = socket.socketpair()
        lifeline_r, lifeline_w = os.pipe()
        cmd = [
            str(paths.lambda_python()), "-u", "-P", str(paths.WORKER_SCRIPT),
            "--handler", handler,
            "--task-root", str(code_dir),
            "--control-fd", str(child_sock.fileno()),
            "--lifeline-fd", str(lifeline_r),
        ]
        for layer_dir in self._layer_dirs():
            cmd += ["--layer", layer_dir]
        log_file = open(self._log_path, "ab")
        try:
            self._log_offset = log_file.tell()
            self._proc = subprocess.Popen(
                cmd,
                env=self._env,
                cwd=str(code_dir),
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                pass_fds=(child_sock.fileno(), lifeline_r),
                start_new_session=True,  # own process group: stop() kills handler children too
            )
        except OSError as exc:
            os.close(lifeline_w)
            parent_sock.close()
            return json.dumps({"errorType": "Runtime.InvalidEntrypoint",
                               "errorMessage": f"cannot start {cmd[0]}: {exc}"}).encode()
        finally:
            log_file.close()
            child_sock.close()
            os.close(lifeline_r)
        self._sock = parent_sock
        self._lifeline_w = lifeline_w
        self._needs_restart = False
        try:
            kind, body = recv_frame(parent_sock)
        except (ChannelClosed, OSError):
            code = self._proc.poll() if self._proc else None
            self._needs_restart = True
            return json.dumps({"errorType": "Runtime.ExitError",
                               "errorMessage": f"RequestId: init Error: Runtime exited during "
                                               f"init (exit status {code})"}).encode()
        if kind == KIND_READY:
            LOG.debug("environment %s ready (pid %s)", self.id, self._proc.pid)
            return None
        self._needs_restart = True
        self._kill_worker()
        return body if kind == KIND_INIT_ERROR else b'{"errorType":"Runtime.Unknown"}'

    def _kill_worker(self) -> None:
        proc, sock, lifeline = self._proc, self._sock, self._lifeline_w
        self._proc = self._sock = self._lifeline_w = None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        if lifeline is not None:
            try:
                os.close(lifeline)
            except OSError:
                pass
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                LOG.warning("worker %s did not exit after SIGKILL", proc.pid)

    def stop(self) -> None:
        """Kill the worker's process group. Safe to call concurrently with ``invoke``: the
        blocked read sees EOF and the invocation reports an error."""
        self._stopped = True
        proc, sock = self._proc, self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        with self._lock:
            self._kill_worker()
        _LIVE.discard(self)
        try:
            self._log_path.unlink(missing_ok=True)
        except OSError:
            pass

    # ------------------------------------------------------------------------------ invoke
    def invoke(self, payload: dict[str, str]) -> InvocationResult:
        request_id = payload["invoke-id"]
        with self._lock:
            if self._stopped:
                raise LambdaRuntimeException(f"environment {self.id} is stopped")
            if (self._needs_restart or self._sock is None
                    or (self._proc is not None and self._proc.poll() is not None)):
                # never started, timed out, or died while idle (e.g. killed): a fresh worker,
                # as AWS replaces a sandbox that went away between invocations
                error = self._spawn()
                if error is not None:
                    return InvocationResult(request_id, error, is_error=True,
                                            logs=self._read_logs())
            timeout = float(self.function_version.config.timeout)
            started = time.monotonic()
            deadline = started + timeout
            header = {k: v for k, v in payload.items() if k != "payload"}
            header["deadline-ms"] = (time.time() + timeout) * 1000
            event = payload.get("payload") or ""
            frame = json.dumps(header).encode() + b"\n" + (
                event.encode() if isinstance(event, str) else bytes(event))
            sock = self._sock
            kind, body = b"", b""
            outcome = "ok"
            try:
                send_frame(sock, KIND_INVOKE, frame)
                sock.settimeout(timeout)
                try:
                    kind, body = self._recv_before(sock, deadline)
                finally:
                    if self._sock is sock:
                        sock.settimeout(None)
            except TimeoutError:
                outcome = "timeout"
            except (ChannelClosed, OSError):
                outcome = "exit"
            duration_ms = (time.monotonic() - started) * 1000
            if outcome == "ok":
                logs = self._read_logs()
                is_error = kind == KIND_ERROR
                if kind not in (KIND_RESPONSE, KIND_ERROR):
                    is_error, body = True, b'{"errorType":"Runtime.Unknown"}'
            elif outcome == "timeout":
                message = f"Task timed out after {timeout:.2f} seconds"
                body, logs = self._fail_environment(request_id, "Sandbox.Timedout", message,
                                                    f"{_now_iso()} {request_id} {message}")
                is_error = True
            else:
                if self._stopped:
                    raise LambdaRuntimeException(f"environment {self.id} stopped during invoke")
                code = self._proc.poll() if self._proc else None
                message = f"Runtime exited with error: exit status {code}"
                body, logs = self._fail_environment(request_id, "Runtime.ExitError", message, message)
                is_error = True
        version = self.function_version.id.qualifier
        memory = self.function_version.config.memory_size
        used = self._max_memory_mb()
        if used is not None and used > memory:
            logs += (f"WARNING: max memory used {used} MB exceeds the configured {memory} MB "
                     "(not enforced locally; AWS would end this invocation)\n")
        used_text = f"Max Memory Used: {used} MB\t" if used is not None else ""
        logs = (f"START RequestId: {request_id} Version: {version}\n{logs}"
                f"END RequestId: {request_id}\n"
                f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
                f"Billed Duration: {max(1, int(duration_ms + 0.999))} ms\t"
                f"Memory Size: {memory} MB\t{used_text}"
                f"{'Status: timeout' if outcome == 'timeout' else ''}\n")
        return InvocationResult(request_id, body, is_error=is_error, logs=logs)

    def _max_memory_mb(self) -> int | None:
        """Peak RSS of the worker (VmHWM), for the REPORT line; None when it is gone."""
        proc = self._proc
        if proc is None:
            return None
        try:
            with open(f"/proc/{proc.pid}/status", "rb") as f:
                for line in f:
                    if line.startswith(b"VmHWM:"):
                        return int(line.split()[1]) // 1024
        except OSError:
            return None
        return None

    @staticmethod
    def _recv_before(sock: socket.socket, deadline: float) -> tuple[bytes, bytes]:
        # settimeout applies per recv call; a slow trickle could exceed the deadline, so the
        # remaining time is re-applied for every frame part.
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError
        sock.settimeout(remaining)
        return recv_frame(sock)

    def _fail_environment(self, request_id: str, error_type: str, message: str,
                          log_line: str) -> tuple[bytes, str]:
        """The worker is gone or must go (timeout, crash): kill it, start afresh next time, and
        shape the invocation error as Lambda does. Returns (error body, logs)."""
        self._needs_restart = True
        self._kill_worker()
        body = json.dumps({"errorType": error_type,
                           "errorMessage": f"RequestId: {request_id} Error: {message}"}).encode()
        return body, self._read_logs() + f"{log_line}\n"

    def _read_logs(self) -> str:
        """The slice of the environment's log file written since the last read."""
        try:
            with open(self._log_path, "rb") as f:
                f.seek(self._log_offset)
                data = f.read()
                self._log_offset += len(data)
        except FileNotFoundError:
            return ""
        text = data.decode("utf-8", "replace")
        if text and not text.endswith("\n"):
            text += "\n"
        return text

    def get_logs(self) -> str:
        try:
            return self._log_path.read_text("utf-8", "replace")
        except FileNotFoundError:
            return ""

    # ----------------------------------------------------------------------------- address
    def get_address(self) -> str:
        return "127.0.0.1"

    def get_endpoint_from_executor(self) -> str:
        return _gateway_host_port()[0]

    def get_runtime_endpoint(self) -> str:
        host, port = _gateway_host_port()
        return f"http://{host}:{port}/_localstack_lambda/{self.id}"

    # ----------------------------------------------------------------------------- versions
    @classmethod
    def prepare_version(cls, function_version: FunctionVersion) -> None:
        cfg = function_version.config
        if cfg.package_type != PackageType.Zip or not cfg.runtime:
            raise LambdaRuntimeException(
                "movierecs-process runs zip-packaged Python functions only (no container images)")
        if not str(cfg.runtime).startswith("python"):
            raise LambdaRuntimeException(
                f"movierecs-process runs Python functions only, not {cfg.runtime}")
        if cfg.code:
            cfg.code.prepare_for_execution()
        for layer in cfg.layers or []:
            if layer.code is not None:
                layer.code.prepare_for_execution()

    @classmethod
    def cleanup_version(cls, function_version: FunctionVersion) -> None:
        # LocalStack deletes the unzipped code itself; workers are stopped per environment.
        pass

    @classmethod
    def validate_environment(cls) -> bool:
        python = paths.lambda_python()
        if not os.access(python, os.X_OK):
            LOG.warning("movierecs-process: function interpreter %s not found; set "
                        "MOVIERECS_LAMBDA_PYTHON or MOVIERECS_ROOT", python)
            return False
        return True


__all__ = ["ProcessRuntimeExecutor", "worker"]
