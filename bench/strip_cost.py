# What taking MariaDB's extended metadata out of each column definition would cost the relay, in
# instructions (the design docs/performance.md weighs: backends that always negotiate
# MARIADB_CLIENT_EXTENDED_METADATA, and the field cut out for the clients that did not ask, against
# the pool key the proxy uses, which costs nothing per result).
#
# One process per figure runs the ResponseTracker's walk over a result set of N columns (as the
# relay does today: a definition's header only), or the walk plus, for each definition, the block
# found and cut with protocol/rows.py and the packet re-framed as a rewrite the relay would apply.
# Run under callgrind with 0 and `--repeat` iterations, the difference divided by the iterations is
# the instructions per result set.
#
#   python -m bench.strip_cost                      # needs valgrind; a few minutes
#   python -m bench.strip_cost --run walk 10 100    # one run (what callgrind is pointed at)
"""Instructions per result set: the relay's walk, and the walk plus stripping extended metadata."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from mysqlpool_proxy.protocol.framing import HEADER_SIZE, encode_packet, frame_header  # noqa: E402
from mysqlpool_proxy.protocol.response import Expect, ResponseTracker  # noqa: E402
from mysqlpool_proxy.protocol.rows import without_extended_metadata  # noqa: E402

# A JSON column's definition as MariaDB 10.11 sends it with extended metadata ("json" format).
DEFINITION = bytes.fromhex("036465660164016a016a03646f6303646f630601046a736f6e0c2d00fffffffffc9000000000")
EOF_PACKET = b"\xfe\x00\x00\x02\x00"


def result_set(columns: int) -> tuple[bytes, int]:
    packets = [bytes((columns,)), *[DEFINITION] * columns, EOF_PACKET, b"\x05hello" * columns, EOF_PACKET]
    return b"".join(encode_packet(p, i + 1) for i, p in enumerate(packets)), len(packets)


def walk(tracker: ResponseTracker, data: bytes) -> None:
    tracker.begin(Expect.RESULT)
    tracker.feed(data)


def walk_and_strip(tracker: ResponseTracker, data: bytes, packets: int, columns: int) -> bytes:
    walk(tracker, data)
    rewrites = []
    pos = 0
    for i in range(packets):
        end = pos + HEADER_SIZE + (data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16)
        if 1 <= i <= columns:
            new = without_extended_metadata(data[pos + HEADER_SIZE:end])
            rewrites.append((pos, end, frame_header(len(new), data[pos + 3]) + new))
        pos = end
    out = data
    for start, end, new in reversed(rewrites):
        out = out[:start] + new + out[end:]
    return out


def run(mode: str, columns: int, repeat: int) -> None:
    data, packets = result_set(columns)
    tracker = ResponseTracker()
    for _ in range(repeat):
        if mode == "walk":
            walk(tracker, data)
        else:
            walk_and_strip(tracker, data, packets, columns)


def instructions(mode: str, columns: int, repeat: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/cg.out", sys.executable,
                              "-m", "bench.strip_cost", "--run", mode, str(columns), str(repeat)],
                             cwd=REPO, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", out.stderr)
    assert found is not None, out.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", nargs=3, metavar=("MODE", "COLUMNS", "REPEAT"), help="one run: walk|strip N R")
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args()
    if args.run:
        run(args.run[0], int(args.run[1]), int(args.run[2]))
        return
    print(f"{'columns':>8} {'walk':>10} {'walk + strip':>14} {'added':>10}")
    for columns in (1, 10):
        per = {mode: (instructions(mode, columns, args.repeat) - instructions(mode, columns, 0)) / args.repeat
               for mode in ("walk", "strip")}
        print(f"{columns:>8} {per['walk']:>10,.0f} {per['strip']:>14,.0f} {per['strip'] - per['walk']:>10,.0f}")


if __name__ == "__main__":
    main()
