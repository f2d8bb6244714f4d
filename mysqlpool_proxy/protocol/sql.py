"""What a COM_QUERY does to session state that the server's trackers won't say.

The session trackers report system variables, the schema and a generic
"state changed" flag, but only in OK packets: a SELECT ends with EOF, so
`SELECT @v := 1`, `SELECT GET_LOCK('x', 1)` or `SELECT ... INTO @v` report
nothing, and MariaDB does not report `SET @@character_set_results = NULL`.
The proxy also needs to know *which* temporary tables, named locks and SQL
prepared statements exist so that it can tell when they are all gone.

`analyze(sql)` answers those questions for one query text (possibly several
statements). Most statements are boring; a single regex search decides that
(`INTERESTING`) and only the rest are tokenised. The lexer understands
quotes, backquotes, comments and executable comments well enough that a
keyword inside a string or comment is not mistaken for one outside; when in
doubt an effect is assumed (an extra pin is safe, a missed one is not).

Everything here runs on the event loop, on whatever text a client sends, so
the work is linear in the length of the text, whatever it is: the lexer
never looks at a byte twice (see `_lex`), the analysis steps once per token,
and a text too large for that to be quick is assumed to do anything
(`unknown_effects`: it pins).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final, cast

__all__ = ["NO_BACKSLASH_ESCAPES", "ANSI_QUOTES", "KillStatement", "statements_with_kill", "replace_spans",
           "SqlEffects", "NO_EFFECTS", "analyze", "unknown_effects", "session_only", "parse_set_names",
           "replace_connection_id", "without_schema", "INTERESTING", "releases_connection",
           "tables_redefined"]

# A statement containing none of these words cannot change pinned session
# state: @ temporary lock last_insert_id prepare deallocate drop diagnostics
# handler kill connection_id session_track null backup export errors identity
# row_count release found_rows warnings, and xa as a whole word. They are grouped by
# first letter, and xa's word boundary is checked after its "x", so that every
# alternative starts with a literal: the regex engine then skips at C speed
# the positions where none can start (a leading \b once cost it that, and the
# search was the better part of analyze() for a short SELECT).
_TRIGGER_WORDS = (
    rb"@|t(?:emporary)|l(?:ock|ast_insert_id)|p(?:repare)|d(?:eallocate|rop|iagnostics)|h(?:andler)|k(?:ill)"
    rb"|c(?:onnection_id)|s(?:ession_track)|n(?:ull)|b(?:ackup)|e(?:xport|rrors)|i(?:dentity)|r(?:ow_count|elease)"
    rb"|f(?:ound_rows)|w(?:arnings)|x(?<!\wx)a\b"
)
INTERESTING = re.compile(_TRIGGER_WORDS, re.I)
# The same, for text already lower-cased: a case-sensitive search is several
# times faster, and this check runs for every query.
_INTERESTING_LOWER: Final = re.compile(_TRIGGER_WORDS)

WORD, STR, QID, UVAR, SYSVAR, NUM, OP = "word", "str", "qid", "uvar", "sysvar", "num", "op"
OPEN = "open"  # a literal or comment that runs to the end of the text (the server rejects it)
Token = tuple[str, bytes]  # (kind, value), as tokenize() makes them


@dataclass(slots=True)
class SqlEffects:
    user_var_write: bool = False
    sysvars_set_null: list[bytes] = field(default_factory=list)
    session_tracking_changed: bool = False
    temp_tables_created: list[bytes] = field(default_factory=list)
    tables_dropped: list[bytes] = field(default_factory=list)
    lock_tables: bool = False
    unlock_tables: bool = False
    named_locks_taken: list[bytes | None] = field(default_factory=list)  # None: name not a literal
    named_locks_released: list[bytes | None] = field(default_factory=list)
    release_all_locks: bool = False
    sql_prepared: list[bytes] = field(default_factory=list)
    sql_deallocated: list[bytes] = field(default_factory=list)
    handlers_opened: list[bytes] = field(default_factory=list)
    handlers_closed: list[bytes] = field(default_factory=list)
    xa_started: bool = False
    xa_ended: bool = False
    backup_stage: bytes | None = None
    kill: tuple[str, int] | None = None  # ("connection" | "query", id) for a plain KILL statement
    reads_connection_id: bool = False
    user_vars_written: list[bytes] = field(default_factory=list)  # names, when they can be known
    user_var_unknown: bool = False  # a user variable is written whose name the proxy cannot tell
    reads_insert_id: bool = False  # LAST_INSERT_ID(), @@identity, @@last_insert_id
    sets_insert_id: bool = False  # LAST_INSERT_ID(expr)
    reads_diagnostics: bool = False  # ROW_COUNT(), FOUND_ROWS(), SHOW WARNINGS/ERRORS, GET DIAGNOSTICS, ...
    calc_found_rows: bool = False  # SQL_CALC_FOUND_ROWS: the next FOUND_ROWS() reads this statement
    releases_connection: bool = False  # COMMIT / ROLLBACK ... RELEASE: the server hangs up after its OK
    # System variables set in ways the trackers do not report (MariaDB: `SET @@x = ...`
    # without a scope): the proxy reads them back after the statement.
    sysvars_untracked: list[bytes] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return self is not NO_EFFECTS and self != NO_EFFECTS


# What analyze() returns for the (vast majority of) statements with no effect:
# one shared instance, so `.any` is an identity check. Never mutate it.
NO_EFFECTS: Final = SqlEffects()


# -- the lexer ----------------------------------------------------------------------------
#
# One pass, left to right, that never looks at a byte again. At each position
# one anchored match of _NEXT says what starts there; every alternative of it
# looks at no more than the bytes it takes (and a few after). A quote or a
# comment opener is then run to its end by one C-level step: an anchored match
# of the literal's body (a pattern that always succeeds, so never backtracks)
# or bytes.find. A literal or comment that never ends runs to the end of the
# text (a literal as one OPEN token): the server rejects that statement (1064)
# after running the ones before it, which are seen. (A single regex with an
# alternative for each whole literal, as this once was, tries an unterminated
# literal again from every later quote: quadratic.)

_IDENT = rb"[A-Za-z_$\x80-\xff][\w$\x80-\xff]*"
_NEXT = re.compile(
    rb"(?P<ws>\s+)"
    rb"|(?P<word>" + _IDENT + rb")"
    rb"|(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)"
    rb"|(?P<sysvar>@@(?:" + _IDENT + rb"\.)?" + _IDENT + rb")"
    rb"|(?P<uvar>@[\w$.\x80-\xff]+)"
    rb"|(?P<quote>@?['\"`])"
    rb"|(?P<xopen>/\*M?!\d*)"  # an executable comment's opener: what follows is code
    rb"|(?P<comment>/\*|--(?=[ \t\r\n]|\Z)|\#)"
    rb"|(?P<xclose>\*/)"  # the end of an executable comment, when one is open; else "*" then "/"
    rb"|(?P<op>:=|.)",
    re.S,
)
# A literal's body after its opening quote, up to (not including) its closing
# quote: escapes (backslash, doubled quote) included, possessive throughout.
_ESCAPED_BODY = {
    0x27: rb"[^'\\]*+(?:(?:\\.|'')[^'\\]*+)*+",
    0x22: rb'[^"\\]*+(?:(?:\\.|"")[^"\\]*+)*+',
}
_PLAIN_BODY = {  # no backslash escapes: only a doubled quote
    0x27: rb"[^']*+(?:''[^']*+)*+",
    0x22: rb'[^"]*+(?:""[^"]*+)*+',
    0x60: rb"[^`]*+(?:``[^`]*+)*+",
}

# How the server reads quotes, from the client's sql_mode: NO_BACKSLASH_ESCAPES (a
# backslash is an ordinary character in literals) and ANSI_QUOTES ("x" is an
# identifier). A text is cut into statements as the server cuts it, or an effect
# hidden behind a quote the server reads differently would be missed.
NO_BACKSLASH_ESCAPES: Final = 1
ANSI_QUOTES: Final = 2


# A literal body's `match`: its pattern matches the empty string too, so it never returns None.
_BodyMatch = Callable[[bytes, int], "re.Match[bytes]"]


def _body_match(pattern: bytes) -> _BodyMatch:
    return cast(_BodyMatch, re.compile(pattern, re.S).match)


def _bodies(mode: int) -> dict[int, _BodyMatch]:
    escaped = _PLAIN_BODY if mode & NO_BACKSLASH_ESCAPES else _ESCAPED_BODY
    double = _PLAIN_BODY[0x22] if mode & ANSI_QUOTES else escaped[0x22]
    return {0x27: _body_match(escaped[0x27]), 0x22: _body_match(double), 0x60: _body_match(_PLAIN_BODY[0x60])}


_BODY_BY_MODE = [_bodies(mode) for mode in range(4)]


def _lex(sql: bytes, mode: int = 0) -> tuple[list[tuple[str, int, int]], int]:
    """The significant tokens of `sql` as (kind, start, end), and how many bytes the
    lexer looked at to find them (at most a small multiple of len(sql): for tests).
    `mode`: NO_BACKSLASH_ESCAPES | ANSI_QUOTES, from the client's sql_mode."""
    body = _BODY_BY_MODE[mode]
    quoted_names = (0x60, 0x22) if mode & ANSI_QUOTES else (0x60,)
    tokens: list[tuple[str, int, int]] = []
    append = tokens.append
    match = _NEXT.match
    n = len(sql)
    pos = looked = 0
    executable = False  # inside /*! ... */
    while pos < n:
        m = match(sql, pos)
        assert m is not None and m.lastgroup is not None  # its last alternative matches any byte
        kind = m.lastgroup
        end = m.end()
        if kind == "ws":
            looked += end - pos + 1
            pos = end
            continue
        if kind == "quote":
            q = sql[end - 1]
            close = body[q](sql, end).end()
            if close < n and sql[close] == q:
                end = close + 1
                kind = UVAR if sql[pos] == 0x40 else QID if q in quoted_names else STR
            else:
                end = n
                kind = OPEN
        elif kind == "comment":
            if sql[pos] == 0x2F:  # /* ... */
                close = sql.find(b"*/", end)
                end = n if close < 0 else close + 2
            else:  # -- or #: to the end of the line
                close = sql.find(b"\n", end)
                end = n if close < 0 else close
            looked += end - pos
            pos = end
            continue
        elif kind == "xopen" or (kind == "xclose" and executable):
            executable = kind == "xopen"
            looked += end - pos + 1
            pos = end
            continue
        elif kind == "xclose":
            kind = OP
            end = pos + 1
        looked += end - pos + 1
        append((kind, pos, end))
        pos = end
    return tokens, looked


