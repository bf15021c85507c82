"""Integration fixtures: the running local stack (``make up``) and the extension's test stack.

The endpoints come from ``.movierecs/endpoints.json`` (written by ``make up``), or from the
file named by ``MOVIERECS_ENDPOINTS`` (to point the tests at another LocalStack). A missing
file is a failure with instructions, never a skip.
"""

from __future__ import annotations

import io
import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import boto3
import botocore.config
import pytest
import yaml
from movierecs_stack.deploy import DeployError, create_stack

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "extension_fixtures"
REGION = "us-east-1"


def _endpoints_path() -> Path:
    env = os.environ.get("MOVIERECS_ENDPOINTS")
    return Path(env) if env else ROOT / ".movierecs" / "endpoints.json"


@pytest.fixture(scope="session")
def endpoints() -> dict[str, Any]:
    """The contract's endpoints file (api, kafka, clickhouse, postgres, admin_api_key)."""
    path = _endpoints_path()
    if not path.exists():
        pytest.fail(f"{path} not found: run `make up` first (or set MOVIERECS_ENDPOINTS to an "
                    "endpoints file of a running stack)", pytrace=False)
    data = json.loads(path.read_text())
    for key in ("api", "kafka"):
        if key not in data:
            pytest.fail(f"{path} has no {key!r}: run `make up` again", pytrace=False)
    return data


@pytest.fixture(scope="session")
def gateway(endpoints: dict[str, Any]) -> str:
    """LocalStack's gateway URL: scheme://host:port of the ``api`` endpoint."""
    parts = urlsplit(endpoints["api"])
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture(scope="session")
def kafka_bootstrap(endpoints: dict[str, Any]) -> str:
    return endpoints["kafka"]


@pytest.fixture(scope="session")
def aws(gateway: str) -> Callable[..., Any]:
    """``aws("s3")`` -> a boto3 client bound to the local gateway (test credentials)."""
    cache: dict[str, Any] = {}
    cfg = botocore.config.Config(retries={"max_attempts": 2}, read_timeout=120,
                                 connect_timeout=5)

    def client(service: str) -> Any:
        if service not in cache:
            cache[service] = boto3.client(
                service, endpoint_url=gateway, region_name=REGION,
                aws_access_key_id="test", aws_secret_access_key="test", config=cfg)
        return cache[service]

    return client


def _zip_dir(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                zf.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()


def deploy_extension_stack(aws: Callable[..., Any]) -> dict[str, str]:
    """Package the fixture template (zip code and layer to S3) and deploy it with
    CloudFormation (SAM transform). Returns the stack outputs."""
    s3, cfn = aws("s3"), aws("cloudformation")
    suffix = uuid.uuid4().hex[:8]
    artifacts = f"movierecs-ext-test-artifacts-{suffix}"
    s3.create_bucket(Bucket=artifacts)
    template = yaml.safe_load((FIXTURES / "template.yaml").read_text())
    keys = {}
    for name in ("functions", "layer"):
        keys[name] = f"{name}-{suffix}.zip"
        s3.put_object(Bucket=artifacts, Key=keys[name], Body=_zip_dir(FIXTURES / name))
    template["Globals"]["Function"]["CodeUri"] = {"Bucket": artifacts, "Key": keys["functions"]}
    template["Resources"]["ExtLayer"]["Properties"]["ContentUri"] = {
        "Bucket": artifacts, "Key": keys["layer"]}
    stack = f"movierecs-ext-test-{suffix}"
    try:
        outputs = create_stack(cfn, stack, template)
    except DeployError as exc:
        pytest.fail(str(exc), pytrace=False)
    outputs["StackName"] = stack
    outputs["ArtifactsBucket"] = artifacts
    # Functions must be Active before the first invoke.
    lam = aws("lambda")
    for key in ("EchoFunctionName", "ErrorFunctionName", "SlowFunctionName",
                "KafkaSinkFunctionName"):
        lam.get_waiter("function_active_v2").wait(FunctionName=outputs[key],
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    return outputs


@pytest.fixture(scope="session")
def extension_stack(aws: Callable[..., Any]):
    """The extension's test stack, deployed once per test session and deleted afterwards."""
    outputs = deploy_extension_stack(aws)
    yield outputs
    s3 = aws("s3")
    for bucket in (outputs["ArtifactsBucket"], outputs["OutputBucketName"]):
        try:  # best effort: LocalStack state is not durable anyway
            for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
        except Exception:
            pass
    try:
        aws("cloudformation").delete_stack(StackName=outputs["StackName"])
        s3.delete_bucket(Bucket=outputs["ArtifactsBucket"])
    except Exception:
        pass
