"""Deploy helpers: parameter overrides, condition evaluation, the localized template, schema splitting."""
from __future__ import annotations

import json
from pathlib import Path

from movierecs_stack.config import Layout
from movierecs_stack.deploy import (_eval_condition, excluded_resources, localize_template, overrides_for,
                                    parse_overrides, read_samconfig)
from movierecs_stack.services import Ctx, split_sql

ROOT = Path(__file__).resolve().parents[2]

TEMPLATE = """
AWSTemplateFormatVersion: "2010-09-09"
Parameters:
  Target: {Type: String, Default: aws}
  Stage: {Type: String, Default: v1}
Conditions:
  IsAws: !Equals [!Ref Target, aws]
  IsLocal: !Not [!Condition IsAws]
  LocalV1: !And [!Condition IsLocal, !Equals [!Ref Stage, v1]]
Resources:
  Both:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !If [IsAws, real, local]
      Tags:
        - !If [IsAws, {Key: a, Value: b}, !Ref AWS::NoValue]
  OnlyAws:
    Type: AWS::SQS::Queue
    Condition: IsAws
  OnlyLocal:
    Type: AWS::SQS::Queue
    Condition: LocalV1
Outputs:
  AwsOut: {Condition: IsAws, Value: !Ref OnlyAws}
  Always: {Value: !If [IsAws, !Ref OnlyAws, !Ref OnlyLocal]}
"""


def test_parse_overrides_string_and_list():
    assert parse_overrides('Target=local A="x y" B=1=2') == {"Target": "local", "A": "x y", "B": "1=2"}
    assert parse_overrides(["K=V", "junk"]) == {"K": "V"}
    assert parse_overrides(None) == {}


def test_overrides_carry_the_four_endpoints_and_target(tmp_path):
    ctx = Ctx(Layout(root=tmp_path), {"MOVIERECS_KAFKA_PORT": "29092"})
    ov = overrides_for(ctx, "k" * 20, {"parameter_overrides": "Target=aws Extra=1"})
    assert ov == {"Target": "local", "Extra": "1", "ClickHouseUrl": "http://127.0.0.1:18123",
                  "PostgresDsn": "postgresql://movierecs@127.0.0.1:15432/movierecs",
                  "KafkaBootstrap": "127.0.0.1:29092", "AdminApiKey": "k" * 20}


def test_condition_evaluation():
    conds = {"A": {"Fn::Equals": [{"Ref": "T"}, "x"]}, "B": {"Fn::Not": [{"Condition": "A"}]},
             "C": {"Fn::Or": [{"Condition": "A"}, {"Condition": "B"}]}}
    assert _eval_condition({"Condition": "A"}, conds, {"T": "x"}) is True
    assert _eval_condition({"Condition": "B"}, conds, {"T": "x"}) is False
    assert _eval_condition({"Condition": "C"}, conds, {"T": "y"}) is True


def test_excluded_and_localized_template(tmp_path):
    tpl = tmp_path / "template.yaml"
    tpl.write_text(TEMPLATE)
    assert excluded_resources(tpl, {"Target": "local"}) == ["OnlyAws"]
    assert excluded_resources(tpl, {}) == ["OnlyLocal"]  # defaults: Target=aws
    out = localize_template(tpl, {"Target": "local"})
    assert out is not None and out.name == "template.local.json"
    doc = json.loads(out.read_text())
    assert set(doc["Resources"]) == {"Both", "OnlyLocal"}
    assert doc["Resources"]["Both"]["Properties"] == {"QueueName": "local", "Tags": []}
    assert doc["Outputs"] == {"Always": {"Value": {"Ref": "OnlyLocal"}}}


def test_samconfig_local_environment():
    cfg = read_samconfig(ROOT)
    if not (ROOT / "samconfig.toml").exists():
        assert cfg == {}
        return
    assert cfg["_has_env"] is True
    assert cfg.get("stack_name")


def test_split_sql_and_shipped_schemas():
    assert split_sql("-- c\nSELECT 1;\nSELECT\n 2;\n") == ["SELECT 1", "SELECT\n 2"]
    ch = split_sql((ROOT / "infra/sql/clickhouse.sql").read_text())
    assert ch[0].startswith("CREATE DATABASE IF NOT EXISTS movierecs")
    names = {s.split("movierecs.")[1].split()[0] for s in ch[1:]}
    assert names == {"ratings", "likes", "dead_letters", "requests", "impressions"}  # (likes twice: its CREATE and the type column)
    assert all("IF NOT EXISTS" in s for s in ch)
    pg = split_sql((ROOT / "infra/sql/postgres.sql").read_text())
    assert all("IF NOT EXISTS" in s for s in pg)
    tables = {s.split("EXISTS")[1].split()[0] for s in pg if s.startswith("CREATE TABLE")}
    assert tables == {"movies", "users", "user_events", "user_ratings", "deleted_users", "serving_backfill", "experiments"}


def test_tool_output_and_command_are_masked(tmp_path):
    import sys

    import pytest

    from movierecs_stack.deploy import DeployError, _run

    log = tmp_path / "deploy.log"
    secret = "s3cr3t-admin-key-value"
    out = _run([sys.executable, "-c", f"print('AdminApiKey={secret}')", f"AdminApiKey={secret}"], cwd=tmp_path,
               env={}, log=log, title="t", secrets=(secret,))
    assert secret not in out and "AdminApiKey=***" in out
    with pytest.raises(DeployError) as ei:
        _run([sys.executable, "-c", f"import sys; print('{secret}'); sys.exit(2)"], cwd=tmp_path, env={}, log=log,
             title="failing tool", secrets=(secret,))
    assert secret not in str(ei.value) and "failing tool failed (exit 2" in str(ei.value)
    assert secret not in log.read_text()


def test_fingerprints_follow_code_and_settings(tmp_path):
    from movierecs_stack.services import LOCALSTACK, files_digest

    ext = tmp_path / "infra" / "localstack_ext" / "pkg"
    ext.mkdir(parents=True)
    (ext / "a.py").write_text("x = 1")
    ctx = Ctx(Layout(root=tmp_path), {})
    fp1 = LOCALSTACK.fingerprint(ctx)
    assert fp1 == LOCALSTACK.fingerprint(ctx)
    (ext / "a.py").write_text("x = 2")
    fp2 = LOCALSTACK.fingerprint(ctx)
    assert fp2 != fp1
    assert LOCALSTACK.fingerprint(Ctx(Layout(root=tmp_path), {"MOVIERECS_KAFKA_PORT": "1234"})) != fp2
    (ext / "__pycache__").mkdir()
    (ext / "__pycache__" / "a.py").write_text("ignored")
    assert LOCALSTACK.fingerprint(ctx) == fp2
    assert files_digest(tmp_path / "missing.sh") != files_digest(tmp_path / "missing2.sh")


def test_named_functions(tmp_path):
    from movierecs_stack.deploy import named_functions

    tpl = tmp_path / "t.yaml"
    tpl.write_text("Resources:\n  A: {Type: AWS::Serverless::Function, Properties: {FunctionName: movierecs-a}}\n"
                   "  B: {Type: AWS::Lambda::Function, Properties: {FunctionName: !Sub '${AWS::StackName}-b'}}\n"
                   "  C: {Type: AWS::SQS::Queue, Properties: {QueueName: q}}\n")
    assert named_functions(tpl) == ["movierecs-a"]
    assert named_functions(tmp_path / "missing.yaml") == [] and named_functions(None) == []
