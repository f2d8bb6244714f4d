# Seeded mutations of a captured session.
#
# plan_for(corpus, seed, index) picks a corpus session and one to four mutations with
# random.Random(f"{seed}:{index}") alone, so a session is replayed exactly from its seed and
# index. A Plan is a list of Items, one per packet to write, each with its sequence id, its
# payload, and how it goes on the wire: the length its header claims (a lie, when it differs
# from the payload's), the writes it is split into, and whether its answers are read before the
# next packet is written (settle=False pipelines the next command behind it). The corpus's
# auth packets are left out (the replay answers an auth switch itself) and its closing
# COM_QUIT is moved after the replay's sentinel.
#
# Packet-level mutations: wrong sequence id, truncated payload, lying length header, extra
# bytes, duplicated / dropped / swapped packets, flipped command byte, random statement ids,
# random bytes in a COM_STMT_EXECUTE's flags, iteration count, NULL bitmap, types and values,
# bit flips, huge declared lengths, an over-large packet, empty packets, unframed garbage, a
# packet split across many writes, and a second command written before the first's answer.
# SQL-level mutations (COM_QUERY and COM_STMT_PREPARE text): unterminated strings (with runs of
# escaped quotes), unterminated and line comments, executable comments, escapes, long
# whitespace, a repeated token, a truncated text, a NUL or invalid UTF-8, a second statement.
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from pymysql.constants import COMMAND

from tests.fuzz.corpus import CorpusSession, describe
from tests.fuzz.wire import MAX_FRAME

STMT_COMMANDS = (COMMAND.COM_STMT_EXECUTE, COMMAND.COM_STMT_SEND_LONG_DATA, COMMAND.COM_STMT_CLOSE,
                 COMMAND.COM_STMT_RESET, COMMAND.COM_STMT_FETCH)
SQL_COMMANDS = (COMMAND.COM_QUERY, COMMAND.COM_STMT_PREPARE)
ALL_COMMANDS = (*range(0x20), 0xFA, 0xFB, 0xFE, 0xFF)
MAX_RUN = 1 << 16  # bytes: the longest run a mutation inserts (whitespace, repeated tokens, string bodies)
OVERSIZED = 1024 * 1024 + 4096  # a payload over the fuzz server's max_allowed_packet (workload.SERVER_OPTIONS)


@dataclass
class Item:
    seq: int
    payload: bytes
    role: str  # command | infile (corpus.py) | raw (unframed bytes, written as they are)
    declared: int | None = None  # the length the header claims, when it lies
    cuts: list[float] = field(default_factory=list)  # where the packet's bytes are split into writes
    settle: bool = True  # read the answers it is owed before writing the next item
    change_user: bool = False  # a COM_CHANGE_USER whose auth response the replay recomputes

    def wire(self) -> bytes:
        if self.role == "raw":
            return self.payload
        n = len(self.payload)
        if self.declared is None and n >= MAX_FRAME:
            raise ValueError("payloads of 16 MiB are not fuzzed")
        length = n if self.declared is None else self.declared
        return length.to_bytes(3, "little") + bytes((self.seq & 0xFF,)) + self.payload

    def writes(self, data: bytes) -> list[bytes]:
        points = sorted({max(1, min(len(data) - 1, int(c * len(data)))) for c in self.cuts}) if len(data) > 1 else []
        return [data[a:b] for a, b in zip([0, *points], [*points, len(data)])]


@dataclass
class Plan:
    seed: int
    index: int
    corpus: str
    mutations: list[str]
    items: list[Item]

    def describe(self) -> str:
        head = f"session {self.index} of seed {self.seed}: corpus {self.corpus}; " + "; ".join(self.mutations)
        lines = [head]
        for i, item in enumerate(self.items):
            lie = f" header claims {item.declared}" if item.declared is not None else ""
            split = f" in {len(item.cuts) + 1} writes" if item.cuts else ""
            pipe = " (next one written before its answer)" if not item.settle else ""
            text = describe(item.payload, item.role) if item.role != "raw" else f"{len(item.payload)} unframed bytes"
            lines.append(f"  [{i}] seq {item.seq}{lie}{split}{pipe}: {text[:140]!r} "
                         f"{item.payload[:48].hex()}{'...' if len(item.payload) > 48 else ''}")
        return "\n".join(lines)


def base_items(session: CorpusSession) -> list[Item]:
    items = [Item(p.seq, p.payload, p.role, change_user=p.role == "command" and p.payload[:1] == b"\x11")
             for p in session.packets if p.role != "auth"]
    if items and items[-1].payload == bytes((COMMAND.COM_QUIT,)):
        items.pop()
    return items


