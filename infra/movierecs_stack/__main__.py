"""``python -m movierecs_stack {up,down,status,deploy}``: the local cloud in one command."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .deploy import DeployError
from .services import ServiceError
from .stack import Stack, say


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m movierecs_stack",
                                 description="Run the MovieRecs local cloud (PostgreSQL, chDB ClickHouse endpoint, "
                                             "LocalStack, Apache Kafka, frontend) on 127.0.0.1 without Docker.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start everything (keeps what already runs), deploy, bootstrap data, "
                                   "write .movierecs/endpoints.json")
    up.add_argument("--no-deploy", action="store_true", help="start the services only")
    up.add_argument("--no-bootstrap", action="store_true", help="skip the data bootstrap step")
    sub.add_parser("down", help="stop every process the stack started (by pid) and wait for its ports")
    sub.add_parser("status", help="each service's pid, port, RSS and health check; exit 1 if anything is unhealthy")
    dep = sub.add_parser("deploy", help="sam build + samlocal deploy to the running LocalStack; rewrite endpoints.json")
    dep.add_argument("--project-dir", type=Path, default=None,
                     help="folder holding template.yaml and samconfig.toml (default: the repository)")
    args = ap.parse_args(argv)
    stack = Stack.create()
    try:
        if args.cmd in ("up", "down", "deploy"):
            stack.lock()  # one up/down/deploy at a time: several people share this checkout
        if args.cmd == "up":
            stack.up(deploy_app=not args.no_deploy, bootstrap=not args.no_bootstrap)
        elif args.cmd == "down":
            return 0 if stack.down() else 1
        elif args.cmd == "status":
            return 0 if stack.status() else 1
        elif args.cmd == "deploy":
            stack.deploy(project=args.project_dir)
    except (ServiceError, DeployError) as ex:
        say(f"ERROR: {ex}")
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
