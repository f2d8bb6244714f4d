# The fake server's SQL mini-parser: a tokenizer that knows MariaDB's lexical
# rules well enough for the statements the proxy and the tests send (quoted
# strings with escapes, X'..' literals, backquoted names, @user and
# @@[session.|global.]system variables, comments), and a split on a
# separator at the top level of parentheses. SqlError is a statement's error,
# which the server answers as an ERR packet. Not a grammar: statements.py
# reads the tokens of each kind of statement it knows.
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(r"""
     (?P<ws>\s+)
    |(?P<comment>/\*.*?\*/|--[ \t][^\n]*|\#[^\n]*)
    |(?P<hex>[xX]'[0-9a-fA-F]*')
    |(?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*")
    |(?P<qid>`(?:[^`]|``)*`)
    |(?P<sysvar>@@(?:(?:session|local|global)\.)?(?:`[^`]+`|[A-Za-z_][\w$]*))
    |(?P<uvar>@(?:`(?:[^`]|``)*`|[\w$.]+))
    |(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    |(?P<word>[A-Za-z_$][\w$]*)
    |(?P<op>:=|<=|>=|<>|!=|.)
""", re.X | re.S | re.I)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "Z": "\x1a", "b": "\b"}


@dataclass
class Tok:
    kind: str
    value: Any
    start: int
    end: int

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.value in words

    def is_op(self, op: str) -> bool:
        return self.kind == "op" and self.value == op


def tokenize(sql: str) -> list[Tok]:
    """The tokens of `sql`, without spaces and comments; names lowercased, literals decoded."""
    out = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        text = m.group()
        if kind in ("ws", "comment"):
            continue
        if kind == "hex":
            value: Any = bytes.fromhex(text[2:-1])
        elif kind == "str":
            q = text[0]
            body = text[1:-1].replace(q + q, q)
            value = re.sub(r"\\(.)", lambda x: _ESCAPES.get(x.group(1), x.group(1)), body).encode("latin-1")
        elif kind == "qid":
            value = text[1:-1].replace("``", "`").lower()
        elif kind == "sysvar":
            name = text[2:].lower()
            scope = "session"
            if "." in name:
                scope, name = name.split(".", 1)
                scope = "global" if scope == "global" else "session"
            value = (scope, name.strip("`"))
        elif kind == "uvar":
            value = text[1:].strip("`").lower()
        elif kind == "word":
            value = text.lower()
        else:
            value = text
        out.append(Tok(kind, value, m.start(), m.end()))
    return out


def split_top(tokens: list[Tok], sep: str) -> list[list[Tok]]:
    """`tokens` split at each `sep` outside parentheses (statements at ";", items at ",")."""
    parts, cur, depth = [], [], 0
    for t in tokens:
        if t.is_op("("):
            depth += 1
        elif t.is_op(")"):
            depth -= 1
        if t.is_op(sep) and depth == 0:
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    parts.append(cur)
    return parts


class SqlError(Exception):
    """A statement's error: the server answers it with an ERR packet."""

    def __init__(self, errno: int, message: str, sqlstate: str = "HY000"):
        super().__init__(message)
        self.errno, self.message, self.sqlstate = errno, message, sqlstate