def tokenize(sql: bytes, mode: int = 0) -> list[Token]:
    """(kind, value) of each significant token: words lower-cased, literals unquoted,
    variables by name. `mode`: as for _lex."""
    escapes = not mode & NO_BACKSLASH_ESCAPES
    tokens = []
    for kind, start, end in _lex(sql, mode)[0]:
        text = sql[start:end]
        if kind == WORD:
            tokens.append((WORD, text.lower()))
        elif kind == STR:
            tokens.append((STR, _unquote(text, escapes)))
        elif kind == QID:
            q = text[:1]
            tokens.append((QID, text[1:-1].replace(q + q, q)))
        elif kind == UVAR:
            tokens.append((UVAR, _var_name(text[1:], escapes)))
        elif kind == SYSVAR:
            tokens.append((SYSVAR, text[2:].lower()))
        else:
            tokens.append((kind, text))
    return tokens


def _unquote(text: bytes, escapes: bool = True) -> bytes:
    q = text[:1]
    body = text[1:-1].replace(q + q, q)
    return _ESCAPE.sub(_escaped, body) if escapes and b"\\" in body else body


_ESCAPE = re.compile(rb"\\(.)")


def _escaped(m: re.Match[bytes]) -> bytes:
    escaped: bytes = m.group(1)  # the pattern's one group always takes part
    return escaped


