"""`python -m s3lite --port N --data-dir DIR`: run the loopback S3 server until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from .server import S3LiteServer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m s3lite",
                                 description="Disk-backed S3-compatible server for Tansu (127.0.0.1 only, "
                                             "signatures are not verified).")
    ap.add_argument("--port", type=int, default=19000, help="TCP port on 127.0.0.1 (default 19000)")
    ap.add_argument("--data-dir", type=Path, required=True, help="folder holding buckets and objects")
    ap.add_argument("--fsync", action="store_true", help="fsync every object before acknowledging it")
    ap.add_argument("--access-log", action="store_true", help="log one line per request (method, path, status)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        srv = S3LiteServer(args.data_dir, port=args.port, fsync=args.fsync, access_log=args.access_log)
    except OSError as e:
        print(f"s3lite: cannot listen on 127.0.0.1:{args.port}: {e}. Pick another port with --port.",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: srv.request_stop())
    logging.getLogger("s3lite").info("listening on http://127.0.0.1:%d, data in %s (%d objects)",
                                     srv.port, args.data_dir, srv.object_count())
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
