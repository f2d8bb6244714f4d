#!/usr/bin/env bash
# THE test command: ./scripts/test.sh [pytest args]   (default: the whole tests/ suite)
#
# Makes a fresh Debian machine (only python3 present) able to run the suite,
# then runs pytest from the repo's .venv:
#   1. system packages: mariadbd + mariadb-install-db (mariadb-server), the
#      mariadb client, nft (nftables: the fault relay's blackhole), promtool
#      (prometheus: the alert rules' check), and what
#      building mysqlclient needs (gcc, libc6-dev, pkg-config, libmariadb-dev,
#      python3-dev), and the other languages' drivers that
#      tests/integration/test_drivers_other_languages.py runs (Go with
#      go-sql-driver/mysql, a JDK with MariaDB Connector/J, Node.js and npm,
#      PHP with mysqli and PDO), and chromium (the status page's headless
#      browser test); installed with apt-get when
#      running as root, otherwise listed with the command to install them;
#   2. .venv in the repo (python3 -m venv) with `pip install -e '.[test]'`
#      (MYSQLPOOL_PROXY_COMPILE=0: the editable install stays pure Python),
#      skipped when a stamp shows pyproject.toml is unchanged;
#   3. `npm ci` in tests/drivers/node (mysql2, pinned by its package-lock.json)
#      when its node_modules is missing or older than the lock file;
#   4. pytest from .venv. Given arguments, `pytest "$@"` on pure Python (the
#      checkout as it is; MYSQLPOOL_PROXY_COMPILE=1: compiled first). Without,
#      the whole suite in two passes: pure Python for the unit, protocol and
#      static tests and the performance guard; then the hot path compiled
#      with mypyc (scripts/compile.sh, as an installed package is built) for
#      the whole suite again, unit tests included, so both builds pass the
#      same tests. MYSQLPOOL_PROXY_COMPILE=0: the second pass on pure Python
#      too (a machine without a C compiler). The extensions compiled in place
#      are removed on exit.
# The tests start their own private mariadbd servers; nothing else is needed.
# Env: PYTHON (interpreter for the venv, default python3),
#      MYSQL_TEST_URL (use an existing test server instead of private ones).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$REPO_ROOT/.venv"
STAMP="$VENV/.test-deps.stamp"
PYTHON="${PYTHON:-python3}"
SBIN_DIRS=(/usr/sbin /usr/local/sbin /usr/local/mysql/bin)
APT_UPDATED=0
GO_MYSQL_DRIVER=/usr/share/gocode/src/github.com/go-sql-driver/mysql
MARIADB_JAR=/usr/share/java/mariadb-java-client.jar
NODE_DRIVERS="$REPO_ROOT/tests/drivers/node"

log() { printf '[test.sh] %s\n' "$*" >&2; }
die() { printf '[test.sh] ERROR: %s\n' "$*" >&2; exit 1; }

have_program() {
    local found dir
    found="$(command -v "$1" 2>/dev/null)" && [[ -x "$found" ]] && return 0
    for dir in "${SBIN_DIRS[@]}"; do
        [[ -x "$dir/$1" ]] && return 0
    done
    return 1
}

# The names mysqlclient's build looks up with pkg-config.
have_mariadb_client_lib() {
    have_program pkg-config || return 1
    pkg-config --exists mysqlclient || pkg-config --exists mariadb
}