def _var_name(text: bytes, escapes: bool = True) -> bytes:
    """A user variable's name, lower-cased: user variable names are case-insensitive."""
    if text[:1] in (b"`", b"'", b'"'):
        name = _unquote(text, escapes) if text[:1] != b"`" else text[1:-1].replace(b"``", b"`")
        return name.lower()
    return text.lower()


def split_statements(tokens: list[Token]) -> list[list[Token]]:
    out: list[list[Token]] = []
    cur: list[Token] = []
    for tok in tokens:
        if tok == (OP, b";"):
            if cur:
                out.append(cur)
            cur = []
        else:
            cur.append(tok)
    if cur:
        out.append(cur)
    return out


def analyze(sql: bytes, mode: int = 0) -> SqlEffects:
    """The session-state effects of a query text (NO_EFFECTS, shared, when it has none).
    `mode`: NO_BACKSLASH_ESCAPES | ANSI_QUOTES, from the client's sql_mode."""
    if len(sql) > SKELETON_ABOVE:
        bones = skeleton(sql, ANALYZE_UP_TO, mode)
        if bones is None:
            return NO_EFFECTS if _INTERESTING_LOWER.search(sql.lower()) is None else unknown_effects()
        sql = bones
    if len(sql) <= SHAPE_UP_TO:
        shape = sql.translate(_LOWER, _DIGITS)  # (lower-cased and digits out in one pass)
        known = _SHAPES.get(shape)
        if not (_remember_shape(shape) if known is None else known):
            return NO_EFFECTS
    elif _INTERESTING_LOWER.search(sql.lower()) is None:
        return NO_EFFECTS
    effects = SqlEffects()
    for stmt in split_statements(tokenize(sql, mode)):
        _analyze_statement(stmt, effects)
    if len(effects.user_vars_written) > 1:
        effects.user_vars_written = list(dict.fromkeys(effects.user_vars_written))
    if len(effects.sysvars_untracked) > 1:
        effects.sysvars_untracked = list(dict.fromkeys(effects.sysvars_untracked))
    return effects


# Whether a short text mentions a trigger word is remembered by its shape: lower-cased, without its
# digits. Statements that differ only in numbers (`WHERE id = 4711`, the usual point select) then
# cost one dictionary look-up instead of a search. No trigger word has a digit, so a word in the
# text is in its shape too, and so is what surrounds it (xa's boundaries are not digits either):
# the shape can only show more words than the text (then the text is analyzed in full), never fewer.
SHAPE_UP_TO: Final = 512
SHAPES_REMEMBERED: Final = 2048
_DIGITS: Final = b"0123456789"
_LOWER: Final = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")  # bytes.lower()'s
_SHAPES: Final[dict[bytes, bool]] = {}


def _remember_shape(shape: bytes) -> bool:
    """Does a shape not seen before mention a trigger word? (Remembered.)"""
    known = _INTERESTING_LOWER.search(shape) is not None
    if len(_SHAPES) >= SHAPES_REMEMBERED:
        _SHAPES.clear()
    _SHAPES[shape] = known
    return known