def run_length(rng: random.Random, unit: int = 1) -> int:
    """How many times to repeat a unit of `unit` bytes: a run of 1 to MAX_RUN bytes, log-uniform (short
    runs as often as long ones)."""
    return max(1, int(2 ** rng.uniform(0, MAX_RUN.bit_length() - 1)) // unit)


def random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.randrange(256) for _ in range(n))


# -- packet level --------------------------------------------------------------------------------


def _pick(rng: random.Random, items: list[Item], test: Callable[[Item], bool] = lambda i: True) -> int | None:
    found = [i for i, item in enumerate(items) if item.role != "raw" and test(item)]
    return rng.choice(found) if found else None


def _command(code_set) -> Callable[[Item], bool]:
    return lambda item: item.role == "command" and item.payload[:1] != b"" and item.payload[0] in code_set


def wrong_seq(rng, items):
    i = _pick(rng, items)
    if i is None:
        return None
    old = items[i].seq
    items[i].seq = rng.choice([s for s in (0, 1, 2, 3, old + 1, old - 1, 255, rng.randrange(256)) if s & 0xFF != old])
    items[i].seq &= 0xFF
    return f"[{i}] sequence id {old} -> {items[i].seq}"


def truncate(rng, items):
    i = _pick(rng, items, lambda it: len(it.payload) > 1)
    if i is None:
        return None
    n = rng.randrange(len(items[i].payload))
    items[i].payload = items[i].payload[:n]
    return f"[{i}] payload cut to {n} bytes"


def lying_length(rng, items):
    i = _pick(rng, items)
    if i is None:
        return None
    n = len(items[i].payload)
    delta = rng.choice([1, 2, 4, rng.randrange(1, 64), run_length(rng)])
    declared = max(0, n - delta) if rng.random() < 0.5 else min(MAX_FRAME - 1, n + delta)
    if declared == n:
        return None
    items[i].declared = declared
    return f"[{i}] header claims {declared} bytes for {n}"


def huge_length(rng, items):
    i = _pick(rng, items)
    if i is None:
        return None
    items[i].declared = rng.choice([MAX_FRAME, MAX_FRAME - 1, 1 << 23, OVERSIZED, len(items[i].payload) + (1 << 20)])
    items[i].declared = min(items[i].declared, MAX_FRAME)
    return f"[{i}] header claims {items[i].declared} bytes"


def extra_bytes(rng, items):
    i = _pick(rng, items)
    if i is None:
        return None
    extra = random_bytes(rng, rng.choice([1, 2, 8, rng.randrange(1, 300)]))
    items[i].payload += extra
    return f"[{i}] {len(extra)} extra bytes"


def duplicate(rng, items):
    i = _pick(rng, items)
    if i is None:
        return None
    items.insert(i + 1, replace(items[i], cuts=list(items[i].cuts)))
    return f"[{i}] sent twice"


def drop(rng, items):
    i = _pick(rng, items)
    if i is None or len(items) < 2:
        return None
    items.pop(i)
    return f"[{i}] dropped"


def swap(rng, items):
    if len(items) < 2:
        return None
    i = rng.randrange(len(items) - 1)
    items[i], items[i + 1] = items[i + 1], items[i]
    return f"[{i}] and [{i + 1}] swapped"


def flip_command(rng, items):
    i = _pick(rng, items, lambda it: it.role == "command" and it.payload)
    if i is None:
        return None
    old = items[i].payload[0]
    new = rng.choice([c for c in ALL_COMMANDS if c != old] + [rng.randrange(256)])
    items[i].payload = bytes((new,)) + items[i].payload[1:]
    items[i].change_user = False
    return f"[{i}] command 0x{old:02x} -> 0x{new:02x}"


def statement_id(rng, items):
    i = _pick(rng, items, _command(STMT_COMMANDS))
    if i is None:
        return None
    p = items[i].payload
    old = int.from_bytes(p[1:5], "little")
    new = rng.choice([0, 0xFFFFFFFF, old + 1, old - 1 & 0xFFFFFFFF, rng.randrange(1 << 32), 1 << 31])
    items[i].payload = p[:1] + new.to_bytes(4, "little") + p[5:]
    return f"[{i}] statement id {old} -> {new}"


