"""The Lambda worker process of infra/localstack_ext (the piece that runs on Python 3.11),
driven over its socketpair protocol the way the executor drives it, without LocalStack."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from movierecs_localstack import worker
from movierecs_localstack.paths import WORKER_SCRIPT

APP = '''
import os, time
import shared_mod
INIT_COUNT = int(os.environ.get("INIT_SEED", "0")) + 1
print("init ran")

def handler(event, context):
    print("handling", event.get("n"))
    return {"n": event.get("n"), "init": INIT_COUNT, "layer": shared_mod.WHERE,
            "rid": context.aws_request_id, "arn": context.invoked_function_arn,
            "left": context.get_remaining_time_in_millis(), "mem": context.memory_limit_in_mb}

def fail(event, context):
    raise KeyError("missing")

def unserializable(event, context):
    return {1, 2}
'''


class Worker:
    def __init__(self, tmp_path: Path, handler: str, layers: list[Path]) -> None:
        self.log = tmp_path / "worker.log"
        self.sock, child = socket.socketpair()
        cmd = [sys.executable, "-u", "-P", str(WORKER_SCRIPT), "--handler", handler,
               "--task-root", str(tmp_path / "code"), "--control-fd", str(child.fileno())]
        for layer in layers:
            cmd += ["--layer", str(layer)]
        env = {"PATH": os.environ["PATH"], "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
               "INIT_SEED": "0"}
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         pass_fds=(child.fileno(),))
        child.close()
        self.sock.settimeout(20)

    def init(self) -> tuple[bytes, bytes]:
        return worker.recv_frame(self.sock)

    def invoke(self, event: dict, request_id: str = "req-1") -> tuple[bytes, dict]:
        header = {"invoke-id": request_id, "invoked-function-arn": "arn:aws:lambda:x:1:function:f",
                  "trace-id": "Root=1-abc", "deadline-ms": (time.time() + 3) * 1000}
        worker.send_frame(self.sock, worker.KIND_INVOKE,
                          json.dumps(header).encode() + b"\n" + json.dumps(event).encode())
        kind, body = worker.recv_frame(self.sock)
        return kind, json.loads(body)

    def close(self) -> None:
        self.sock.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def function_dir(tmp_path: Path) -> Path:
    code = tmp_path / "code"
    code.mkdir()
    (code / "app.py").write_text(APP)
    for name, where in (("layer1", "first"), ("layer2", "second")):
        (tmp_path / name / "python").mkdir(parents=True)
        (tmp_path / name / "python" / "shared_mod.py").write_text(f"WHERE = {where!r}\n")
    return tmp_path


def test_init_once_context_and_later_layer_wins(function_dir: Path):
    w = Worker(function_dir, "app.handler", [function_dir / "layer1", function_dir / "layer2"])
    try:
        assert w.init() == (worker.KIND_READY, b"")
        kind, first = w.invoke({"n": 1}, "r1")
        kind2, second = w.invoke({"n": 2}, "r2")
    finally:
        w.close()
    assert kind == kind2 == worker.KIND_RESPONSE
    assert first["layer"] == "second"  # Lambda extracts layers in order: the later one wins
    assert first["init"] == second["init"] == 1
    assert (first["rid"], second["rid"]) == ("r1", "r2")
    assert first["arn"] == "arn:aws:lambda:x:1:function:f"
    assert 0 < first["left"] <= 3000
    assert first["mem"] == 512
    log = w.log.read_text()
    assert log.count("init ran") == 1 and "handling 1" in log and "handling 2" in log


def test_unhandled_error_document(function_dir: Path):
    w = Worker(function_dir, "app.fail", [function_dir / "layer1"])
    try:
        assert w.init()[0] == worker.KIND_READY
        kind, doc = w.invoke({})
    finally:
        w.close()
    assert kind == worker.KIND_ERROR
    assert doc["errorType"] == "KeyError"
    assert doc["errorMessage"] == "'missing'"
    assert doc["requestId"] == "req-1"
    assert any("app.py" in line and "fail" in line for line in doc["stackTrace"])
    assert not any("worker.py" in line for line in doc["stackTrace"])
    assert "[ERROR] KeyError" in w.log.read_text()


def test_unserializable_result_is_a_marshal_error(function_dir: Path):
    w = Worker(function_dir, "app.unserializable", [function_dir / "layer1"])
    try:
        assert w.init()[0] == worker.KIND_READY
        kind, doc = w.invoke({})
    finally:
        w.close()
    assert kind == worker.KIND_ERROR and doc["errorType"] == "Runtime.MarshalError"


@pytest.mark.parametrize("handler,error_type", [
    ("app.handler", "Runtime.ImportModuleError"),  # no layer: shared_mod is missing
    ("app.nope", "Runtime.HandlerNotFound"),
    ("nomodule.handler", "Runtime.ImportModuleError"),
    ("app", "Runtime.MalformedHandlerName"),
])
def test_init_errors(function_dir: Path, handler: str, error_type: str):
    layers = [] if handler == "app.handler" else [function_dir / "layer1"]
    w = Worker(function_dir, handler, layers)
    try:
        kind, body = w.init()
    finally:
        w.close()
    assert kind == worker.KIND_INIT_ERROR
    assert json.loads(body)["errorType"] == error_type


def test_layer_paths_order():
    paths = worker.layer_paths(["/l1", "/l2"])
    assert paths[1] == "/l2/python" and paths[3] == "/l1/python"
    assert paths[0].startswith("/l2/python/lib/python3.") and paths[0].endswith("site-packages")


def test_lifeline_eof_kills_the_worker(function_dir: Path, tmp_path: Path):
    sock, child = socket.socketpair()
    r, w = os.pipe()
    cmd = [sys.executable, "-u", "-P", str(WORKER_SCRIPT), "--handler", "app.handler",
           "--task-root", str(function_dir / "code"), "--layer", str(function_dir / "layer1"),
           "--control-fd", str(child.fileno()), "--lifeline-fd", str(r)]
    proc = subprocess.Popen(cmd, pass_fds=(child.fileno(), r), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={"PATH": os.environ["PATH"]})
    child.close()
    os.close(r)
    sock.settimeout(20)
    assert worker.recv_frame(sock)[0] == worker.KIND_READY
    os.close(w)  # what happens to the pipe when LocalStack dies
    assert proc.wait(timeout=10) != 0
    sock.close()