def unknown_effects() -> SqlEffects:
    """What a text too large to analyze is assumed to do: anything. It writes user
    variables and takes a named lock whose names cannot be known, which pins the
    client until its session is reset, and reads and sets its own LAST_INSERT_ID()
    and diagnostics. (A CONNECTION_ID() in it is not rewritten.)"""
    return SqlEffects(user_var_write=True, user_var_unknown=True, named_locks_taken=[None], reads_insert_id=True,
                      sets_insert_id=True, reads_diagnostics=True, calc_found_rows=True)


# Queries larger than SKELETON_ABOVE (bulk inserts with big literals) are
# reduced to a skeleton first: literals longer than KEEP_LITERALS_UP_TO
# emptied, so that neither the INTERESTING search nor the lexer walks
# megabytes of escaped data on the event loop. A skeleton still larger than
# ANALYZE_UP_TO (hundreds of thousands of tokens: the lexer and the analysis
# step once per token, in Python) is not analyzed: it is assumed to do
# anything (unknown_effects), when it mentions any trigger word at all.
SKELETON_ABOVE: Final = 64 * 1024
ANALYZE_UP_TO: Final = 256 * 1024
KEEP_LITERALS_UP_TO: Final = 256
# What the skeleton must step over as the lexer does: the openers of
# literals, comments and executable comments (whose content is code).
_SPECIAL = re.compile(rb"['\"`#]|/\*(?:M?!)?|--(?=[ \t\r\n]|\Z)|\*/")


def skeleton(sql: bytes, limit: int | None = None, mode: int = 0) -> bytes | None:
    """`sql` with literals and comments longer than KEEP_LITERALS_UP_TO bytes
    emptied (None as soon as it would be longer than `limit`).

    It steps over literals and comments as the lexer does, with the lexer's
    C-level steps; Python steps once per literal or comment, never once per
    byte. An executable comment's opener and closer alone are stepped over
    (what is between is code). A user variable's name (@'...') and a
    backquoted identifier are kept whatever their length.
    """
    out = []
    kept = pos = 0
    n = len(sql)
    executable = False  # inside /*! ... */
    while True:
        m = _SPECIAL.search(sql, pos)
        if m is None:
            if limit is not None and kept + n - pos > limit:
                return None
            out.append(sql[pos:])
            return b"".join(out)
        start, end = m.span()
        q = sql[start]
        long, short_form = False, b""
        if q in b"'\"`":
            close = _BODY_BY_MODE[mode][q](sql, end).end()
            closed = close < n and sql[close] == q
            end = close + 1 if closed else n
            long = end - start > KEEP_LITERALS_UP_TO and q != 0x60 and (start == 0 or sql[start - 1] != 0x40)
            short_form = sql[start:start + 1] * (2 if closed else 1)  # '' (or ' alone: still never closed)
        elif q == 0x2A:  # */
            if not executable:
                end = start + 1  # "*", then maybe the "/*" of a comment
            executable = False
        elif end - start > 2:  # /*! or /*M!
            executable = True
        elif q == 0x2F:  # /* ... */
            close = sql.find(b"*/", end)
            end = n if close < 0 else close + 2
            long = end - start > KEEP_LITERALS_UP_TO
            short_form = b"/**/" if close >= 0 else b"/*"
        else:  # -- or #: to the end of the line
            close = sql.find(b"\n", end)
            end = n if close < 0 else close
            long = end - start > KEEP_LITERALS_UP_TO
            short_form = b"#"
        kept += start - pos + len(short_form) if long else end - pos
        if limit is not None and kept > limit:
            return None
        out.append(sql[pos:start] + short_form if long else sql[pos:end])
        pos = end


def session_only(sql: bytes, mode: int = 0) -> bool:
    """True if every statement is a SET of system variables or a USE: all the trackers report in full.

    False for a text longer than SKELETON_ABOVE, unread: saying False is always
    safe (a state change is then not explained away, and pins)."""
    if len(sql) > SKELETON_ABOVE:
        return False
    stmts = split_statements(tokenize(sql, mode))
    if not stmts:
        return False
    for stmt in stmts:
        first = stmt[0]
        if first == (WORD, b"use"):
            continue
        if first != (WORD, b"set") or _words(stmt, 2)[1] == b"statement":
            return False
        fx = SqlEffects()
        _scan_expressions(stmt, fx)
        _analyze_set(stmt, fx)
        if fx.user_var_write:
            return False
    return True


def tables_redefined(sql: bytes, mode: int = 0) -> list[bytes] | None:
    """The tables whose definition every statement of `sql` changes (ALTER TABLE t, CREATE INDEX i
    ON t, DROP INDEX i ON t), last name part lower-cased; None when a statement is anything else.

    MariaDB reports such a statement on a temporary table as a session state change. Only
    asked after one (rarely): analyze() does not look at these statements, and None is always
    safe (the change is then not explained away, and pins)."""
    if len(sql) > SKELETON_ABOVE:
        return None
    stmts = split_statements(tokenize(sql, mode))
    names = [_table_redefined(stmt) for stmt in stmts]
    if not names or None in names:
        return None
    return [name for name in names if name is not None]


