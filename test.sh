#!/usr/bin/env bash
# The whole test suite in one command, on a fresh machine too: installs what is
# missing, builds the `concierto` binary the end-to-end tests run, and runs
# every test of the workspace with cargo-nextest.
#
#   ./test.sh                          # install what is missing, then every test
#   ./test.sh --install-only           # only the installs (.ci/run calls this first)
#   ./test.sh -p concierto-feedback    # other arguments go to `cargo nextest run`
#
# What it installs when missing (apt-get on Debian/Ubuntu, as root or with sudo;
# elsewhere it says what to install and stops):
# - nats-server: the bus tests start their own (NATS_SERVER_BIN overrides);
# - chromium, node and npm, and `buf` + `playwright-core` from npm in .ci/node
#   (`npm ci`, again only when .ci/node/package-lock.json changed): the
#   dashboard's headless-browser test;
# - cargo-nextest (`cargo install --locked`);
# - Python with the pinned tests/python/requirements.txt (gRPC interop, MCP,
#   SMTP) in a virtualenv, ~/.cache/concierto-venv (CONCIERTO_PY_VENV
#   overrides), rebuilt when the pins change; CONCIERTO_PYTHON points at it;
# - promtool (Debian package `prometheus`) for .ci/deploy-check's alert-rule
#   checks; optional: when it cannot be installed the script says so and goes on.
set -euo pipefail
cd "$(dirname "$0")"

install_only=false
if [ "${1:-}" = "--install-only" ]; then
  install_only=true
  shift
fi

log() { printf '\n== %s (%ss)\n' "$*" "$SECONDS"; }

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo)
fi
apt_updated=false
# apt_install PACKAGE...: installs Debian packages, or fails saying what to install.
apt_install() {
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: install $* (no apt-get here), then run ./test.sh again" >&2
    return 1
  fi
  if [ "$apt_updated" = false ]; then
    "${SUDO[@]}" apt-get update -qq
    apt_updated=true
  fi
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"
}

log "tools"
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
  apt_install nats-server
fi
nats-server --version 2>/dev/null || /usr/sbin/nats-server --version

# Chromium for the dashboard's headless-browser test (tests/tests/dashboard_browser.rs),
# driven by playwright-core from .ci/node.
if [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
if ! command -v npm >/dev/null 2>&1; then
  apt_install nodejs npm
fi
# `npm ci` empties node_modules first: run it only when the lock file changed.
if ! cmp -s .ci/node/package-lock.json .ci/node/node_modules/.concierto-lock.json \
  || [ ! -x .ci/node/node_modules/.bin/buf ]; then
  (cd .ci/node && npm ci --no-audit --no-fund --loglevel=error)
  cp .ci/node/package-lock.json .ci/node/node_modules/.concierto-lock.json
fi
echo "buf $(.ci/node/node_modules/.bin/buf --version)"

if ! command -v cargo-nextest >/dev/null 2>&1; then
  cargo install --locked cargo-nextest
fi
cargo nextest --version | head -1

# Python with gRPC for the interop test (tests/tests/python_interop.rs), the MCP
# tests and the SMTP stand-in: the pinned tests/python/requirements.txt in a
# virtualenv under the cache, so a system Python that refuses pip installs
# (PEP 668) is left alone. Rebuilt when the pins change or it no longer works.
PY_VENV="${CONCIERTO_PY_VENV:-$HOME/.cache/concierto-venv}"
PY_REQ=tests/python/requirements.txt
PY_MODULES="import grpc_tools, grpc_reflection, grpc_health, mcp, aiosmtpd"
if ! "$PY_VENV/bin/python3" -c "$PY_MODULES" >/dev/null 2>&1 \
  || ! cmp -s "$PY_REQ" "$PY_VENV/requirements.txt"; then
  if ! command -v python3 >/dev/null 2>&1; then
    apt_install python3 python3-venv
  fi
  rm -rf "$PY_VENV"
  mkdir -p "$(dirname "$PY_VENV")"
  if ! python3 -m venv "$PY_VENV"; then
    # Debian's python3 makes virtualenvs only with python3-venv.
    rm -rf "$PY_VENV"
    apt_install python3-venv
    python3 -m venv "$PY_VENV"
  fi
  "$PY_VENV/bin/pip" install -q --disable-pip-version-check -r "$PY_REQ"
  cp "$PY_REQ" "$PY_VENV/requirements.txt"
fi
export CONCIERTO_PYTHON="$PY_VENV/bin/python3"
"$CONCIERTO_PYTHON" -c "$PY_MODULES; import grpc; print('python', __import__('sys').version.split()[0], 'grpcio', grpc.__version__)"

# promtool checks and unit-tests deploy/prometheus/alerts.yml (.ci/deploy-check);
# optional, so a machine without it still runs the tests.
if ! command -v promtool >/dev/null 2>&1; then
  apt_install prometheus >/dev/null 2>&1 \
    || echo "test.sh: promtool (Debian package prometheus) could not be installed; .ci/deploy-check skips the alert rules"
fi
if command -v promtool >/dev/null 2>&1; then
  promtool --version 2>&1 | head -1
fi

if [ "$install_only" = true ]; then
  exit 0
fi

log "build (the end-to-end tests run this binary)"
cargo build -p concierto --locked

log "tests"
cargo nextest run --workspace --locked "$@"