python_has_headers() {
    "$PYTHON" - <<'EOF' 2>/dev/null
import os, sys, sysconfig
sys.exit(0 if os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")) else 1)
EOF
}

php_has_mysql_drivers() {
    have_program php || return 1
    php -r 'exit(extension_loaded("mysqli") && extension_loaded("pdo_mysql") ? 0 : 1);' >/dev/null 2>&1
}

python_can_make_venv() {
    "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1
}

# Prints the Debian packages that are missing, one per line.
missing_system_packages() {
    have_program mariadbd || echo mariadb-server
    have_program mariadb-install-db || echo mariadb-server
    have_program mariadb || echo mariadb-client
    have_program nft || echo nftables  # the fault relay's blackhole (tests/support/faults.py)
    have_program chromium || echo chromium  # the status page's browser test (tests/integration/test_status_page.py)
    have_program promtool || echo prometheus  # promtool: the alert rules' check (test_alert_rules_promtool.py)
    have_program gcc || echo gcc
    [[ -e /usr/include/stdio.h ]] || echo libc6-dev
    have_program pkg-config || echo pkg-config
    have_mariadb_client_lib || echo libmariadb-dev
    python_has_headers || echo python3-dev
    [[ -x "$VENV/bin/python" ]] || python_can_make_venv || echo python3-venv
    # tests/integration/test_drivers_other_languages.py
    have_program go || echo golang-go
    [[ -d "$GO_MYSQL_DRIVER" ]] || echo golang-github-go-sql-driver-mysql-dev
    have_program javac || echo default-jdk-headless
    [[ -e "$MARIADB_JAR" ]] || echo libmariadb-java
    have_program node || echo nodejs
    have_program npm || echo npm  # nodejs from other sources ships its own npm
    have_program php || echo php-cli
    php_has_mysql_drivers || echo php-mysql
}

apt_install() {
    export DEBIAN_FRONTEND=noninteractive
    if [[ "$APT_UPDATED" == 0 ]]; then
        log "apt-get update"
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install -y --no-install-recommends $*"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

ensure_system_packages() {
    command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found; install it: apt-get install -y python3"
    local missing
    missing="$(missing_system_packages | sort -u | tr '\n' ' ')"
    missing="${missing% }"
    [[ -z "$missing" ]] && return 0
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        # shellcheck disable=SC2086  # word splitting of the package list is intended
        apt_install $missing
        missing="$(missing_system_packages | sort -u | tr '\n' ' ')"
        missing="${missing% }"
        [[ -z "$missing" ]] || die "still missing after apt-get install: $missing"
        return 0
    fi
    case " $missing " in
        *" python3-venv "*) log "the python venv module is missing: apt-get install -y python3-venv" ;;
    esac
    die "missing system packages: $missing
    install them (as root) with: apt-get install -y --no-install-recommends $missing
    (or run this script as root with apt-get available and it installs them itself)"
}

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "creating $VENV"
        "$PYTHON" -m venv --clear "$VENV" \
            || die "could not create $VENV; if the venv module is missing: apt-get install -y python3-venv"
    fi
}

deps_fingerprint() {
    { cat "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/setup.py"; "$VENV/bin/python" -VV; } | sha256sum | cut -d' ' -f1
}

ensure_python_deps() {
    local want
    want="$(deps_fingerprint)"
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
        return 0
    fi
    log "pip install -e '.[test]' into $VENV"
    rm -f "$STAMP"
    (cd "$REPO_ROOT" && MYSQLPOOL_PROXY_COMPILE=0 "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
        -e '.[test]') \
        || die "pip install -e '.[test]' failed (see the output above)"
    printf '%s\n' "$want" >"$STAMP"
}

# npm ci writes node_modules/.package-lock.json: newer than the committed lock
# file means the installed packages are the locked ones.
ensure_node_drivers() {
    local installed="$NODE_DRIVERS/node_modules/.package-lock.json"
    if [[ -f "$installed" && ! "$NODE_DRIVERS/package-lock.json" -nt "$installed" ]]; then
        return 0
    fi
    log "npm ci in $NODE_DRIVERS"
    (cd "$NODE_DRIVERS" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
        || die "npm ci in $NODE_DRIVERS failed (see the output above)"
}

main() {
    ensure_system_packages
    ensure_venv
    ensure_python_deps
    ensure_node_drivers
    # Relative pytest paths are taken from the caller's cwd when it is inside
    # the repo, else from the repo root.
    case "$PWD/" in
        "$REPO_ROOT"/*) ;;
        *) cd "$REPO_ROOT" ;;
    esac
    trap '"$REPO_ROOT/scripts/compile.sh" --clean' EXIT  # the checkout is left pure Python
    "$REPO_ROOT/scripts/compile.sh" --clean
    if [[ $# -gt 0 ]]; then
        if [[ "${MYSQLPOOL_PROXY_COMPILE:-0}" == 1 ]]; then
            "$REPO_ROOT/scripts/compile.sh"
        fi
        "$VENV/bin/python" -m pytest "$@"
        return
    fi
    local tests="$REPO_ROOT/tests"
    log "pass 1 of 2, pure Python: the unit, protocol and static tests, and the performance guard"
    "$VENV/bin/python" -m pytest "$tests/unit" "$tests/protocol" "$tests/test_layering.py" \
        "$tests/test_static.py" "$tests/perf"
    if [[ "${MYSQLPOOL_PROXY_COMPILE:-1}" == 0 ]]; then
        log "pass 2 of 2, pure Python (MYSQLPOOL_PROXY_COMPILE=0): the rest of the suite"
        "$VENV/bin/python" -m pytest "$tests" --ignore="$tests/unit" --ignore="$tests/protocol" \
            --ignore="$tests/test_layering.py" --ignore="$tests/test_static.py" --ignore="$tests/perf"
        return
    fi
    "$REPO_ROOT/scripts/compile.sh"
    log "pass 2 of 2, compiled: the whole suite again but the source checks and the performance guard (it counts interpreted calls)"
    "$VENV/bin/python" -m pytest "$tests" --ignore="$tests/test_layering.py" --ignore="$tests/test_static.py" \
        --ignore="$tests/perf"
}

main "$@"