_ALTER_TABLE_PREFIX = (b"online", b"ignore")  # ALTER [ONLINE] [IGNORE] TABLE
_IF_EXISTS = ((WORD, b"if"), (WORD, b"exists"))


def _table_redefined(stmt: list[Token]) -> bytes | None:
    first = _words(stmt, 1)[0]
    if first == b"alter":
        i = 1
        while i < len(stmt) and _words(stmt[i:], 1)[0] in _ALTER_TABLE_PREFIX:
            i += 1
        if _words(stmt[i:], 1)[0] != b"table":
            return None
        i += 1
        if tuple(stmt[i:i + 2]) == _IF_EXISTS:
            i += 2
        return _name_at(stmt, i)
    if first in (b"create", b"drop") and b"index" in _words(stmt, 6):
        # CREATE [OR REPLACE] [UNIQUE|FULLTEXT|SPATIAL] INDEX [IF NOT EXISTS] i [USING t] ON tbl ...,
        # DROP INDEX [IF EXISTS] i ON tbl: the table follows the first ON (a reserved word).
        on = next((i for i, token in enumerate(stmt) if token == (WORD, b"on")), None)
        return _name_at(stmt, on + 1) if on is not None else None
    return None


# Matched against the text stripped of surrounding whitespace and of one
# final ";": no two runs of whitespace meet, so a mismatch never backtracks
# far (`\s*;?\s*` at the end once tried every split of a long run of spaces).
_SET_NAMES = re.compile(
    rb"set\s+names\s+(?P<cs>'[^']*'|\"[^\"]*\"|`[^`]*`|[A-Za-z0-9_]+)"
    rb"(?:\s+collate\s+(?P<coll>'[^']*'|\"[^\"]*\"|`[^`]*`|[A-Za-z0-9_]+))?",
    re.I,
)


def parse_set_names(sql: bytes) -> tuple[bytes, bytes | None] | None:
    """`SET NAMES cs [COLLATE coll]` alone -> (cs, coll) in lower case; anything else -> None.
    (Short texts are remembered: drivers send the same one at every connect.)"""
    if len(sql) <= SHORT_TEXT:
        return _set_names_of_short(sql)
    return _parse_set_names(sql)


SHORT_TEXT: Final = 64  # the longest text whose parse is remembered (per text, a few hundred at most)


@functools.lru_cache(maxsize=256)
def _set_names_of_short(sql: bytes) -> tuple[bytes, bytes | None] | None:
    return _parse_set_names(sql)


def _parse_set_names(sql: bytes) -> tuple[bytes, bytes | None] | None:
    text = sql.strip()
    if text.endswith(b";"):
        text = text[:-1].rstrip()
    m = _SET_NAMES.fullmatch(text)
    if m is None:
        return None
    cs = m.group("cs").strip(b"'\"`").lower()
    coll = m.group("coll")
    if cs == b"default":
        return None
    return cs, (coll.strip(b"'\"`").lower() if coll else None)


def _words(stmt: list[Token], n: int) -> list[bytes]:
    """The first n tokens as lower-case words ("" for non-words and past the end)."""
    words = [v if k == WORD else b"" for k, v in stmt[:n]]
    return words + [b""] * (n - len(words))


def _name_at(stmt: list[Token], i: int) -> bytes | None:
    """A (possibly qualified) table name starting at token i; the last part, lower-cased."""
    name = None
    while i < len(stmt) and stmt[i][0] in (WORD, QID):
        name = stmt[i][1].lower()
        if i + 1 < len(stmt) and stmt[i + 1] == (OP, b"."):
            i += 2
            continue
        break
    return name


