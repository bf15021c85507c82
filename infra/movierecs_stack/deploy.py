"""Deploy template.yaml to the running LocalStack through the standard SAM flow.

``sam build`` (no container) then ``samlocal deploy --config-env local`` with the local
endpoints passed as ``--parameter-overrides`` (Target, ClickHouseUrl, PostgresDsn,
KafkaBootstrap, AdminApiKey). When CloudFormation fails, its own reasons (stack events'
ResourceStatusReason) are printed: a broken template must never fail silently.
"""
from __future__ import annotations

import json
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


def _eval_condition(expr: Any, conditions: dict[str, Any], params: dict[str, str], seen: tuple = ()) -> Any:
    """Evaluate a CloudFormation condition expression (Equals/Not/And/Or/Condition/Ref to parameters)."""
    if isinstance(expr, dict) and len(expr) == 1:
        (op, arg), = expr.items()
        if op == "Ref":
            if arg not in params:
                raise KeyError(arg)
            return params[arg]
        if op == "Condition":
            if arg in seen:
                raise ValueError(f"condition cycle at {arg}")
            return bool(_eval_condition(conditions[arg], conditions, params, seen + (arg,)))
        if op == "Fn::Equals":
            a, b = (_eval_condition(x, conditions, params, seen) for x in arg)
            return str(a) == str(b)
        if op == "Fn::Not":
            return not _eval_condition(arg[0], conditions, params, seen)
        if op == "Fn::And":
            return all(_eval_condition(x, conditions, params, seen) for x in arg)
        if op == "Fn::Or":
            return any(_eval_condition(x, conditions, params, seen) for x in arg)
        raise ValueError(f"unsupported condition function {op}")
    return expr


def excluded_resources(template: Path, overrides: dict[str, str]) -> list[str]:
    """Resources whose Condition is false for these parameters: `sam build` builds every resource
    whatever its Condition (an image function for AWS would need Docker here), so they are excluded
    from the build. CloudFormation itself skips them at deploy time."""
    try:
        from cfnlint.decode import decode
    except ImportError:  # pragma: no cover - cfn-lint is in the project venv
        return []
    tpl, _ = decode(str(template))
    if not tpl:
        return []
    params = {k: str(v.get("Default")) for k, v in (tpl.get("Parameters") or {}).items()
              if isinstance(v, dict) and "Default" in v}
    params.update(overrides)
    conditions = tpl.get("Conditions") or {}
    out = []
    for name, res in (tpl.get("Resources") or {}).items():
        cond = res.get("Condition") if isinstance(res, dict) else None
        if not cond:
            continue
        try:
            if not _eval_condition({"Condition": cond}, conditions, params):
                out.append(name)
        except (KeyError, ValueError):
            continue  # cannot tell: build it
    return out


_NO_VALUE = {"Ref": "AWS::NoValue"}


def _resolve_ifs(node: Any, truth: dict[str, bool]) -> Any:
    """Replace Fn::If whose condition is known by its branch; drop AWS::NoValue entries."""
    if isinstance(node, dict):
        if len(node) == 1 and "Fn::If" in node:
            cond, a, b = node["Fn::If"]
            if isinstance(cond, str) and cond in truth:
                return _resolve_ifs(a if truth[cond] else b, truth)
        out = {}
        for k, v in node.items():
            r = _resolve_ifs(v, truth)
            if r != _NO_VALUE:
                out[k] = r
        return out
    if isinstance(node, list):
        return [r for r in (_resolve_ifs(v, truth) for v in node) if r != _NO_VALUE]
    return node


def localize_template(built: Path, overrides: dict[str, str]) -> Path | None:
    """Write ``template.local.json`` beside the built template: resources and outputs whose
    Condition is false for these parameters removed, Fn::If on such conditions resolved.

    Why: ``sam deploy`` packages every resource whatever its Condition and refuses an image
    function without an image repository (and pushing one needs Docker), although
    CloudFormation would never create it. The result deploys exactly what CloudFormation would
    create from the original template. Returns None when nothing had to change.
    """
    from cfnlint.decode import decode

    tpl, _ = decode(str(built))
    if not tpl:
        return None
    params = {k: str(v.get("Default")) for k, v in (tpl.get("Parameters") or {}).items()
              if isinstance(v, dict) and "Default" in v}
    params.update(overrides)
    conditions = tpl.get("Conditions") or {}
    truth: dict[str, bool] = {}
    for name in conditions:
        try:
            truth[name] = bool(_eval_condition({"Condition": name}, conditions, params))
        except (KeyError, ValueError):
            pass
    if all(truth.values()):
        return None
    out = dict(tpl)
    for section in ("Resources", "Outputs"):
        items = out.get(section) or {}
        out[section] = {k: v for k, v in items.items()
                        if not (isinstance(v, dict) and truth.get(v.get("Condition", "")) is False)}
    out["Resources"] = _resolve_ifs(out["Resources"], truth)
    out["Outputs"] = _resolve_ifs(out.get("Outputs") or {}, truth)
    if not out["Outputs"]:
        del out["Outputs"]
    # conditions stay declared (unused ones are valid); resources no longer refer to the false ones
    dest = built.with_name("template.local.json")
    dest.write_text(json.dumps(out, indent=1, default=str))
    return dest


