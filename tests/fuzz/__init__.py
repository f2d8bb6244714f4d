# The network fuzzer: real client sessions, mutated, replayed after a normal login.
#
#   corpus/*.json  client packets real drivers sent after login (captured through the proxy)
#   capture.py     regenerates the corpus: `python -m tests.fuzz.capture`
#   wire.py        a raw client: framing, login, and a reader that knows where each answer ends
#   mutate.py      seeded mutations of a captured session (packet level and SQL level) -> a Plan
#   replay.py      plays a Plan on one connection and checks that everything owed is answered
#   workload.py    the server set-up both share, and the bystanders' fixed workload
#
# tests/integration/test_fuzz.py runs it against a real proxy and MariaDB; scripts/fuzz.sh is
# the long run. Nothing here imports mysqlpool_proxy: the fuzzer's idea of the protocol must
# not be the code it tests.