def _analyze_statement(stmt: list[Token], fx: SqlEffects) -> None:
    _scan_expressions(stmt, fx)
    stmt = _inner_statement(stmt)
    w = _words(stmt, 4)
    first = w[0]
    if first == b"set":
        _analyze_set(stmt, fx)
    elif first == b"create" and b"temporary" in w:
        i = w.index(b"temporary") + 2  # CREATE [OR REPLACE] TEMPORARY TABLE
        while i < len(stmt) and stmt[i] in _IF_NOT_EXISTS:
            i += 1
        name = _name_at(stmt, i)
        if name is not None:
            fx.temp_tables_created.append(name)
    elif first == b"drop":
        _analyze_drop(stmt, fx)
    elif first == b"lock" and w[1] in (b"table", b"tables"):
        fx.lock_tables = True
    elif first == b"unlock" and w[1] in (b"table", b"tables"):
        fx.unlock_tables = True
    elif first == b"flush" and (_has_sequence(stmt, (b"read", b"lock")) or _has_sequence(stmt, (b"for", b"export"))):
        fx.lock_tables = True  # FLUSH TABLES WITH READ LOCK / FLUSH TABLES t FOR EXPORT: until UNLOCK TABLES
    elif first == b"prepare" and len(stmt) > 1:
        fx.sql_prepared.append(stmt[1][1].lower())
    elif first == b"deallocate" and w[1] == b"prepare" and len(stmt) > 2:
        fx.sql_deallocated.append(stmt[2][1].lower())
    elif first == b"handler" and len(stmt) > 2:
        _analyze_handler(stmt, fx)
    elif first == b"xa":
        if w[1] in (b"start", b"begin"):
            fx.xa_started = True
        elif w[1] in (b"commit", b"rollback"):
            fx.xa_ended = True
    elif first == b"backup" and w[1] == b"stage":
        fx.backup_stage = w[2] or b"?"
    elif first == b"kill":
        _analyze_kill(stmt, fx)
    elif first in (b"commit", b"rollback"):
        fx.releases_connection = fx.releases_connection or _ends_connection(stmt, False)
    elif first == b"show" and (b"warnings" in w or b"errors" in w or _has_sequence(stmt, (b"warnings",))
                               or _has_sequence(stmt, (b"errors",))):
        fx.reads_diagnostics = True
    elif first == b"get" and (w[1] == b"diagnostics" or w[2] == b"diagnostics"):
        fx.reads_diagnostics = True
        for i, (kind, val) in enumerate(stmt):  # GET DIAGNOSTICS @n = NUMBER: writes @n
            if kind == UVAR and i + 1 < len(stmt) and stmt[i + 1] == (OP, b"="):
                _user_var_written(fx, (kind, val))


_IF_NOT_EXISTS = ((WORD, b"if"), (WORD, b"not"), (WORD, b"exists"))
_SET_STATEMENT = [(WORD, b"set"), (WORD, b"statement")]


def _inner_statement(stmt: list[Token]) -> list[Token]:
    """The statement that SET STATEMENT v=x [, ...] FOR stmt runs ([] if none): its settings
    last for that one statement, and its effects stay. Nested ones are unwrapped in one pass."""
    start = 0
    while stmt[start:start + 2] == _SET_STATEMENT:
        start = _after_for(stmt, start)
    return stmt[start:] if start else stmt


def releases_connection(sql: bytes, mode: int = 0) -> bool:
    """With completion_type = RELEASE: does a statement of `sql` end the transaction and the
    connection (COMMIT or ROLLBACK, not `NO RELEASE`, not `AND CHAIN`, not `TO SAVEPOINT`)?"""
    return any(_ends_connection(stmt, True) for stmt in split_statements(tokenize(sql, mode)))


def _ends_connection(stmt: list[Token], by_default: bool) -> bool:
    """COMMIT / ROLLBACK [WORK] [AND [NO] CHAIN] [[NO] RELEASE]: does it release the connection?
    (`by_default`: completion_type is RELEASE, so one with neither RELEASE nor NO RELEASE does.)"""
    words = [value for kind, value in stmt if kind == WORD]
    if len(words) != len(stmt) or words[:1] not in ([b"commit"], [b"rollback"]) or b"to" in words:
        return False
    if words[-1:] == [b"release"]:
        return words[-2:-1] != [b"no"]
    chained = b"chain" in words and words[words.index(b"chain") - 1] != b"no"
    return by_default and not chained


def _has_sequence(stmt: list[Token], words: tuple[bytes, ...]) -> bool:
    vals = [v for k, v in stmt if k == WORD]
    n = len(words)
    return any(tuple(vals[i:i + n]) == words for i in range(len(vals) - n + 1))


def _scan_expressions(stmt: list[Token], fx: SqlEffects) -> None:
    """Effects that can hide in any statement: `@v :=`, `INTO @v`, lock functions, CONNECTION_ID()."""
    prev: tuple[str | None, bytes] = (None, b"")
    into_list = False  # prev is a variable of an `INTO @a, @b` list, or a comma after one
    last = len(stmt) - 1
    for i, tok in enumerate(stmt):
        kind, val = tok
        if kind == UVAR:
            into_list = prev == (WORD, b"into") or (into_list and prev == (OP, b","))
            if into_list:
                _user_var_written(fx, tok)
        elif kind == OP:
            if val == b":=":
                _user_var_written(fx, prev)
            into_list = into_list and val == b"," and prev[0] == UVAR
        else:
            into_list = False
            if kind == WORD:
                if i < last and stmt[i + 1] == (OP, b"("):
                    _lock_function(val, stmt, i + 2, fx)
                elif val == b"sql_calc_found_rows":
                    fx.calc_found_rows = True
            elif kind == SYSVAR:
                name = val.rsplit(b".", 1)[-1]
                if name in (b"identity", b"last_insert_id"):
                    fx.reads_insert_id = True
                elif name in (b"warning_count", b"error_count"):
                    fx.reads_diagnostics = True
        prev = tok


def _user_var_written(fx: SqlEffects, target: tuple[str | None, bytes]) -> None:
    """Record a write of `target`; analyze() drops repeated names at the end (not here: a
    text may name thousands)."""
    fx.user_var_write = True
    if target[0] == UVAR:
        fx.user_vars_written.append(target[1])
    else:
        fx.user_var_unknown = True


