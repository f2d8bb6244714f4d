#!/usr/bin/env bash
# THE benchmark command: bench/run.sh [--quick] [--only WORKLOAD[,...]] [--rounds N] [--out DIR] [--no-floor]
#
# Makes sure the machine can run it, then runs `python -m bench.run "$@"`:
#   1. system packages: sysbench, haproxy (the C floor leg), mariadbd
#      (mariadb-server), the mariadb client; installed with apt-get when
#      running as root, otherwise named with the command to install them
#      (without sysbench the sysbench rows are skipped and the Python load
#      generator's rows remain; without haproxy its legs are skipped);
#   2. .venv in the repo with `pip install -e '.[bench]'` (matplotlib,
#      psutil) when those are missing.
# Results: bench/results/<timestamp>/ (results.md, results.json, *.png).
# Env: PYTHON (interpreter for a new venv, default python3).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
PYTHON="${PYTHON:-python3}"
SBIN_DIRS=(/usr/sbin /usr/local/sbin /usr/local/mysql/bin)

log() { printf '[bench/run.sh] %s\n' "$*" >&2; }
die() { printf '[bench/run.sh] ERROR: %s\n' "$*" >&2; exit 1; }

have_program() {
    local found dir
    found="$(command -v "$1" 2>/dev/null)" && [[ -x "$found" ]] && return 0
    for dir in "${SBIN_DIRS[@]}"; do
        [[ -x "$dir/$1" ]] && return 0
    done
    return 1
}

missing_packages() {
    have_program sysbench || echo sysbench
    have_program haproxy || echo haproxy
    have_program mariadbd || echo mariadb-server
    have_program mariadb-install-db || echo mariadb-server
    have_program mariadb || echo mariadb-client
}

ensure_packages() {
    local missing
    missing="$(missing_packages | sort -u | tr '\n' ' ')"
    missing="${missing% }"
    [[ -z "$missing" ]] && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        export DEBIAN_FRONTEND=noninteractive
        log "apt-get install -y --no-install-recommends $missing"
        apt-get update -qq
        # shellcheck disable=SC2086  # word splitting of the package list is intended
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
        return 0
    fi
    case " $missing " in
        *" mariadb-server "*)
            die "mariadbd is missing; install it (as root): apt-get install -y mariadb-server mariadb-client sysbench haproxy" ;;
    esac
    log "missing: $missing (install as root: apt-get install -y $missing); their rows or legs will be skipped"
}

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$PYTHON" -m venv "$VENV" || die "could not create $VENV (apt-get install -y python3-venv?)"
    fi
    if ! "$VENV/bin/python" -c 'import matplotlib, psutil, aiomysql, pymysql, mysqlpool_proxy' >/dev/null 2>&1; then
        log "pip install -e '.[bench]' into $VENV"
        (cd "$REPO_ROOT" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[bench]') \
            || die "pip install -e '.[bench]' failed (see above)"
    fi
}

ensure_packages
ensure_venv
cd "$REPO_ROOT"
exec "$VENV/bin/python" -m bench.run "$@"
