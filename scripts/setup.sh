#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine: system packages, virtualenv, pinned Python
# dependencies, the NaMaster (pymaster) build, cmbml itself and what its HTML reports load offline. One
# terminal line per step with work to do, the steps' own output in .venv/setup.log (shown if a step fails);
# a second call checks stamps.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
NPM_PREFIX="$VENV/share/cmbml/npm"   # NPM_PREFIX in src/cmbml/common/offline_reports.py
PY=${PYTHON:-python3.11}
PYMASTER_VERSION=3.0.1
# The Data Docs' table plugin and the date picker of its filter controls, at the versions that the templates of
# Great Expectations name (for Bootstrap 4); the same pins as NPM_PACKAGES in src/cmbml/common/offline_reports.py.
NPM_PACKAGES="bootstrap-table@1.19.1 bootstrap-datepicker@1.9.0"
APT_PACKAGES="build-essential libgsl-dev libfftw3-dev libcfitsio-dev libchealpix-dev autoconf automake libtool pkg-config chromium libjs-bootstrap4 libjs-jquery fonts-font-awesome postgresql"

LOG="$VENV/setup.log"   # everything the steps print; the terminal gets one line per step

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# step "what" command...: one terminal line; the command's output goes to $LOG. On failure the log of
# this run is shown and the script exits with the command's status.
step() {
  local what=$1 start=$SECONDS status
  shift
  printf '\033[1;34m[setup]\033[0m %s ... ' "$what"
  printf '\n=== %s\n' "$what" >> "$LOG"
  # The command runs in a subshell with errexit of its own: inside `if` or `||`, bash would ignore it.
  set +e
  ( set -e; "$@" ) >> "$LOG" 2>&1
  status=$?
  set -e
  if [ "$status" -ne 0 ]; then
    printf '\033[1;31mFAILED\033[0m (exit %s)\n' "$status"
    printf '\n[setup] log of this run (%s):\n' "$LOG" >&2
    tail -c +"$((RUN_START + 1))" "$LOG" >&2
    exit "$status"
  fi
  printf 'done (%s s)\n' "$((SECONDS - start))"
}

# 1. Debian packages needed to build pymaster (checked once per package list: a stamp in the venv).
missing_debian_packages() {
  local missing="" p
  for p in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  # Debian's own Python splits venv/ensurepip and the headers into packages of their own.
  "$PY" -c "import ensurepip, sysconfig, os; assert os.path.exists(sysconfig.get_paths()['include'] + '/Python.h')" \
    2>/dev/null || missing="$missing python3-venv python3-dev"
  echo "$missing"
}

install_debian_packages() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$@"
}

# 2. Virtualenv (into the folder that already holds the log).
create_venv() {
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --upgrade pip
}

# 4. pymaster: sdist only, and its build wants to download chealpix; point it at Debian's.
build_pymaster() {
  local build src libdir
  build=$(mktemp -d)
  "$VENV/bin/pip" download --no-deps --no-binary pymaster --no-build-isolation "pymaster==$PYMASTER_VERSION" -d "$build"
  tar -xzf "$build"/pymaster-*.tar.gz -C "$build"
  src=$(find "$build" -maxdepth 1 -type d -name 'pymaster-*' | head -n1)
  mkdir -p "$src/_deps/lib" "$src/_deps/include"
  cp /usr/include/chealpix.h "$src/_deps/include/"
  # Debian's static libchealpix.a is not -fPIC: a linker script redirects to the shared one.
  libdir=$(dirname "$(find /usr/lib -name 'libchealpix.so' | head -n1)")
  echo "INPUT($libdir/libchealpix.so)" > "$src/_deps/lib/libchealpix.a"
  (cd "$src" && "$VENV/bin/pip" install --no-deps .)  # setuptools' warnings stay in the log
  rm -rf "$build"
  "$VENV/bin/python" -c "import pymaster"
}

# npm packages into the virtualenv; --save-exact keeps package.json at the pins, not at ranges.
install_npm_packages() {
  mkdir -p "$NPM_PREFIX"
  # shellcheck disable=SC2086  # one argument per package
  npm install --prefix "$NPM_PREFIX" --save-exact --no-audit --no-fund --no-update-notifier $NPM_PACKAGES
}

main() {
  command -v "$PY" >/dev/null || PY=python3
  mkdir -p "$VENV"
  RUN_START=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
  printf '\n##### scripts/setup.sh, %s\n' "$(date -Is)" >> "$LOG"

  if [ "$(cat "$VENV/.debian-packages" 2>/dev/null)" != "$APT_PACKAGES" ]; then
    local missing
    missing=$(missing_debian_packages)
    if [ -n "$missing" ]; then
      # shellcheck disable=SC2086  # one argument per package
      step "installing Debian packages:$missing" install_debian_packages $missing
    fi
    echo "$APT_PACKAGES" > "$VENV/.debian-packages"
  fi

  if [ ! -x "$VENV/bin/python" ]; then
    step "creating virtualenv $VENV" create_venv
  fi

  # 3. Pinned dependencies (re-run only when requirements.txt changes).
  local req_hash
  req_hash=$(sha256sum requirements.txt | cut -c1-16)
  if [ "$(cat "$VENV/.requirements-hash" 2>/dev/null)" != "$req_hash" ]; then
    step "installing pinned dependencies (requirements.txt)" "$VENV/bin/pip" install -r requirements.txt
    echo "$req_hash" > "$VENV/.requirements-hash"
    rm -f "$VENV/share/cmbml/vega-embed.js"  # bundled again below, from the packages now installed
  fi

  # The stamp spares a second call the 2 s of importing pymaster.
  if [ ! -f "$VENV/.pymaster-$PYMASTER_VERSION" ]; then
    if ! "$VENV/bin/python" -c "import pymaster" >> "$LOG" 2>&1; then
      step "building pymaster $PYMASTER_VERSION against Debian's libchealpix" build_pymaster
    fi
    touch "$VENV/.pymaster-$PYMASTER_VERSION"
  fi

  # 5. cmbml itself, editable.
  if ! "$VENV/bin/python" -c "import cmbml" 2>/dev/null || [ pyproject.toml -nt "$VENV/.cmbml-installed" ]; then
    step "installing cmbml (editable)" "$VENV/bin/pip" install --no-deps -e .
    touch "$VENV/.cmbml-installed"
  fi

  # 5b. Vega for `dvc plots show` without network (conf/plots/offline.html loads it from the venv).
  if [ ! -f "$VENV/share/cmbml/vega-embed.js" ]; then
    step "bundling Vega for offline DVC plots" "$VENV/bin/python" -m cmbml.common.offline_reports
  fi

  # 5c. The Data Docs' table plugin, from npm (the stamp is in the folder: removing it installs again).
  if [ "$(cat "$NPM_PREFIX/.cmbml-packages" 2>/dev/null)" != "$NPM_PACKAGES" ]; then
    if ! command -v npm >/dev/null; then
      step "installing Debian package: npm" install_debian_packages npm
    fi
    step "installing $NPM_PACKAGES for the Data Docs (npm)" install_npm_packages
    echo "$NPM_PACKAGES" > "$NPM_PREFIX/.cmbml-packages"
  fi

  # 6. Repository state a fresh clone lacks: external inputs from the committed DVC remote.
  if [ -f data.dvc ] && [ ! -d data ]; then
    step "restoring data/ from the local DVC remote" "$VENV/bin/dvc" pull data.dvc
  fi
  log "ready ($VENV; set-up log $LOG)"
}

# Sourced (by a test), the script only defines its functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  main "$@"
fi
