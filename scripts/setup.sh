#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian machine: system packages, virtualenv, pinned Python
# dependencies, the NaMaster (pymaster) build, cmbml itself and what its HTML reports load offline. One
# terminal line per step with work to do, the steps' own output in .venv/setup.log (shown if a step fails);
# a second call checks stamps.
#
# The deep-learning stack comes in two pinned builds: requirements.txt (tensorflow_cpu) and requirements/gpu.txt
# (tensorflow[and-cuda] and its CUDA wheels, written from requirements.txt by scripts/lock_gpu.py). CMBML_DEVICE
# picks one: auto (the default: GPU where `nvidia-smi -L` lists a GPU), gpu or cpu.
#   bash scripts/setup.sh --print-plan   prints the build this machine would get, and installs nothing
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

CPU_LOCK=requirements.txt
GPU_LOCK=requirements/gpu.txt
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

# The build for CMBML_DEVICE and this machine: sets BUILD (gpu|cpu), REQUIREMENTS (its lock), BUILD_REASON and
# BUILD_WARNING (empty unless a forced GPU build has no GPU to run on). An invalid value returns 2.
choose_build() {
  local device=${CMBML_DEVICE:-auto}
  BUILD_WARNING=""
  case "$device" in
    auto)
      if gpu_present; then BUILD=gpu; BUILD_REASON="auto: nvidia-smi lists $GPU_FOUND"
      else BUILD=cpu; BUILD_REASON="auto: no NVIDIA GPU ($GPU_FOUND)"; fi ;;
    gpu)
      BUILD=gpu BUILD_REASON="forced by CMBML_DEVICE=gpu"
      gpu_present || BUILD_WARNING="CMBML_DEVICE=gpu but no NVIDIA GPU ($GPU_FOUND): installing the GPU build anyway" ;;
    cpu)
      BUILD=cpu BUILD_REASON="forced by CMBML_DEVICE=cpu" ;;
    *)
      echo "[setup] CMBML_DEVICE must be auto, gpu or cpu, not '$device'" >&2
      return 2 ;;
  esac
  if [ "$BUILD" = gpu ]; then REQUIREMENTS=$GPU_LOCK; else REQUIREMENTS=$CPU_LOCK; fi
}

# An NVIDIA GPU is one that `nvidia-smi -L` lists ("GPU 0: NVIDIA H200 (UUID: ...)"); an nvidia-smi whose driver is
# not loaded exits non-zero. GPU_FOUND says what was seen. The timeout guards against a hung driver.
gpu_present() {
  local out line
  if ! command -v nvidia-smi >/dev/null; then GPU_FOUND="no nvidia-smi on PATH"; return 1; fi
  if ! out=$(timeout 30 nvidia-smi -L 2>/dev/null); then GPU_FOUND="nvidia-smi -L failed"; return 1; fi
  while IFS= read -r line; do
    if [[ $line == "GPU "* ]]; then GPU_FOUND=$line; return 0; fi
  done <<< "$out"
  GPU_FOUND="nvidia-smi -L lists no GPU"
  return 1
}

# Normalized names (PEP 503) of the packages a lock pins, one a line, sorted.
lock_names() {
  sed -nE 's/^([A-Za-z0-9._-]+)(\[[^]]*\])?==.*/\1/p' "$1" | tr 'A-Z_.' 'a-z--' | sort -u
}

# 3. Pinned dependencies from the chosen build's lock. Both TensorFlow builds install the `tensorflow` module, so
# what only the other lock pins is uninstalled first (pip skips what is not installed). The stamp records the build
# and the lock's hash: a second call with the same choice runs no pip; another choice or a changed lock installs.
install_locked_dependencies() {
  local want other remove
  want="$BUILD $REQUIREMENTS $(sha256sum "$REQUIREMENTS" | cut -c1-16)"
  [ "$(cat "$VENV/.requirements-hash" 2>/dev/null)" != "$want" ] || return 0
  log "deep-learning build: $BUILD ($BUILD_REASON)"
  [ -z "$BUILD_WARNING" ] || log "warning: $BUILD_WARNING" >&2
  if [ "$BUILD" = gpu ]; then other=$CPU_LOCK; else other=$GPU_LOCK; fi
  remove=$(comm -23 <(lock_names "$other") <(lock_names "$REQUIREMENTS") | tr '\n' ' ')
  # shellcheck disable=SC2086  # one argument per package
  step "installing pinned dependencies ($REQUIREMENTS, $BUILD build)" sync_requirements "$REQUIREMENTS" $remove
  echo "$want" > "$VENV/.requirements-hash"
  rm -f "$VENV/share/cmbml/vega-embed.js"  # bundled again below, from the packages now installed
}

# sync_requirements LOCK [PACKAGE...]: uninstall the packages, then install the lock.
sync_requirements() {
  local lock=$1
  shift
  if [ "$#" -gt 0 ]; then "$VENV/bin/pip" uninstall -y "$@"; fi
  "$VENV/bin/pip" install -r "$lock"
}

# --print-plan: the build this machine would get, on stdout; nothing is installed or written.
print_plan() {
  choose_build || exit
  printf 'build: %s\nrequirements: %s\nreason: %s\n' "$BUILD" "$REQUIREMENTS" "$BUILD_REASON"
  [ -z "$BUILD_WARNING" ] || echo "[setup] warning: $BUILD_WARNING" >&2
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
  case "${1:-}" in
    "") ;;
    --print-plan) print_plan; return ;;
    *) echo "usage: bash scripts/setup.sh [--print-plan]" >&2; exit 2 ;;
  esac
  choose_build || exit  # an invalid CMBML_DEVICE stops before anything is installed
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

  install_locked_dependencies

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