def execute_block(rng, items):
    """COM_STMT_EXECUTE: stmt id (1-4), flags (5), iteration count (6-9), then NULL bitmap,
    new-params-bound flag, types and values."""
    i = _pick(rng, items, _command((COMMAND.COM_STMT_EXECUTE,)))
    if i is None:
        return None
    p = bytearray(items[i].payload)
    how = rng.randrange(6)
    if how == 0:
        p[5] = rng.choice([1, 2, 4, 8, 0x80, rng.randrange(256)])
        what = f"flags 0x{p[5]:02x}"
    elif how == 1:
        p[6:10] = rng.choice([0, 2, 0xFFFFFFFF, rng.randrange(1 << 32)]).to_bytes(4, "little")
        what = f"iteration count {int.from_bytes(p[6:10], 'little')}"
    elif how == 2:
        cut = rng.randrange(10, max(11, len(p)))
        p = p[:cut]
        what = f"cut after {cut} bytes (parameter block)"
    elif how == 3 and len(p) > 10:
        for _ in range(rng.randrange(1, 6)):
            p[rng.randrange(10, len(p))] = rng.randrange(256)
        what = "random bytes in the NULL bitmap / types / values"
    elif how == 4 and len(p) > 10:
        pos = rng.randrange(10, len(p))
        p[pos] ^= 1  # the new-params-bound flag, or a NULL bit, or a type byte
        what = f"bit 0 of byte {pos} flipped"
    else:
        p = p[:10] + random_bytes(rng, rng.randrange(0, 40))
        what = "random parameter block"
    items[i].payload = bytes(p)
    return f"[{i}] COM_STMT_EXECUTE {what}"


def command_arguments(rng, items):
    """Random arguments for commands with fixed-size ones (FETCH row count, SEND_LONG_DATA
    parameter, SET_OPTION, PROCESS_KILL, REFRESH...)."""
    i = _pick(rng, items, _command((COMMAND.COM_STMT_FETCH, COMMAND.COM_STMT_SEND_LONG_DATA,
                                    COMMAND.COM_SET_OPTION, COMMAND.COM_STMT_RESET, COMMAND.COM_STMT_CLOSE)))
    if i is None:
        return None
    p = bytearray(items[i].payload)
    start = 5 if p[0] in STMT_COMMANDS else 1
    if len(p) <= start:
        p += random_bytes(rng, rng.randrange(1, 8))
    else:
        for _ in range(rng.randrange(1, 4)):
            p[rng.randrange(start, len(p))] = rng.choice([0, 0xFF, rng.randrange(256)])
    items[i].payload = bytes(p)
    return f"[{i}] random arguments"


def bit_flips(rng, items):
    i = _pick(rng, items, lambda it: it.payload)
    if i is None:
        return None
    p = bytearray(items[i].payload)
    n = rng.randrange(1, 9)
    for _ in range(n):
        p[rng.randrange(len(p))] ^= 1 << rng.randrange(8)
    items[i].payload = bytes(p)
    items[i].change_user = items[i].change_user and p[:1] == b"\x11"
    return f"[{i}] {n} bits flipped"


def oversized(rng, items):
    i = _pick(rng, items, _command((COMMAND.COM_QUERY,)))
    if i is None:
        return None
    items[i].payload = b"\x03SELECT '" + b"x" * (OVERSIZED + rng.randrange(4096)) + b"'"
    return f"[{i}] a COM_QUERY of {len(items[i].payload)} bytes (over max_allowed_packet)"


def empty_packet(rng, items):
    i = rng.randrange(len(items) + 1)
    items.insert(i, Item(rng.choice([0, 0, 1]), b"", "command"))
    return f"[{i}] an empty packet inserted"


def garbage(rng, items):
    i = rng.randrange(len(items) + 1)
    items.insert(i, Item(0, random_bytes(rng, rng.choice([1, 3, 4, 5, rng.randrange(1, 64)])), "raw"))
    return f"[{i}] unframed bytes inserted"


def split_writes(rng, items):
    i = _pick(rng, items)
    if i is None:
        return None
    n = rng.choice([1, 2, 3, rng.randrange(1, 40)])
    items[i].cuts = [rng.random() for _ in range(n)]
    return f"[{i}] split across {n + 1} writes"


def interleave(rng, items):
    i = _pick(rng, items, lambda it: it.role == "command")
    if i is None:
        return None
    items[i].settle = False
    return f"[{i}] the next packet written before its answer"


PACKET_MUTATIONS = [wrong_seq, truncate, lying_length, huge_length, extra_bytes, duplicate, drop, swap, flip_command,
                    statement_id, execute_block, execute_block, command_arguments, bit_flips, oversized, empty_packet,
                    garbage, split_writes, split_writes, interleave, interleave]


