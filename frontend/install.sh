#!/usr/bin/env bash
# Installs what the web frontend needs, into project-local folders. Idempotent and quick when
# nothing changed (each step keeps a stamp of its inputs). `infra/install.sh` calls it on every
# `make up`.
#   - .movierecs/venvs/frontend: Python 3.11 venv from infra/requirements/frontend.txt (Reflex)
#   - frontend/node_modules: bun from the npm registry (`npm ci`), so Reflex never downloads it
#   - /usr/bin/chromium (Debian) for the browser tests (tests/e2e/test_frontend.py)
#   - frontend/.web: Reflex's compiled app and its JS packages (a warm-up export on a fresh
#     checkout, so that serve.sh only recompiles and rebuilds)
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
    exit 0
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$ROOT/.movierecs/venvs/frontend"
REQ="$ROOT/infra/requirements/frontend.txt"
LOG="$ROOT/.movierecs/logs/install-frontend.log"
PYTHON="${MOVIERECS_PYTHON311:-python3.11}"
mkdir -p "$ROOT/.movierecs/logs"

say() { echo "[frontend] $*"; }
stamp_ok() { [[ -f "$1" && "$(cat "$1")" == "$2" ]]; }

# 1. Python venv with Reflex.
if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
want="$(cat "$REQ" "${REQ%.txt}.lock" | sha256sum | cut -d' ' -f1)"
if ! stamp_ok "$VENV/.requirements.sha256" "$want"; then
    say "pip install -r infra/requirements/frontend.txt (log: $LOG)"
    "$VENV/bin/pip" install -q -r "$REQ" -c "${REQ%.txt}.lock" >>"$LOG" 2>&1 || { tail -20 "$LOG" >&2; exit 1; }
    echo "$want" >"$VENV/.requirements.sha256"
fi

# 2. bun from the npm registry.
want="$(cat "$HERE/package.json" "$HERE/package-lock.json" | sha256sum | cut -d' ' -f1)"
if ! stamp_ok "$HERE/node_modules/.stamp" "$want" || ! "$HERE/node_modules/.bin/bun" --version >/dev/null 2>&1; then
    say "npm ci (bun)"
    (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error) >>"$LOG" 2>&1 || { tail -20 "$LOG" >&2; exit 1; }
    echo "$want" >"$HERE/node_modules/.stamp"
fi

# 3. Chromium for the browser tests (Debian's; Playwright never downloads a browser here).
if [[ ! -x /usr/bin/chromium ]]; then
    if [[ "$(id -u)" -eq 0 ]]; then
        say "apt-get install chromium"
        export DEBIAN_FRONTEND=noninteractive
        if ! apt-get install -y -qq chromium >>"$LOG" 2>&1; then
            apt-get update -qq >>"$LOG" 2>&1
            apt-get install -y -qq chromium >>"$LOG" 2>&1 || { tail -20 "$LOG" >&2; exit 1; }
        fi
    else
        say "warning: /usr/bin/chromium missing and not root: browser tests will fail" >&2
    fi
fi

# 4. Warm Reflex's frontend (its JS packages via bun, into frontend/.web) on a fresh checkout
#    only. Later builds are serve.sh's job (`reflex run --env prod` compiles and builds at every
#    start): rebuilding .web here would swap the bundle under a running server.
if [[ ! -f "$HERE/.web/.movierecs-warm" ]]; then
    say "warming the Reflex build (reflex export --frontend-only)"
    (
        cd "$HERE"
        export REFLEX_TELEMETRY_ENABLED=false REFLEX_CHECK_LATEST_VERSION=0
        export REFLEX_HTTP_CLIENT_BIND_ADDRESS=0.0.0.0
        export NPM_CONFIG_REGISTRY="${NPM_CONFIG_REGISTRY:-$(npm config get registry)}"
        export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
        unset REFLEX_USE_NPM
        export PATH="$HERE/node_modules/.bin:$VENV/bin:$PATH"
        rm -rf "$HERE/.export-tmp" "$HERE/.web/build"
        "$VENV/bin/reflex" export --frontend-only --no-zip --zip-dest-dir "$HERE/.export-tmp" \
            --loglevel warning
        rm -rf "$HERE/.export-tmp"
    ) >>"$LOG" 2>&1 || { tail -30 "$LOG" >&2; exit 1; }
    # reflex export can report a problem and still exit 0: check that it built.
    [[ -f "$HERE/.web/build/client/index.html" ]] || { echo "reflex export built nothing:" >&2; tail -30 "$LOG" >&2; exit 1; }
    date -u +%FT%TZ >"$HERE/.web/.movierecs-warm"
fi
say "ready"
