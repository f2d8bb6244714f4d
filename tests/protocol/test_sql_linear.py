# sql.py runs on every query text a client sends, on the event loop: its work
# must be linear in the length of the text, whatever the text (issue 16: an
# unterminated string of escaped quotes, an unterminated comment, or SET NAMES
# followed by a run of spaces once took seconds, quadratically). Nothing here
# times anything; the work is counted instead:
#  * bytes the lexer looked at (`_lex`'s own count: each of its C-level steps
#    reports how far it looked), for texts of 1x, 2x, 4x, 8x 8 KiB;
#  * Python lines executed in sql.py (sys.settrace), which catches a loop in
#    the analysis that walks back over earlier tokens.
# Then properties over adversarial shapes (hypothesis): every function on
# client text returns, within those bounds; the statements before a broken
# one are always seen (the server runs them); on well-formed text the lexer
# gives exactly the tokens of the single regex it replaced; the skeleton of a
# big text lexes like the text itself. Big texts: analysed through their
# skeleton, or assumed to do anything (unknown_effects) past ANALYZE_UP_TO.
from __future__ import annotations

import re
import sys
from dataclasses import fields

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from mysqlpool_proxy.protocol import sql
from mysqlpool_proxy.protocol.sql import (
    NO_EFFECTS,
    SqlEffects,
    analyze,
    parse_set_names,
    replace_connection_id,
    session_only,
    skeleton,
    tokenize,
    unknown_effects,
    without_schema,
)

KIB = 1024


def lines_run(fn, *args) -> int:
    """Python lines executed in sql.py while fn(*args) runs."""
    count = 0
    target = sql.__file__

    def local(frame, event, arg):
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename == target else None

    sys.settrace(tracer)
    try:
        fn(*args)
    finally:
        sys.settrace(None)
    return count


def looked(text: bytes) -> int:
    return sql._lex(text)[1]


