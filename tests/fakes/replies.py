# What a test tells a FakeMySQLServer to answer, and what it recorded. Rows,
# Ok and Err are the replies a script gives (`server.on(match, reply)`); a
# Script matches statements by their text (case and spacing aside) or by a
# regex, for a number of times or for ever; Command is one command the server
# received, with the virtual time it came at.
from __future__ import annotations

import re
from dataclasses import dataclass, field

from mysqlpool_proxy.protocol.command import COMMAND_NAMES


@dataclass
class Rows:
    """A result set: column names and rows (str/bytes/int/None values)."""

    columns: list
    rows: list = field(default_factory=list)


@dataclass
class Ok:
    affected_rows: int = 0
    last_insert_id: int = 0
    info: bytes = b""
    state_change: bool = False


@dataclass
class Err:
    errno: int = 1064
    message: str = "scripted error"
    sqlstate: str = "42000"


@dataclass
class Command:
    code: int
    arg: bytes
    at: float

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.code, f"0x{self.code:02x}")

    @property
    def sql(self) -> str:
        return self.arg.decode("utf-8", "replace")


def normalized(sql: str) -> str:
    """A statement as scripts compare it: lowercase, single spaces, no trailing semicolon."""
    return " ".join(sql.strip().rstrip(";").split()).lower()


class Script:
    """Statements matching `match` get `reply`, after `delay` virtual seconds, `times` times (None: always)."""

    def __init__(self, match, reply, delay: float, times: int | None):
        self.match = match
        self.reply = reply
        self.delay = delay
        self.times = times

    def hits(self, sql: str) -> bool:
        if self.times == 0:
            return False
        if isinstance(self.match, re.Pattern):
            return self.match.search(sql) is not None
        return normalized(sql) == normalized(self.match)
