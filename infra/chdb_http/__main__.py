"""``python -m chdb_http``: serve a chDB data directory over the ClickHouse HTTP protocol."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys


def _stop(*_: object) -> None:
    """SIGTERM ends serve_forever like Ctrl-C, so the data directory is closed cleanly."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chdb_http",
                                 description="Loopback ClickHouse HTTP endpoint over a chDB data directory.")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; keep it loopback)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("MOVIERECS_CLICKHOUSE_PORT", "18123")))
    ap.add_argument("--data-dir", required=True, help="chDB data directory (created if missing; one process at a time)")
    ap.add_argument("--timezone", default="UTC", help="server timezone (default UTC)")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    os.environ["TZ"] = args.timezone  # chDB takes the server timezone from the process
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.makedirs(args.data_dir, exist_ok=True)
    signal.signal(signal.SIGTERM, _stop)
    from .server import serve

    try:
        serve(args.host, args.port, os.path.abspath(args.data_dir))
    except KeyboardInterrupt:
        pass
    except OSError as ex:
        print(f"chdb_http: cannot serve on {args.host}:{args.port}: {ex}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
