#!/usr/bin/env bash
# The long run of the state-isolation model test (tests/integration/test_state_model.py):
#
#   ./scripts/model-test.sh [pytest args]
#
# runs test_state_model for one seed with 100,000 steps: 32 clients over a
# pool of 4 backends, every client checked against its model after each of
# its steps. It is the same test CI runs (.ci/run: 6,000 steps, a fixed seed
# and a random one); only the environment differs. Expect about 6-7 minutes
# on a 2-core machine (roughly 3.5 ms a step, plus a few seconds to start).
# A failure prints the seed, the step and the command that reproduces it.
#
# Env: MODEL_STEPS   (default 100000)
#      MODEL_SEED    (default: a random seed, printed first)
#      MODEL_CLIENTS (default 32)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export MODEL_STEPS="${MODEL_STEPS:-100000}"
export MODEL_SEED="${MODEL_SEED:-$(python3 -c 'import random; print(random.SystemRandom().randrange(2 ** 32))')}"
echo "[model-test] MODEL_SEED=$MODEL_SEED MODEL_STEPS=$MODEL_STEPS MODEL_CLIENTS=${MODEL_CLIENTS:-32}" >&2

exec ./scripts/test.sh tests/integration/test_state_model.py::test_state_model -x -q -s "$@"
