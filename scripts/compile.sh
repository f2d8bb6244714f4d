#!/usr/bin/env bash
# Compile the hot path in place with mypyc (setup.py): each compiled module's
# extension (.so) lands beside its .py file, and Python imports it instead.
#   scripts/compile.sh           compile; fails unless the result is the compiled build
#   scripts/compile.sh --clean   remove the extensions: back to pure Python
# scripts/test.sh runs it for the suite's compiled pass. An installed package
# (pip install ., a wheel) is compiled by the build itself; this script is
# for the checkout.
# Env: PYTHON (default: the repo's .venv/bin/python, which has mypy and setuptools).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-$REPO_ROOT/.venv/bin/python}"

log() { printf '[compile.sh] %s\n' "$*" >&2; }

clean() {
    find "$REPO_ROOT/mysqlpool_proxy" -name '*.so' -delete
    rm -rf "$REPO_ROOT/build"
}

if [[ "${1:-}" == "--clean" ]]; then
    clean
    exit 0
fi

clean
log "compiling the hot path with mypyc (setup.py build_ext --inplace; about three minutes)"
started=$SECONDS
if ! (cd "$REPO_ROOT" && MYSQLPOOL_PROXY_COMPILE=1 "$PYTHON" setup.py -q build_ext --inplace >"$REPO_ROOT/build.log" 2>&1); then
    tail -30 "$REPO_ROOT/build.log" >&2
    log "the build failed (whole log: build.log)"
    exit 1
fi
build="$(cd "$REPO_ROOT" && "$PYTHON" -c 'import mysqlpool_proxy, mysqlpool_proxy.proxy.proxy; print(mysqlpool_proxy.BUILD)')"
if [[ "$build" != "compiled" ]]; then
    grep -iE "error|warning" "$REPO_ROOT/build.log" | tail -20 >&2 || true
    log "the build went on without compiling (a C compiler and the Python headers are needed: gcc, python3-dev); whole log: build.log"
    clean
    exit 1
fi
rm -f "$REPO_ROOT/build.log"
log "compiled in $((SECONDS - started)) s"
