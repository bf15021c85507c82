"""Deploy template.yaml to the running LocalStack through the standard SAM flow.

``sam build`` (no container) then ``samlocal deploy --config-env local`` with the local
endpoints passed as ``--parameter-overrides`` (Target, ClickHouseUrl, PostgresDsn,
KafkaBootstrap, AdminApiKey). When CloudFormation fails, its own reasons (stack events'
ResourceStatusReason) are printed: a broken template must never fail silently.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import HOST
from .services import AWS_ENV, Ctx, ensure_bucket


class DeployError(RuntimeError):
    """The deploy failed; the message carries CloudFormation's reasons or the tool's output."""


@dataclass
class Deployment:
    stack_name: str
    api_url: str | None
    outputs: dict[str, str]


def read_samconfig(project: Path, env_name: str = "local") -> dict[str, Any]:
    """Merged ``global`` and ``deploy`` parameters of one samconfig.toml environment."""
    path = project / "samconfig.toml"
    if not path.exists():
        return {}
    cfg = tomllib.loads(path.read_text())
    env = cfg.get(env_name, {})
    out: dict[str, Any] = {}
    out.update(env.get("global", {}).get("parameters", {}))
    out.update(env.get("deploy", {}).get("parameters", {}))
    out["_has_env"] = env_name in cfg
    return out


def parse_overrides(value: Any) -> dict[str, str]:
    """samconfig's parameter_overrides (a "K=V K2=V2" string or a list) as a dict."""
    items = value if isinstance(value, list) else shlex.split(value or "")
    out = {}
    for item in items:
        if "=" in item:
            k, v = item.split("=", 1)
            out[k.strip()] = v
    return out


def overrides_for(ctx: Ctx, admin_key: str, cfg: dict[str, Any]) -> dict[str, str]:
    """samconfig's overrides, then the local endpoints (ours win: they are where the services run)."""
    ov = parse_overrides(cfg.get("parameter_overrides"))
    ov.update({"Target": "local", "ClickHouseUrl": ctx.clickhouse_url, "PostgresDsn": ctx.postgres_dsn,
               "KafkaBootstrap": ctx.kafka_bootstrap, "AdminApiKey": admin_key})
    return ov