def tool_env(ctx: Ctx) -> dict[str, str]:
    """Environment for sam/samlocal: LocalStack endpoint, fake credentials, python3.11 first on PATH."""
    lay = ctx.layout
    path = os.pathsep.join([str(lay.root / ".venv" / "bin"), str(lay.sam_bin), ctx.env.get("PATH", "/usr/bin:/bin")])
    return ctx.base_env() | AWS_ENV | {
        "PATH": path, "AWS_ENDPOINT_URL": ctx.localstack_url, "SAM_CLI_TELEMETRY": "0",
        "DISABLE_DEPRECATION_NOTICE": "1", "SAM_CLI_CONTACT_ACTION": "0",
    }


def _run(argv: list[str], *, cwd: Path, env: dict[str, str], log: Path, title: str,
         secrets: tuple[str, ...] = ()) -> str:
    """Run a tool, appending its output to ``log``; raise DeployError with the output's tail on failure.

    Every string in ``secrets`` (the admin key, a parameter override) is masked in the log and the error.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    r = subprocess.run(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    out = (r.stdout or "") + (r.stderr or "")
    cmd = " ".join(shlex.quote(a) for a in argv)
    for secret in secrets:
        if secret:
            out, cmd = out.replace(secret, "***"), cmd.replace(secret, "***")
    with open(log, "a") as f:
        f.write(f"\n===== {time.strftime('%H:%M:%S')} {cmd}\n{out}")
    if r.returncode:
        tail = "\n".join(out.strip().splitlines()[-25:])
        raise DeployError(f"{title} failed (exit {r.returncode}, {time.monotonic() - t0:.0f}s). Last lines:\n{tail}")
    return out


def stack_failure_reasons(ctx: Ctx, stack_name: str, region: str, limit: int = 15,
                          since: float | None = None) -> list[str]:
    """Failed events of the stack (those after ``since``, a Unix time): 'LogicalId (Type) STATUS: reason'."""
    import boto3

    cfn = boto3.client("cloudformation", endpoint_url=ctx.localstack_url, region_name=region,
                       aws_access_key_id="test", aws_secret_access_key="test")
    try:
        events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
    except Exception as ex:  # the stack may not exist at all
        return [f"(no stack events: {ex})"]
    out = []
    for e in events:
        ts = e.get("Timestamp")
        if since is not None and ts is not None and ts.timestamp() < since - 1:
            continue
        if "FAILED" in e.get("ResourceStatus", "") or "ROLLBACK" in e.get("ResourceStatus", ""):
            reason = e.get("ResourceStatusReason") or ""
            out.append(f"{e.get('LogicalResourceId')} ({e.get('ResourceType')}) {e.get('ResourceStatus')}: {reason}")
        if len(out) >= limit:
            break
    return out


def create_stack(cfn: Any, stack_name: str, template: dict[str, Any], timeout: float = 240.0) -> dict[str, str]:
    """Create a CloudFormation stack from ``template`` and wait for CREATE_COMPLETE; returns its
    outputs. Used for the small stacks of the benchmarks and the extension's tests (the
    project's own stack goes through SAM in :func:`deploy`). Raises DeployError with the
    failed resources' reasons."""
    cfn.create_stack(StackName=stack_name, TemplateBody=json.dumps(template),
                     Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    deadline = time.monotonic() + timeout
    while True:
        desc = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = desc["StackStatus"]
        if status == "CREATE_COMPLETE":
            return {o["OutputKey"]: o["OutputValue"] for o in desc.get("Outputs", [])}
        if status.endswith("FAILED") or "ROLLBACK" in status or time.monotonic() > deadline:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}"
                       for e in events if "FAILED" in e.get("ResourceStatus", "")]
            raise DeployError(f"stack {stack_name} ended in {status}: {reasons}")
        time.sleep(1)


def named_functions(template: Path | None) -> list[str]:
    """Literal FunctionName values of the (built or localized) template's functions."""
    if template is None or not template.exists():
        return []
    try:
        from cfnlint.decode import decode

        tpl, _ = decode(str(template))
    except Exception:
        return []
    out = []
    for res in ((tpl or {}).get("Resources") or {}).values():
        if isinstance(res, dict) and res.get("Type") in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            name = (res.get("Properties") or {}).get("FunctionName")
            if isinstance(name, str):
                out.append(name)
    return out


#: LocalStack's CloudFormation updates an API Gateway stage by creating it again (localstack
#: issue 13505), so an update that adds or changes routes fails on a running stack.
STAGE_CONFLICT = "Stage already exists"


