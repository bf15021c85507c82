#!/usr/bin/env bash
# Installs everything MovieRecs needs into project-local folders (idempotent).
#
#   .venv/                       Python 3.11: functions, layers, tests, bench (infra/requirements/project.txt,
#                                then the project itself: `pip install -e .`, see pyproject.toml)
#   .movierecs/venvs/localstack  Python 3.13: LocalStack 2026.3.0 + infra/localstack_ext
#   .movierecs/venvs/sam         aws-sam-cli + samlocal
#   .movierecs/kafka/libs        Apache Kafka broker jars (infra/kafka/pom.xml, via Maven; needs Java 17)
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

# --- Apache Kafka (the local broker: jars from Maven Central, run on the machine's Java 17) ---------
# infra/kafka/pom.xml pins the version; Maven copies the broker and its runtime dependencies
# into .movierecs/kafka/libs (its own repository cache in .movierecs/cache/m2).
need_java() {
  local v
  command -v java >/dev/null 2>&1 || die "Java is missing: the Kafka broker needs a Java 17 runtime. Install it ('apt-get install -y openjdk-17-jre-headless', or any JDK 17+ on PATH) and re-run 'make up'."
  v="$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [ "${v%%.*}" -ge 17 ] 2>/dev/null || die "Java $v found ($(command -v java)), but the Kafka broker needs Java 17 or newer. Install openjdk-17-jre-headless (or put a JDK 17+ first on PATH) and re-run 'make up'."
}
need_java
H="$(inputs_hash infra/kafka/pom.xml)"
if ! stamp_ok kafka "$H" || [ ! -d "$STATE/kafka/libs" ]; then
  command -v mvn >/dev/null 2>&1 || die "Maven (mvn) is missing: it fetches the Kafka broker's jars from Maven Central. Install it ('apt-get install -y maven') and re-run 'make up'."
  say "fetching Apache Kafka $(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' infra/kafka/pom.xml) from Maven Central (log: $LOGS/mvn-kafka.log)"
  rm -rf "$STATE/kafka/libs.tmp"
  if ! mvn -B -q -f infra/kafka/pom.xml -Dmaven.repo.local="$STATE/cache/m2" \
        dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$STATE/kafka/libs.tmp" \
        >>"$LOGS/mvn-kafka.log" 2>&1; then
    tail -n 20 "$LOGS/mvn-kafka.log" >&2
    rm -rf "$STATE/kafka/libs.tmp"
    die "Maven could not fetch the Kafka broker (infra/kafka/pom.xml; full log: $LOGS/mvn-kafka.log). Check that Maven Central is reachable, then re-run 'make up'."
  fi
  rm -rf "$STATE/kafka/libs" && mv "$STATE/kafka/libs.tmp" "$STATE/kafka/libs"
  stamp_write kafka "$H"
fi
# Tansu (the broker before Apache Kafka) is no longer used
rm -f "$STATE/bin/tansu" "$STAMPS/tansu"

# --- frontend ---------------------------------------------------------------------------------------
if [ -f frontend/install.sh ]; then
  command -v npm >/dev/null 2>&1 || die "npm not found: the frontend needs Node.js and npm (Debian: 'apt-get install -y nodejs npm')."
  say "frontend/install.sh"
  bash frontend/install.sh
fi

say "everything installed (stamps in $STAMPS)"