def _lock_function(name: bytes, stmt: list[Token], arg: int, fx: SqlEffects) -> None:
    literal = stmt[arg][1] if arg < len(stmt) and stmt[arg][0] == STR else None
    if name == b"get_lock":
        fx.named_locks_taken.append(literal)
    elif name == b"release_lock":
        fx.named_locks_released.append(literal)
    elif name == b"release_all_locks":
        fx.release_all_locks = True
    elif name == b"connection_id":
        fx.reads_connection_id = True
    elif name == b"last_insert_id":
        if arg < len(stmt) and stmt[arg] == (OP, b")"):
            fx.reads_insert_id = True
        else:
            fx.sets_insert_id = True
    elif name in (b"row_count", b"found_rows"):
        fx.reads_diagnostics = True


_SCOPE_WORDS = {b"session": "session", b"local": "session", b"global": "global", b"persist": "global",
                b"persist_only": "global"}


def _analyze_set(stmt: list[Token], fx: SqlEffects) -> None:
    """SET assignment[, assignment]...: user variables, NULL-valued system variables."""
    w = _words(stmt, 3)
    if w[1] in (b"names", b"password", b"role", b"default", b"character", b"charset"):
        return
    if w[1] == b"transaction" or (w[1] in _SCOPE_WORDS and w[2] == b"transaction"):
        return
    if w[1] == b"statement":
        return  # SET STATEMENT v=x FOR stmt: the settings last for one statement (see _inner_statement)
    for target, value, unscoped in _assignments(stmt[1:]):
        kind, name, scope = target
        if kind == UVAR:
            _user_var_written(fx, (UVAR, name))
        elif scope == "session":
            tracking = name.startswith(b"session_track")
            if tracking:
                fx.session_tracking_changed = True  # pins anyway
            if value == [(WORD, b"null")]:
                fx.sysvars_set_null.append(name)
            elif unscoped and not tracking:
                fx.sysvars_untracked.append(name)


def _after_for(stmt: list[Token], start: int) -> int:
    """The index after the first FOR outside parentheses from `start` (len(stmt) if none)."""
    depth = 0
    for i in range(start, len(stmt)):
        tok = stmt[i]
        if tok[0] == OP and tok[1] in (b"(", b")"):
            depth += 1 if tok[1] == b"(" else -1
        elif depth == 0 and tok == (WORD, b"for"):
            return i + 1
    return len(stmt)


def _assignments(tokens: list[Token]) -> Iterator[tuple[tuple[str, bytes, str], list[Token], bool]]:
    """Yield ((kind, name, scope), value_tokens, unscoped_sysvar) for `a = x, b = y` (top-level commas only).

    `unscoped_sysvar` is True for the `@@name` form, which MariaDB's trackers do not report."""
    parts: list[list[Token]] = []
    cur: list[Token] = []
    depth = 0
    for tok in tokens:
        if tok[0] == OP and tok[1] in (b"(", b")"):
            depth += 1 if tok[1] == b"(" else -1
        if tok == (OP, b",") and depth == 0:
            parts.append(cur)
            cur = []
        else:
            cur.append(tok)
    parts.append(cur)
    scope = "session"
    for part in parts:
        if part and part[0][0] == WORD and part[0][1] in _SCOPE_WORDS:
            scope = _SCOPE_WORDS[part[0][1]]
            part = part[1:]
        eq = next((i for i, t in enumerate(part) if t in ((OP, b"="), (OP, b":="))), None)
        if not part or eq is None:
            continue
        target = part[0]
        if target[0] == UVAR:
            yield (UVAR, target[1], "user"), part[eq + 1:], False
        elif target[0] == SYSVAR:
            name = target[1]
            var_scope = scope
            unscoped = b"." not in name
            if not unscoped:
                prefix, name = name.split(b".", 1)
                var_scope = _SCOPE_WORDS.get(prefix, "session")
            yield (SYSVAR, name, var_scope), part[eq + 1:], unscoped
        elif target[0] in (WORD, QID):
            yield (SYSVAR, target[1].lower(), scope), part[eq + 1:], False


def _analyze_drop(stmt: list[Token], fx: SqlEffects) -> None:
    w = _words(stmt, 3)
    i = 1
    if w[1] == b"temporary":
        i = 2
    if _words(stmt[i:], 1) != [b"table"] and _words(stmt[i:], 1) != [b"tables"]:
        if w[1] == b"prepare" and len(stmt) > 2:
            fx.sql_deallocated.append(stmt[2][1].lower())
        return
    i += 1
    if _words(stmt[i:], 2) == [b"if", b"exists"]:
        i += 2
    while i < len(stmt):
        name = _name_at(stmt, i)
        if name is None:
            break
        fx.tables_dropped.append(name)
        while i < len(stmt) and stmt[i] != (OP, b","):
            i += 1
        i += 1


