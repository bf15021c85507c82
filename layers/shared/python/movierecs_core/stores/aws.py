"""boto3 clients: the one place the project builds them (functions, training steps, CLI).

boto3 honours ``AWS_ENDPOINT_URL`` (the local executor points it at LocalStack). S3 uses
path-style addressing against an emulator endpoint, which LocalStack needs. boto3 is imported
on first use: a client costs ~0.1 s to build, and modules that only may need one stay cheap
to import.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

#: The serving functions' S3 settings: bounded retries and short timeouts, so that a missing
#: store fails a request in seconds instead of hanging it.
REQUEST_PATH = {"retries": 2, "connect_timeout": 3.0, "read_timeout": 10.0, "path_style": True}


def client(
    service: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    credentials: tuple[str, str] | None = None,
    retries: int = 3,
    retry_mode: str | None = None,
    connect_timeout: float = 60.0,
    read_timeout: float = 60.0,
    path_style: bool | None = None,
) -> Any:
    """A boto3 client. ``path_style`` None: path-style S3 when an endpoint (emulator) is set."""
    import boto3
    from botocore.config import Config

    if path_style is None:
        path_style = bool(endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))
    retry: dict[str, Any] = {"max_attempts": retries}
    if retry_mode:
        retry["mode"] = retry_mode
    config = Config(retries=retry, connect_timeout=connect_timeout, read_timeout=read_timeout,
                    s3={"addressing_style": "path"} if path_style else {})
    kwargs: dict[str, Any] = {"config": config}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    if region:
        kwargs["region_name"] = region
    if credentials:
        kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = credentials
    return boto3.client(service, **kwargs)


def s3_client() -> Any:
    """The serving functions' S3 client (``REQUEST_PATH`` settings)."""
    return client("s3", **REQUEST_PATH)


class Clients(dict[str, Any]):
    """boto3 clients of one execution environment by service name, each built on first use.

    ``settings(service)`` gives the keyword arguments of ``client`` for that service. A plain
    dict of fakes stands in for it in unit tests.
    """

    def __init__(self, settings: Callable[[str], dict[str, Any]] | None = None) -> None:
        super().__init__()
        self._settings = settings or (lambda service: REQUEST_PATH if service == "s3" else {})

    def __missing__(self, service: str) -> Any:
        made = self[service] = client(service, **self._settings(service))
        return made