def release_stage(ctx: Ctx, stack_name: str, region: str, echo=print) -> bool:
    """Delete the stack's REST API stage so the retried update can create it again; the API,
    its id and its routes stay. True when a stage was deleted."""
    import boto3

    kw = dict(endpoint_url=ctx.localstack_url, region_name=region, aws_access_key_id="test",
              aws_secret_access_key="test")
    try:
        resources = boto3.client("cloudformation", **kw).describe_stack_resources(StackName=stack_name)["StackResources"]
        api_id = next(r["PhysicalResourceId"] for r in resources if r["ResourceType"] == "AWS::ApiGateway::RestApi")
        apigw = boto3.client("apigateway", **kw)
        stages = [st["stageName"] for st in apigw.get_stages(restApiId=api_id).get("item", [])]
        for stage in stages:
            apigw.delete_stage(restApiId=api_id, stageName=stage)
    except Exception as exc:  # nothing to release: report the original failure
        echo(f"  could not release the API stage ({type(exc).__name__}: {exc})")
        return False
    echo(f"  LocalStack cannot update an API stage in place (localstack issue 13505): deleted stage(s) "
         f"{', '.join(stages) or '-'} of API {api_id}; deploying again")
    return bool(stages)


def clear_failed_stack(ctx: Ctx, stack_name: str, region: str, echo=print, template: Path | None = None) -> None:
    """A stack whose creation failed (ROLLBACK_COMPLETE and the like) cannot be updated: delete it
    so the deploy starts over, as `sam deploy` would ask a person to do by hand.

    LocalStack's rollback and delete can leave explicitly named Lambda functions behind, which
    makes the next create fail with "Function already exist": those are deleted too (only names
    the template itself declares)."""
    import boto3

    cfn = boto3.client("cloudformation", endpoint_url=ctx.localstack_url, region_name=region,
                       aws_access_key_id="test", aws_secret_access_key="test")
    try:
        status = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
    except Exception:
        return
    if status not in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_FAILED"):
        return
    echo(f"  stack {stack_name} is {status} from an earlier failed deploy: deleting it first")
    cfn.delete_stack(StackName=stack_name)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            st = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]["StackStatus"]
        except Exception:
            return
        if st == "DELETE_COMPLETE":
            break
        time.sleep(1)
    lam = boto3.client("lambda", endpoint_url=ctx.localstack_url, region_name=region,
                       aws_access_key_id="test", aws_secret_access_key="test")
    for name in named_functions(template):
        try:
            lam.delete_function(FunctionName=name)
            echo(f"  removed function {name} left behind by the failed stack")
        except Exception:
            pass


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
    # an explicit --config-file: with --template-file, sam looks for samconfig.toml beside the template
    config_args = ["--config-file", str(project / "samconfig.toml"), "--config-env", "local"] \
        if cfg.get("_has_env") else []
    ov = overrides_for(ctx, admin_key, cfg)
    excluded = excluded_resources(template, ov)

    t0 = time.monotonic()
    echo(f"  sam build (log: {log}){' excluding ' + ', '.join(excluded) if excluded else ''}")
    _run([sam, "build", *config_args, "--template-file", str(template), *sum((["--exclude", r] for r in excluded), [])],
         cwd=project, env=env, log=log, title="sam build")
    t1 = time.monotonic()
    if cfg.get("s3_bucket"):
        ensure_bucket(ctx, cfg["s3_bucket"])
    built = project / ".aws-sam" / "build" / "template.yaml"
    local_tpl = localize_template(built, ov) if built.exists() else None
    clear_failed_stack(ctx, stack_name, region, echo, template=local_tpl or built)
    args = [samlocal, "deploy", *config_args, "--stack-name", stack_name, "--region", region,
            "--no-confirm-changeset", "--no-fail-on-empty-changeset"]
    if local_tpl is not None:
        args += ["--template-file", str(local_tpl)]
    if not cfg.get("s3_bucket") and not cfg.get("resolve_s3"):
        args.append("--resolve-s3")
    if not cfg.get("capabilities"):
        args += ["--capabilities", "CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"]
    args += ["--parameter-overrides", *[f"{k}={v}" for k, v in ov.items()]]
    echo(f"  samlocal deploy --config-env local (stack {stack_name}; build {t1 - t0:.0f}s)")
    for attempt in (1, 2):
        started = time.time()
        try:
            _run(args, cwd=project, env=env, log=log, title="samlocal deploy", secrets=(admin_key,))
            break
        except DeployError as ex:
            reasons = stack_failure_reasons(ctx, stack_name, region, since=started)
            if attempt == 1 and any(STAGE_CONFLICT in r for r in reasons) and release_stage(ctx, stack_name, region, echo):
                continue
            msg = str(ex).replace(admin_key, "***")
            if reasons:
                msg += "\nCloudFormation says:\n  " + "\n  ".join(reasons)
            raise DeployError(msg) from None
    api_url, outputs = api_url_of(ctx, stack_name, region)
    echo(f"  deployed in {time.monotonic() - t0:.0f}s; API: {api_url or '(no REST API in the stack)'}")
    return Deployment(stack_name, api_url, outputs)


if __name__ == "__main__":  # pragma: no cover - debugging aid
    sys.exit("use: python -m movierecs_stack deploy")
