#!/usr/bin/env bash
# The long run of the network fuzz test (tests/integration/test_fuzz.py), for hunting by hand:
#
#   ./scripts/fuzz.sh [pytest args]
#
# runs test_fuzz with FUZZ_SESSIONS mutated client sessions (default 20,000: about 10
# minutes on a 2-core machine) against a real proxy in front of a private MariaDB, with
# bystander clients on the same pool. It is the test CI runs (2,500 sessions, a random
# seed); only the environment differs. The run stops starting sessions after 10 failed
# ones and prints the first ones in full: the mutated packets, what was owed and what came.
#
# Env: FUZZ_SEED      (default: a random seed, printed first)
#      FUZZ_SESSIONS  (default 20000)
#      FUZZ_SESSION   replay only this session of FUZZ_SEED, with its transcript
#      FUZZ_WORKERS   fuzzed sessions at a time (default 2)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export FUZZ_SESSIONS="${FUZZ_SESSIONS:-20000}"
export FUZZ_SEED="${FUZZ_SEED:-$(python3 -c 'import random; print(random.SystemRandom().randrange(2 ** 32))')}"
echo "[fuzz] FUZZ_SEED=$FUZZ_SEED FUZZ_SESSIONS=$FUZZ_SESSIONS${FUZZ_SESSION:+ FUZZ_SESSION=$FUZZ_SESSION}" >&2

exec ./scripts/test.sh tests/integration/test_fuzz.py::test_fuzz -x -q -s -p no:logging "$@"
