#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine: system packages, virtualenv, pinned
# Python dependencies, the NaMaster (pymaster) build and cmbml itself.
# A second call only checks stamps and returns in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=${PYTHON:-python3.11}
PYMASTER_VERSION=3.0.1
APT_PACKAGES="build-essential libgsl-dev libfftw3-dev libcfitsio-dev libchealpix-dev autoconf automake libtool pkg-config"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
# pip, quieter: drop the per-package notices about local index folders some images configure
pip_q() { "$VENV/bin/pip" "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

# 1. Debian packages needed to build pymaster.
missing=""
for p in $APT_PACKAGES; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
command -v "$PY" >/dev/null || PY=python3
# Debian's own Python splits venv/ensurepip and the headers into packages of their own.
"$PY" -c "import ensurepip, sysconfig, os; assert os.path.exists(sysconfig.get_paths()['include'] + '/Python.h')" \
  2>/dev/null || missing="$missing python3-venv python3-dev"
if [ -n "$missing" ]; then
  log "installing Debian packages:$missing"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

# 2. Virtualenv.
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi

# 3. Pinned dependencies (re-run only when requirements.txt changes).
req_hash=$(sha256sum requirements.txt | cut -c1-16)
if [ "$(cat "$VENV/.requirements-hash" 2>/dev/null)" != "$req_hash" ]; then
  log "installing pinned dependencies (requirements.txt)"
  pip_q install -q -r requirements.txt
  echo "$req_hash" > "$VENV/.requirements-hash"
fi

# 4. pymaster: sdist only, and its build wants to download chealpix; point it at Debian's.
if ! "$VENV/bin/python" -c "import pymaster" 2>/dev/null; then
  log "building pymaster $PYMASTER_VERSION against Debian's libchealpix"
  build=$(mktemp -d)
  pip_q download -q --no-deps --no-binary pymaster --no-build-isolation "pymaster==$PYMASTER_VERSION" -d "$build"
  tar -xzf "$build"/pymaster-*.tar.gz -C "$build"
  src=$(find "$build" -maxdepth 1 -type d -name 'pymaster-*' | head -n1)
  mkdir -p "$src/_deps/lib" "$src/_deps/include"
  cp /usr/include/chealpix.h "$src/_deps/include/"
  # Debian's static libchealpix.a is not -fPIC: a linker script redirects to the shared one.
  libdir=$(dirname "$(find /usr/lib -name 'libchealpix.so' | head -n1)")
  echo "INPUT($libdir/libchealpix.so)" > "$src/_deps/lib/libchealpix.a"
  (cd "$src" && pip_q install -q --no-deps . 2>&1 | grep -v -i -E "warning|!!|\*\*\*|^ *$|license|classifier|setuptools|deprecat|See https|By 20" || true)
  rm -rf "$build"
  "$VENV/bin/python" -c "import pymaster" 
fi

# 5. cmbml itself, editable.
if ! "$VENV/bin/python" -c "import cmbml" 2>/dev/null || [ pyproject.toml -nt "$VENV/.cmbml-installed" ]; then
  log "installing cmbml (editable)"
  pip_q install -q --no-deps -e .
  touch "$VENV/.cmbml-installed"
fi

# 6. Repository state a fresh clone lacks: external inputs from the committed DVC remote.
if [ -f data.dvc ] && [ ! -d data ]; then
  log "restoring data/ from the local DVC remote"
  "$VENV/bin/dvc" pull -q data.dvc
fi
log "ready ($VENV)"