# -- SQL level ---------------------------------------------------------------------------------------


def _sql_item(rng, items) -> int | None:
    return _pick(rng, items, _command(SQL_COMMANDS))


def _insert(rng, sql: bytes, text: bytes) -> bytes:
    pos = rng.randrange(len(sql) + 1)
    return sql[:pos] + text + sql[pos:]


def unterminated_string(rng, sql):
    quote = rng.choice([b"'", b'"', b"`"])
    unit = rng.choice([b"\\'", b"''", b"\\\\", b"a", b"\\", b'\\"'])
    body = unit * run_length(rng, len(unit))
    return sql + b" @a " + quote + body, f"an unterminated {quote.decode()} string of {len(body)} bytes"


def unterminated_comment(rng, sql):
    opener = rng.choice([b"/*", b"/*!", b"/*M!", b"/*!50000", b"/* /* nested"])
    text = _insert(rng, sql, b" " + opener + b"x" * rng.choice([0, 1, run_length(rng)]))
    return text, f"an unterminated {opener.decode()} comment"


def line_comment(rng, sql):
    marker = rng.choice([b"-- ", b"#", b"--", b"-- \n"])
    return _insert(rng, sql, marker), f"{marker!r} inserted"


def executable_comment(rng, sql):
    opener = rng.choice([b"/*!", b"/*!50000 ", b"/*M!100000 ", b"/*+ "])
    return opener + sql + b" */", f"wrapped in {opener.decode().strip()} ... */"


def escapes(rng, sql):
    text = sql
    n = rng.randrange(1, 8)
    for _ in range(n):
        text = _insert(rng, text, rng.choice([b"\\", b"\\'", b"\\0", b"\\\\", b"''", b'"', b"`", b"\\%", b"'"]))
    return text, f"{n} escapes or quotes inserted"


def long_whitespace(rng, sql):
    unit = rng.choice([b" ", b"\t", b"\n", b"\r\n", b" \t\n"])
    run = unit * run_length(rng, len(unit))
    space = sql.find(b" ")
    if space > 0 and rng.random() < 0.5:
        return sql[:space] + run + sql[space:], f"{len(run)} bytes of whitespace after the first word"
    return _insert(rng, sql, run), f"{len(run)} bytes of whitespace"


def repeated_token(rng, sql):
    if not sql:
        return None
    start = rng.randrange(len(sql))
    token = sql[start:start + rng.randrange(1, 5)]
    n = run_length(rng, len(token))
    return sql[:start] + token * n + sql[start:], f"{token!r} repeated {n} times"


def cut_sql(rng, sql):
    if not sql:
        return None
    n = rng.randrange(len(sql))
    return sql[:n], f"the text cut to {n} bytes"


def odd_bytes(rng, sql):
    text = rng.choice([b"\0", b"\xff", b"\xc3", b"\xf0\x9f", b"\xed\xa0\x80", b"\xc0\xaf"])
    return _insert(rng, sql, text), f"{text!r} inserted"


def second_statement(rng, sql):
    other = rng.choice([sql, b"SELECT 1", b"", b"BEGIN", b"SET @z = 1"])
    return sql + b";" + other, "a second statement"


SQL_MUTATIONS = [unterminated_string, unterminated_string, unterminated_comment, line_comment, executable_comment,
                 escapes, long_whitespace, long_whitespace, repeated_token, cut_sql, odd_bytes, second_statement]


def sql_mutation(rng, items):
    i = _sql_item(rng, items)
    if i is None:
        return None
    p = items[i].payload
    done = rng.choice(SQL_MUTATIONS)(rng, p[1:])
    if done is None:
        return None
    text, what = done
    items[i].payload = p[:1] + text
    return f"[{i}] SQL: {what}"


# -- plans ---------------------------------------------------------------------------------------------


def plan_for(corpus: list[CorpusSession], seed: int, index: int) -> Plan:
    rng = random.Random(f"{seed}:{index}")
    session = rng.choice(corpus)
    items = base_items(session)
    done: list[str] = []
    wanted = 1
    while wanted < 4 and rng.random() < 0.4:
        wanted += 1
    attempts = 0
    while len(done) < wanted and attempts < 20:
        attempts += 1
        mutation = sql_mutation if rng.random() < 0.35 else rng.choice(PACKET_MUTATIONS)
        what = mutation(rng, items)
        if what is not None:
            done.append(f"{mutation.__name__}: {what}")
    return Plan(seed, index, session.name, done, items)
