# Plays one Plan on its own connection after a normal login, and checks that whatever is owed
# an answer gets one (or a close) within the bound.
#
# What is owed is decided from the packets the receiver reads, not from the plan's intent: a
# FrameStream decodes the bytes written exactly as the proxy (or server) will, lying headers
# and unframed garbage included, and a small model of the receiver walks those packets in
# order, after the previous one's answer:
#
#   command mode  sequence id not 0 -> an error and a close are owed (MariaDB's 1156);
#                 larger than max_allowed_packet -> an answer (1153);
#                 COM_QUIT -> a close; COM_STMT_SEND_LONG_DATA, COM_STMT_CLOSE -> nothing;
#                 anything else, empty or unknown included -> one whole answer of the shape
#                 wire.ANSWER_SHAPES gives; a LOCAL INFILE request switches to infile mode,
#                 an auth switch is answered with the right scramble (or, if a packet is
#                 already queued, that packet is taken as the auth data, as the receiver will)
#   infile mode   data packets with the next sequence ids owe nothing; the empty packet that
#                 ends the file owes the statement's answer; a wrong id owes a close
#
# A packet never completed (a header claiming more than was sent) owes nothing. Everything owed
# must arrive within `bound` seconds, or the session is a HANG. A close is always an acceptable
# answer. After the plan, if the receiver is between commands, a sentinel SELECT must come back
# with its own value as the next answer: anything else means the answers fell out of step with
# the commands (an extra or a missing packet). Then COM_QUIT must close the connection.
from __future__ import annotations

import time
from collections import Counter, deque
from dataclasses import dataclass, field

from pymysql.constants import COMMAND

from tests.fuzz.mutate import Item, Plan
from tests.fuzz.wire import (
    NO_ANSWER,
    Answer,
    Closed,
    FrameStream,
    Garbled,
    LoginFailed,
    NoAnswer,
    RawConnection,
    Received,
    auth_response,
    frame,
    lenenc_bytes,
)

OK, CLOSED = "ok", "closed"
HANG, GARBLED, OUT_OF_STEP, INTERNAL_ERROR, LOGIN_FAILED = "hang", "garbled", "out of step", "internal error", \
    "login failed"
PROBLEMS = (HANG, GARBLED, OUT_OF_STEP, INTERNAL_ERROR, LOGIN_FAILED)


class Finding(Exception):
    def __init__(self, result: str, problem: str):
        super().__init__(problem)
        self.result = result


@dataclass
class Login:
    host: str
    port: int
    user: str
    password: str
    database: str | None
    flags: int
    charset: int


@dataclass
class Outcome:
    plan: Plan
    result: str = OK
    problem: str = ""
    transcript: list[str] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)  # errno -> count, of the answers seen
    started: float = 0.0  # time.monotonic() at its start
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.result in PROBLEMS

    def report(self) -> str:
        lines = [f"{self.result.upper()}: {self.problem}", self.plan.describe(), "  transcript:"]
        lines += [f"    {line}" for line in self.transcript[-40:]]
        return "\n".join(lines)