def _analyze_handler(stmt: list[Token], fx: SqlEffects) -> None:
    # HANDLER tbl OPEN [[AS] alias] / HANDLER name CLOSE: later statements use the alias if given.
    name = _name_at(stmt, 1)
    if name is None:
        return
    i = 2
    while i < len(stmt) and stmt[i] == (OP, b"."):
        i += 2
    rest = stmt[i:]
    if rest[:1] == [(WORD, b"open")]:
        alias = rest[1:]
        if alias[:1] == [(WORD, b"as")]:
            alias = alias[1:]
        if alias and alias[0][0] in (WORD, QID):
            name = alias[0][1].lower()
        fx.handlers_opened.append(name)
    elif rest[:1] == [(WORD, b"close")]:
        fx.handlers_closed.append(name)


def _analyze_kill(stmt: list[Token], fx: SqlEffects) -> None:
    kill = _kill_target(stmt)
    if kill is not None:
        fx.kill = kill


def _kill_target(stmt: list[Token]) -> tuple[str, int] | None:
    """("connection" | "query", id) of `KILL [HARD|SOFT] [CONNECTION|QUERY] id`; None for any other
    form (KILL QUERY ID n takes a query id, KILL USER a user name: the server's business)."""
    words = [v for k, v in stmt if k == WORD]
    nums = [v for k, v in stmt if k == NUM]
    if not words or words[0] != b"kill" or len(nums) != 1 or b"user" in words or (b"query" in words and b"id" in words):
        return None
    try:
        target = int(nums[0])
    except ValueError:
        return None
    return ("query" if b"query" in words else "connection"), target


@dataclass(frozen=True, slots=True)
class KillStatement:
    kind: str  # "connection" | "query"
    target: int  # a connection id as the client knows them (the proxy's)
    start: int  # where the statement is in the text (without its ";")
    end: int


def statements_with_kill(sql: bytes, mode: int = 0) -> tuple[int, list[KillStatement]]:
    """How many statements the text has, and where the KILL statements among them are."""
    count = 0
    kills: list[KillStatement] = []
    current: list[tuple[str, int, int]] = []
    for token in _lex(sql, mode)[0] + [(OP, len(sql), len(sql))]:
        kind, start, end = token
        if kind == OP and (end == start or sql[start:end] == b";"):
            if current:
                count += 1
                stmt = [(k, sql[a:b].lower()) for k, a, b in current]
                kill = _kill_target(stmt) if stmt[0] == (WORD, b"kill") else None
                if kill is not None:
                    kills.append(KillStatement(kill[0], kill[1], current[0][1], current[-1][2]))
            current = []
        else:
            current.append(token)
    return count, kills


def replace_spans(sql: bytes, replacements: list[tuple[int, int, bytes]]) -> bytes:
    """`sql` with each (start, end) span, in order, replaced by its bytes."""
    out, pos = [], 0
    for start, end, new in replacements:
        out += [sql[pos:start], new]
        pos = end
    out.append(sql[pos:])
    return b"".join(out)


def _spans(sql: bytes, mode: int = 0) -> list[tuple[str, bytes, int, int]]:
    """(kind, lower-cased text, start, end) of every significant token."""
    return [(kind, sql[start:end].lower(), start, end) for kind, start, end in _lex(sql, mode)[0]]


def replace_connection_id(sql: bytes, connection_id: int, mode: int = 0) -> bytes:
    """CONNECTION_ID() calls replaced by the proxy's id for this client."""
    return _replace_calls(sql, (b"connection_id",), b"%d" % connection_id, mode)


def without_schema(sql: bytes) -> bytes:
    """`sql`, prepared with no schema selected, made to mean the same in any schema.

    A statement that prepared with no schema names every table and routine in
    full; the schema selected when it is prepared shows only through
    DATABASE() (SCHEMA()), which then reads NULL (a string type, as the call's)."""
    return _replace_calls(sql, (b"database", b"schema"), b"CAST(NULL AS CHAR(64))")


def _replace_calls(sql: bytes, names: tuple[bytes, ...], literal: bytes, mode: int = 0) -> bytes:
    """Calls `name()` (no arguments) replaced by `literal`.

    Where the call is a whole select item without an alias, the item gets the
    alias a server would have shown (the call as written), so that clients
    reading columns by name see no difference.
    """
    lowered = sql.lower()
    if not any(name in lowered for name in names):
        return sql
    tokens = _spans(sql, mode)
    out, pos = [], 0
    for i, (kind, text, start, _end) in enumerate(tokens):
        if kind != "word" or text not in names:
            continue
        if i + 2 >= len(tokens) or tokens[i + 1][1] != b"(" or tokens[i + 2][1] != b")":
            continue
        if i and tokens[i - 1][1] == b".":
            continue  # db.database(): a stored function of that name
        end = tokens[i + 2][3]
        replacement = literal
        before = tokens[i - 1][1] if i else b""
        after = tokens[i + 3] if i + 3 < len(tokens) else None
        bare_item = before in (b"select", b",") and (after is None or after[1] in (b",", b"from", b";", b"limit"))
        if bare_item:
            replacement += b" AS `" + sql[start:end].replace(b"`", b"``") + b"`"
        out.append(sql[pos:start])
        out.append(replacement)
        pos = end
    out.append(sql[pos:])
    return b"".join(out)
