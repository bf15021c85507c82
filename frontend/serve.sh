#!/usr/bin/env bash
# Serves the MovieRecs web frontend: Reflex prod mode, frontend and backend on ONE port,
# bound to 127.0.0.1 only. `make up` starts this in the background and stops it by pid,
# so it ends with `exec` into the server process.
#
# Env: MOVIERECS_API_URL (API Gateway base URL), MOVIERECS_FRONTEND_PORT (default 13000),
#      MOVIERECS_ADMIN_API_KEY (used only by the Reflex backend, never sent to the browser).
set -euo pipefail
if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | grep '^#' | sed 's/^# \{0,1\}//'
    exit 0
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
VENV="$ROOT/.movierecs/venvs/frontend"

if [[ ! -x "$VENV/bin/reflex" || ! -x "$HERE/node_modules/.bin/bun" ]]; then
    echo "frontend not installed: run \`bash frontend/install.sh\` (or \`make up\`)" >&2
    exit 1
fi
if [[ -z "${MOVIERECS_API_URL:-}" ]]; then
    echo "warning: MOVIERECS_API_URL is not set; falling back to .movierecs/endpoints.json" >&2
fi

export MOVIERECS_FRONTEND_PORT="${MOVIERECS_FRONTEND_PORT:-13000}"
# Keep Reflex off the internet (each of these was seen making a call otherwise).
export REFLEX_TELEMETRY_ENABLED=false
export REFLEX_CHECK_LATEST_VERSION=0
export REFLEX_HTTP_CLIENT_BIND_ADDRESS=0.0.0.0
export NPM_CONFIG_REGISTRY="${NPM_CONFIG_REGISTRY:-$(npm config get registry)}"
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
unset REFLEX_USE_NPM
# bun comes from the npm registry (frontend/node_modules), never Reflex's own download.
export REFLEX_BUN_PATH="$HERE/node_modules/.bin/bun"
export PATH="$HERE/node_modules/.bin:$VENV/bin:$PATH"

cd "$HERE"
exec "$VENV/bin/reflex" run --env prod --backend-host 127.0.0.1 \
    --frontend-port "$MOVIERECS_FRONTEND_PORT" --backend-port "$MOVIERECS_FRONTEND_PORT" \
    --loglevel info