# Each shape, grown to about `size` bytes. The first three are issue 16's.
SHAPES = {
    "escaped quotes, unterminated": lambda size: b"SELECT @a '" + b"\\'" * (size // 2),
    "comment openers, unterminated": lambda size: b"SELECT @a " + b"/* " * (size // 3),
    "SET NAMES and spaces": lambda size: b"SET NAMES a" + b" " * size + b"x",
    "double quotes and backslashes": lambda size: b'SELECT @a "' + b'\\"\\\\' * (size // 4),
    "backquotes, unterminated": lambda size: b"SELECT @a `" + b"`` " * (size // 3),
    "quoted user variable, unterminated": lambda size: b"SELECT @'" + b"''\\'" * (size // 4),
    "quote runs": lambda size: b"SELECT @a " + b"'\"`" * (size // 3),
    "executable comment openers": lambda size: b"SELECT @a " + b"/*!50000 " * (size // 9),
    "executable comment closers": lambda size: b"SELECT @a " + b"*/*" * (size // 3),
    "backslashes": lambda size: b"SELECT @a '" + b"\\" * size,
    "whitespace": lambda size: b"SELECT @a" + b" \t\r\n" * (size // 4) + b"'",
    "user variable list": lambda size: b"SELECT " + b"@a," * (size // 3) + b"1",
    "INTO list": lambda size: b"SELECT 1 INTO " + b"@a," * (size // 3) + b"@b",
    "distinct user variables": lambda size: b"SET " + b",".join(b"@v%d=1" % i for i in range(size // 8)),
    "system variable runs": lambda size: b"SELECT " + b"@@" * (size // 2),
    "dotted system variables": lambda size: b"SET " + b",".join(b"@@x%d = 1" % i for i in range(size // 10)),
    "nested SET STATEMENT": lambda size: b"SET STATEMENT a=1 FOR " * (size // 22) + b"SET @x = 1",
    "IF NOT EXISTS runs": lambda size: b"CREATE TEMPORARY TABLE " + b"if " * (size // 3) + b"t (a INT)",
    "statements": lambda size: b"SET @a=1;" * (size // 9),
    "parentheses": lambda size: b"SELECT GET_LOCK" + b"(" * size,
    "lock calls": lambda size: b"SELECT " + b"GET_LOCK('a', 1)," * (size // 17) + b"1",
    "DROP list": lambda size: b"DROP TABLE " + b"db.t," * (size // 5) + b"t",
}


@pytest.mark.parametrize("shape", SHAPES)
def test_the_lexer_looks_at_each_byte_a_bounded_number_of_times(shape):
    texts = {k: SHAPES[shape](k * 8 * KIB) for k in (1, 2, 4, 8)}
    per_byte = {k: looked(text) / len(text) for k, text in texts.items()}
    assert all(1 <= work <= 3 for work in per_byte.values()), per_byte  # each byte is looked at, a few times at most
    assert per_byte[8] <= 1.02 * per_byte[1], per_byte  # linear: 8x the text, 8x the work


@pytest.mark.parametrize("shape", SHAPES)
def test_python_steps_grow_linearly(shape):
    per_byte = {}
    for k in (1, 2, 4, 8):
        text = SHAPES[shape](k * KIB)
        work = sum(lines_run(fn, text) for fn in (analyze, session_only, parse_set_names, without_schema))
        per_byte[k] = (work + lines_run(replace_connection_id, text, 7)) / len(text)
    assert per_byte[8] <= 1.1 * per_byte[1] + 0.1, per_byte
    assert per_byte[2] <= 1.1 * per_byte[1] + 0.1, per_byte


def test_issue_16_texts_at_64_kib():
    for text in (SHAPES["escaped quotes, unterminated"](64 * KIB), SHAPES["comment openers, unterminated"](64 * KIB)):
        assert looked(text) <= 2 * len(text)
        assert analyze(text) == SqlEffects()  # the text after the opening quote or /* is not code
    spaces = b"SET NAMES a" + b" " * (64 * KIB)
    assert parse_set_names(spaces) == (b"a", None)
    assert parse_set_names(spaces + b"x") is None
    assert parse_set_names(b"SET NAMES a" + b" " * (1024 * KIB) + b";" + b" " * (1024 * KIB)) == (b"a", None)


# -- adversarial texts: properties -----------------------------------------------------------------

WELL_FORMED = [
    b"SELECT", b"SET", b"SESSION", b"GLOBAL", b"INTO", b"FROM", b"t", b"db.t", b"LOCK", b"UNLOCK", b"TABLES",
    b"CREATE", b"TEMPORARY", b"TABLE", b"DROP", b"PREPARE", b"DEALLOCATE", b"HANDLER", b"OPEN", b"CLOSE", b"XA",
    b"START", b"COMMIT", b"RELEASE", b"KILL", b"STATEMENT", b"FOR", b"NULL", b"GET_LOCK", b"RELEASE_LOCK",
    b"CONNECTION_ID",
    b"LAST_INSERT_ID", b"ROW_COUNT", b"SQL_CALC_FOUND_ROWS", b"DATABASE", b"@x", b"@`q``x`", b"@'s\\'x'", b"@\"d\"",
    b"@@session.sql_mode", b"@@identity", b"@@x", b":=", b"=", b",", b"(", b")", b";", b".", b"1", b"2.5e3", b"'s'",
    b"'it''s'", b"'a\\'b\\\\'", b'"d""q"', b"`q`", b"`a``b`", b"-- c\n", b"# c\n", b"/* c ' */",
    b"/*!40101 SET @y=1 */",
    b"/*M!100100 , @z := 2 */", b"\t", b"\n", b"\xc3\xa9", b"$x", b"_utf8'x'", b"x'41'",
]
BROKEN = [
    b"'", b'"', b"`", b"@'", b"@\"", b"@`", b"\\", b"\\'", b"\\\\", b"''", b"'''", b"/*", b"/*!", b"/*M!", b"*/",
    b"*", b"/", b"-", b"--", b"#", b"@", b"@@", b"@@@", b":", b"\r", b"\x00", b"\xff", b"M!", b"!",
]


def _repeated(parts):
    return st.tuples(st.sampled_from(parts), st.integers(1, 300)).map(lambda p: p[0] * p[1])


adversarial = st.lists(
    st.one_of(st.sampled_from(WELL_FORMED), st.sampled_from(BROKEN), _repeated(BROKEN + WELL_FORMED[-20:]),
              st.binary(max_size=8)),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(adversarial)
def test_every_function_returns_on_any_text_after_bounded_work(text):
    assert looked(text) <= 3 * len(text) + 16
    effects = analyze(text)
    assert isinstance(effects, SqlEffects)
    session_only(text)
    parse_set_names(text)
    assert isinstance(replace_connection_id(text, 7), bytes)
    assert isinstance(without_schema(text), bytes)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(adversarial)
def test_python_steps_are_bounded_by_the_length(text):
    # Linear, with the constant of the worst case: one token per byte, each walked by both functions
    # (`SET@@@,@@@,...`: about 75 lines per byte; a run of Hypothesis found 60 too tight). Anything
    # quadratic is far above it on the texts of thousands of bytes the strategy makes.
    steps = lines_run(analyze, text) + lines_run(session_only, text)
    assert steps <= 100 * len(text) + 300


# Effects that take something (each would pin, or must follow the client); a
# later statement can only add to them. (Releases and KILL are left out: a
# valid statement after the broken one may release what an earlier one took.)
TAKEN = ("user_var_write", "user_var_unknown", "session_tracking_changed", "lock_tables", "xa_started",
         "reads_connection_id", "reads_insert_id", "sets_insert_id", "reads_diagnostics", "calc_found_rows",
         "releases_connection")
TAKEN_LISTS = ("sysvars_set_null", "temp_tables_created", "named_locks_taken", "sql_prepared", "handlers_opened",
               "user_vars_written", "sysvars_untracked")


def covers(big: SqlEffects, small: SqlEffects) -> bool:
    """Does `big` take at least everything `small` takes?"""
    if big.user_var_unknown and big.named_locks_taken == [None]:
        return True  # unknown_effects(): pinned for good, whatever small takes
    flags = all(getattr(big, name) or not getattr(small, name) for name in TAKEN)
    lists = all(set(getattr(small, name)) <= set(getattr(big, name)) for name in TAKEN_LISTS)
    stage = small.backup_stage is None or big.backup_stage is not None
    return flags and lists and stage


well_formed_statements = st.lists(st.sampled_from(WELL_FORMED), min_size=1, max_size=12).map(b" ".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(well_formed_statements, min_size=1, max_size=4), adversarial)
def test_statements_before_a_broken_one_are_always_seen(statements, tail):
    """The server runs the statements before one it cannot parse (1064); a broken
    tail (unterminated literal or comment...) must not hide what they did."""
    prefix = b";".join(statements) + b";"
    before, whole = analyze(prefix), analyze(prefix + tail)
    assert covers(whole, before), (before, whole)


def test_an_unterminated_literal_swallows_what_follows_as_the_server_does():
    # MariaDB: "SET @x=6; SELECT 'abc" sets @x and then fails with 1064; the rest is never run
    assert analyze(b"SET @x = 6; SELECT 'abc; SET @y = 1") == SqlEffects(user_var_write=True, user_vars_written=[b"x"])
    assert analyze(b"SET @x = 6; /* SET @y = 1") == SqlEffects(user_var_write=True, user_vars_written=[b"x"])
    assert tokenize(b"SELECT @'ab") == [("word", b"select"), ("open", b"@'ab")]
    # an unterminated lock name is no name: the lock pins until RELEASE_ALL_LOCKS()
    assert analyze(b"SELECT GET_LOCK('ab") == SqlEffects(named_locks_taken=[None])


def test_a_comment_closer_outside_an_executable_comment_is_not_one():
    # MariaDB reads "2*/* ' */ 3" as 2 * 3 with a comment between; the quote is inside it
    assert analyze(b"SELECT 2*/* ' */ 3, @x := 1") == SqlEffects(user_var_write=True, user_vars_written=[b"x"])
    assert analyze(b"/*!40101 SET @x = 1 */ */ SELECT 1") == SqlEffects(user_var_write=True, user_vars_written=[b"x"])


# -- on well-formed text: exactly the tokens of the regex the lexer replaced ------------------------

# The tokenizer's regex before issue 16, kept here as a reference: exact on text
# whose literals and comments are all closed (on other text it takes quadratic time).
REFERENCE = re.compile(
    rb"""
     (?P<ws>\s+)
    |(?P<comment>--(?:[ \t\r\n][^\n]*|$)|\#[^\n]*|/\*(?!!|M!).*?\*/)
    |(?P<xopen>/\*M?!\d*)
    |(?P<xclose>\*/)
    |(?P<sysvar>@@(?:[A-Za-z_$\x80-\xff][\w$\x80-\xff]*\.)?[A-Za-z_$\x80-\xff][\w$\x80-\xff]*)
    |(?P<uvar>@(?:`[^`]*(?:``[^`]*)*`|'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*"
                 |[\w$.\x80-\xff]+))
    |(?P<str>'[^'\\]*(?:(?:\\.|'')[^'\\]*)*'|"[^"\\]*(?:(?:\\.|"")[^"\\]*)*")
    |(?P<qid>`[^`]*(?:``[^`]*)*`)
    |(?P<word>[A-Za-z_$\x80-\xff][\w$\x80-\xff]*)
    |(?P<num>\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
    |(?P<op>:=|.)
    """,
    re.S | re.X,
)


def reference_spans(text: bytes) -> list[tuple[str, int, int]]:
    return [(m.lastgroup, m.start(), m.end()) for m in REFERENCE.finditer(text)
            if m.lastgroup not in ("ws", "comment", "xopen", "xclose")]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(WELL_FORMED), max_size=30).map(b" ".join))
def test_well_formed_text_lexes_as_before(text):
    assert sql._lex(text)[0] == reference_spans(text)


# -- big texts: the skeleton, and the bound ---------------------------------------------------------

long_literals = st.builds(
    lambda quote, body, n: quote + body * n + quote,
    st.sampled_from([b"'", b'"']), st.sampled_from([b"a", b"\\'", b"''", b'\\"', b"x;y", b"@", b"*/", b"\\\\"]),
    st.integers(100, 400),
)
long_comments = st.builds(lambda body, n: b"/*" + body * n + b"*/", st.sampled_from([b"a", b"'", b"@x:=1;"]),
                          st.integers(100, 400))
big_parts = st.lists(st.one_of(st.sampled_from(WELL_FORMED), st.sampled_from(BROKEN), long_literals, long_comments),
                     max_size=30).map(b" ".join)


def significant(text: bytes) -> list[tuple[str, bytes | None]]:
    """The lexer's tokens, literals' values left out (the skeleton empties long ones)."""
    return [(kind, None if kind in (sql.STR, sql.OPEN) else text[start:end]) for kind, start, end in sql._lex(text)[0]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(big_parts)
def test_the_skeleton_lexes_like_the_text(text):
    bones = skeleton(text)
    assert len(bones) <= len(text)
    assert significant(bones) == significant(text)


def test_a_big_insert_is_analysed_through_its_skeleton():
    blob = b"'" + b"\\'ab" * (512 * KIB) + b"'"
    text = b"SET @x = 1; INSERT INTO t VALUES (1, " + blob + b", NULL); SELECT GET_LOCK('l', 1)"
    assert len(text) > 2 * 1024 * KIB
    assert analyze(text) == SqlEffects(user_var_write=True, user_vars_written=[b"x"], named_locks_taken=[b"l"])
    assert len(skeleton(text)) < 200


def test_a_text_too_big_to_analyse_is_assumed_to_do_anything():
    many_tokens = b"INSERT INTO t VALUES " + b",".join(b"(%d, NULL)" % i for i in range(40000))
    assert len(many_tokens) > sql.ANALYZE_UP_TO
    assert analyze(many_tokens) == unknown_effects()
    assert covers(unknown_effects(), analyze(b"SET @x = 1; SELECT GET_LOCK('a', 1)"))
    no_trigger = b"INSERT INTO t VALUES " + b",".join(b"(%d, 'x')" % i for i in range(40000))
    assert analyze(no_trigger) is NO_EFFECTS


def test_unknown_effects_pin():
    from mysqlpool_proxy.core.pins import Pins

    pins = Pins()
    pins.apply_sql(unknown_effects(), succeeded=False)  # even when it failed: it may have run in part
    assert pins and not pins.only_soft()


def test_repeated_names_are_recorded_once():
    text = b"SET " + b",".join(b"@v%d = 1, @@x%d = 2" % (i % 7, i % 5) for i in range(500))
    fx = analyze(text)
    assert fx.user_vars_written == [b"v%d" % i for i in range(7)]
    assert fx.sysvars_untracked == [b"x%d" % i for i in range(5)]


def test_covers_sees_every_field():
    # every SqlEffects field is either a take (checked by covers), a release, or KILL
    releases = {"tables_dropped", "unlock_tables", "named_locks_released", "release_all_locks", "sql_deallocated",
                "handlers_closed", "xa_ended", "kill", "backup_stage"}
    assert {f.name for f in fields(SqlEffects)} == set(TAKEN) | set(TAKEN_LISTS) | releases