def tool_env(ctx: Ctx) -> dict[str, str]:
    """Environment for sam/samlocal: LocalStack endpoint, fake credentials, python3.11 first on PATH."""
    lay = ctx.layout
    path = os.pathsep.join([str(lay.root / ".venv" / "bin"), str(lay.sam_bin), ctx.env.get("PATH", "/usr/bin:/bin")])
    return ctx.base_env() | AWS_ENV | {
        "PATH": path, "AWS_ENDPOINT_URL": ctx.localstack_url, "SAM_CLI_TELEMETRY": "0",
        "DISABLE_DEPRECATION_NOTICE": "1", "SAM_CLI_CONTACT_ACTION": "0",
    }


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path, title: str) -> str:
    """Run a tool, appending its output to ``log``; raise DeployError with the output's tail on failure."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    out = (r.stdout or "") + (r.stderr or "")
    with open(log, "a") as f:
        f.write(f"\n===== {time.strftime('%H:%M:%S')} {' '.join(shlex.quote(a) for a in argv)}\n{out}")
    # never echo the admin key into logs: it is a parameter override
    if r.returncode:
        tail = "\n".join(out.strip().splitlines()[-25:])
        raise DeployError(f"{title} failed (exit {r.returncode}, {time.monotonic() - t0:.0f}s). Last lines:\n{tail}")
    return out


def stack_failure_reasons(ctx: Ctx, stack_name: str, region: str, limit: int = 15) -> list[str]:
    """Recent failed events of the stack: 'LogicalId (Type) STATUS: reason'."""
    import boto3

    cfn = boto3.client("cloudformation", endpoint_url=ctx.localstack_url, region_name=region,
                       aws_access_key_id="test", aws_secret_access_key="test")
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except Exception as ex:  # the stack may not exist at all
        return [f"(no stack events: {ex})"]
    out = []
    for e in events:
        if "FAILED" in e.get("ResourceStatus", "") or "ROLLBACK" in e.get("ResourceStatus", ""):
            reason = e.get("ResourceStatusReason") or ""
            out.append(f"{e.get('LogicalResourceId')} ({e.get('ResourceType')}) {e.get('ResourceStatus')}: {reason}")
        if len(out) >= limit:
            break
    return out


def api_url_of(ctx: Ctx, stack_name: str, region: str) -> tuple[str | None, dict[str, str]]:
    """The REST API's loopback URL ``http://127.0.0.1:<port>/_aws/execute-api/<id>/<stage>`` and the outputs."""
    import boto3

    kw = dict(endpoint_url=ctx.localstack_url, region_name=region, aws_access_key_id="test",
              aws_secret_access_key="test")
    cfn, apigw = boto3.client("cloudformation", **kw), boto3.client("apigateway", **kw)
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    outputs = {o["OutputKey"]: o.get("OutputValue", "") for o in stack.get("Outputs", [])}
    resources = cfn.list_stack_resources(StackName=stack_name)["StackResourceSummaries"]
    api_ids = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::ApiGateway::RestApi"]
    stage_names = [r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::ApiGateway::Stage"]
    if not api_ids:
        return None, outputs
    api_id = api_ids[0]
    wanted = None
    api_out = outputs.get("ApiUrl", "")
    if api_out:  # e.g. https://<id>.execute-api.<host>/<stage>/ : its stage is the one meant
        parts = [p for p in api_out.split("://", 1)[-1].split("/")[1:] if p]
        wanted = parts[0] if parts else None
    stages = [s["stageName"] for s in apigw.get_stages(restApiId=api_id).get("item", [])]
    stage = (wanted if wanted in stages else None) or next((s for s in stage_names if s in stages), None) \
        or next((s for s in stages if s != "Stage"), None) or (stages[0] if stages else None)
    if stage is None:
        return None, outputs
    return f"http://{HOST}:{ctx.port('localstack')}/_aws/execute-api/{api_id}/{stage}", outputs


def deploy(ctx: Ctx, admin_key: str, project: Path | None = None, *, echo=print) -> Deployment:
    """sam build + samlocal deploy of ``project``/template.yaml; returns the stack's API URL and outputs."""
    project = project or ctx.layout.root
    template = project / "template.yaml"
    if not template.exists():
        raise DeployError(f"{template} does not exist: nothing to deploy")
    cfg = read_samconfig(project)
    stack_name = cfg.get("stack_name", "movierecs")
    region = cfg.get("region", "us-east-1")
    env = tool_env(ctx) | {"AWS_DEFAULT_REGION": region, "AWS_REGION": region}
    log = ctx.layout.logs / "deploy.log"
    sam, samlocal = str(ctx.layout.sam_bin / "sam"), str(ctx.layout.sam_bin / "samlocal")
    config_args = ["--config-env", "local"] if cfg.get("_has_env") else []

    t0 = time.monotonic()
    echo(f"  sam build (log: {log})")
    _run([sam, "build", *config_args, "--template-file", str(template)], cwd=project, env=env, log=log,
         title="sam build")
    t1 = time.monotonic()
    if cfg.get("s3_bucket"):
        ensure_bucket(ctx, cfg["s3_bucket"])
    args = [samlocal, "deploy", *config_args, "--stack-name", stack_name, "--region", region,
            "--no-confirm-changeset", "--no-fail-on-empty-changeset"]
    if not cfg.get("s3_bucket") and not cfg.get("resolve_s3"):
        args.append("--resolve-s3")
    if not cfg.get("capabilities"):
        args += ["--capabilities", "CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
    ov = overrides_for(ctx, admin_key, cfg)
    args += ["--parameter-overrides", *[f"{k}={v}" for k, v in ov.items()]]
    echo(f"  samlocal deploy --config-env local (stack {stack_name}; build {t1 - t0:.0f}s)")
    try:
        _run(args, cwd=project, env=env, log=log, title="samlocal deploy")
    except DeployError as ex:
        reasons = stack_failure_reasons(ctx, stack_name, region)
        msg = str(ex).replace(admin_key, "***")
        if reasons:
            msg += "\nCloudFormation says:\n  " + "\n  ".join(reasons)
        raise DeployError(msg) from None
    api_url, outputs = api_url_of(ctx, stack_name, region)
    echo(f"  deployed in {time.monotonic() - t0:.0f}s; API: {api_url or '(no REST API in the stack)'}")
    return Deployment(stack_name, api_url, outputs)


if __name__ == "__main__":  # pragma: no cover - debugging aid
    sys.exit("use: python -m movierecs_stack deploy")