class Replay:
    def __init__(self, plan: Plan, login: Login, *, bound: float, max_packet: int):
        self.plan = plan
        self.login = login
        self.bound = bound
        self.max_packet = max_packet
        self.outcome = Outcome(plan)
        self.stream = FrameStream()
        self.queue: deque[Received] = deque()
        self.mode = "command"
        self.infile_seq = 0
        self.conn: RawConnection | None = None
        self.owed = ""

    def log(self, line: str) -> None:
        self.outcome.transcript.append(line)

    def run(self) -> Outcome:
        started = self.outcome.started = time.monotonic()
        try:
            self._run()
        except Closed as exc:
            self.outcome.result = CLOSED
            self.log(f"closed by the peer ({exc})")
        except NoAnswer:
            self.outcome.result = HANG
            self.outcome.problem = self.owed
        except Garbled as exc:
            self.outcome.result = GARBLED
            self.outcome.problem = f"{exc} (while waiting for {self.owed})"
        except Finding as exc:
            self.outcome.result = exc.result
            self.outcome.problem = str(exc)
        except LoginFailed as exc:
            self.outcome.result = LOGIN_FAILED
            self.outcome.problem = f"a new connection could not log in: {exc}"
        finally:
            if self.conn is not None:
                self.conn.close()
            self.outcome.seconds = time.monotonic() - started
        return self.outcome

    def _run(self) -> None:
        lg = self.login
        self.owed = "the greeting and login"
        self.conn = RawConnection.open(lg.host, lg.port, timeout=self.bound)
        self.conn.login(lg.user, lg.password, lg.database, lg.flags, lg.charset, self.deadline())
        for item in self.plan.items:
            if self.mode == "closed":
                break
            self.write(item)
            if item.settle:
                self.settle()
        self.settle()
        if self.mode == "command" and not self.stream.partial:
            self.sentinel()
            self.write(Item(0, bytes((COMMAND.COM_QUIT,)), "command"))
            self.settle()
            if self.mode != "closed":
                raise Finding(GARBLED, "COM_QUIT did not close the connection")

    def deadline(self) -> float:
        return time.monotonic() + self.bound

    def write(self, item: Item) -> None:
        if item.change_user:
            item = self.with_auth(item)
        data = item.wire()
        for chunk in item.writes(data):
            self.conn.send(chunk)
        self.log(f"wrote {len(data)} bytes: {data[:24].hex()}{'...' if len(data) > 24 else ''}")
        self.queue.extend(self.stream.feed(data))

    def with_auth(self, item: Item) -> Item:
        """The captured COM_CHANGE_USER with its auth response for this connection's scramble."""
        p = item.payload
        user, sep, rest = p[1:].partition(b"\0")
        if not sep or not rest or user.decode(errors="replace") != self.login.user:
            return item
        n = rest[0]
        tail = rest[1 + n:]
        plugin = tail.partition(b"\0")[2][2:].partition(b"\0")[0] or b"mysql_native_password"
        auth = auth_response(plugin, self.login.password, self.conn.scramble)
        if len(auth) != n:
            return item
        return Item(item.seq, p[:1] + user + b"\0" + bytes((n,)) + auth + tail, item.role, item.declared,
                    item.cuts, item.settle)

    # -- the receiver's model ---------------------------------------------------------------------

    def settle(self) -> None:
        while self.queue and self.mode != "closed":
            pkt = self.queue.popleft()
            if self.mode == "command":
                self.command(pkt)
            elif self.mode == "infile":
                self.infile(pkt)
            else:  # auth: the receiver takes this packet as the auth data
                self.answer(COMMAND.COM_CHANGE_USER, f"the answer to auth data {pkt.payload[:20].hex()}")

    def command(self, pkt: Received) -> None:
        p = pkt.payload
        what = p[:40]
        if pkt.seq != 0:
            self.expect_close(f"a close after a command with sequence id {pkt.seq} ({what!r})")
        elif len(p) > self.max_packet:
            self.answer(-1, f"an answer to a packet of {len(p)} bytes (over max_allowed_packet)")
        elif not p:
            self.answer(-1, "an answer to an empty packet")
        elif p[0] == COMMAND.COM_QUIT:
            self.expect_close(f"a close after COM_QUIT ({what!r})")
        elif p[0] in NO_ANSWER:
            self.log(f"sent {what!r}: no answer owed")
        else:
            self.answer(p[0], f"an answer to {what!r}")

    def infile(self, pkt: Received) -> None:
        if pkt.seq != self.infile_seq:
            self.expect_close(f"a close after LOCAL INFILE data with sequence id {pkt.seq} "
                              f"(expected {self.infile_seq})")
        elif pkt.payload:
            self.infile_seq = (pkt.last_seq + 1) & 0xFF
        else:
            self.mode = "command"
            self.answer(COMMAND.COM_QUERY, "the answer to a LOAD DATA LOCAL INFILE after the file's end")

    def answer(self, command: int, owed: str) -> None:
        self.owed = owed
        answer = self.read(lambda deadline: self.conn.read_answer(command, deadline))
        self.log(f"{owed}: {answer.describe()}")
        if answer.kind == "closed":
            return
        if answer.kind == "err":
            self.outcome.errors[answer.errno] += 1
            if b"internal error" in answer.message:
                raise Finding(INTERNAL_ERROR, f"{owed} was an internal error: {answer.describe()}")
        elif answer.kind == "infile":
            self.mode = "infile"
            self.infile_seq = (answer.seq + 1) & 0xFF
            return
        elif answer.kind in ("auth_switch", "auth_more"):
            if self.queue or answer.kind == "auth_more":
                self.mode = "auth"
                return
            plugin, _, data = answer.data.partition(b"\0")
            response = auth_response(plugin, self.login.password, data.rstrip(b"\0"))
            self.conn.send(frame(response, answer.seq + 1))
            self.log(f"answered the auth switch to {plugin!r}")
            self.answer(COMMAND.COM_CHANGE_USER, "the answer to the auth switch response")
            return
        self.mode = "command"

    def expect_close(self, owed: str) -> None:
        self.owed = owed
        deadline = self.deadline()
        while True:
            try:
                _, payload = self.conn.recv_packet(deadline)
            except Closed:
                self.log(f"{owed}: closed")
                self.mode = "closed"
                return
            if payload[:1] == b"\xff":
                self.outcome.errors[int.from_bytes(payload[1:3], "little")] += 1
            self.log(f"{owed}: first {payload[:60]!r}")

    def read(self, fn) -> Answer:
        try:
            return fn(self.deadline())
        except Closed:
            self.mode = "closed"
            self.log(f"{self.owed}: closed")
            return Answer("closed")

    def sentinel(self) -> None:
        token = f"fuzz sentinel {self.plan.seed}:{self.plan.index}".encode()
        sql = b"SELECT '" + token + b"'"
        self.conn.send(frame(bytes((COMMAND.COM_QUERY,)) + sql, 0))
        self.owed = f"the answer to the sentinel {sql!r}"
        answer = self.read(lambda deadline: self.conn.read_answer(COMMAND.COM_QUERY, deadline))
        self.log(f"{self.owed}: {answer.describe()}")
        if answer.kind == "closed":
            return
        if answer.kind != "rows" or answer.rows != [lenenc_bytes(token)]:
            raise Finding(OUT_OF_STEP, f"the sentinel SELECT got {answer.describe()} {answer.rows[:3]!r} instead "
                                       "of its own row")


def replay(plan: Plan, login: Login, *, bound: float, max_packet: int) -> Outcome:
    return Replay(plan, login, bound=bound, max_packet=max_packet).run()
