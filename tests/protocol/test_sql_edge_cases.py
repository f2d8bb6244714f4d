# sql.py edge cases (each was a bug once):
#  1. analyze() must not raise on short statements (LOCK, DROP, XA, ...): the
#     exception would escape ClientConnection.data_received.
#  2. SET STATEMENT v=x FOR <statement>: the inner statement's effects count,
#     and session_only() does not call it a pure SET.
#  3. HANDLER t OPEN AS alias: the handler is named by the alias afterwards.
#  4. FLUSH TABLES t FOR EXPORT holds table locks until UNLOCK TABLES.
#  5. A plain comment that starts with "M" (/*Maybe ...*/) is read as code.
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mysqlpool_proxy.protocol.sql import SqlEffects, analyze, parse_set_names, session_only

# 1 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    b"LOCK", b"UNLOCK", b"DROP", b"XA", b"BACKUP", b"DEALLOCATE", b"SET SESSION;SELECT @a",
    b"SELECT 1; DROP", b"lock ;",
])
def test_analyze_never_raises_on_short_statements(sql):
    analyze(sql)  # a syntax error is the server's to report


@given(st.lists(st.sampled_from([
    b"SET", b"SESSION", b"GLOBAL", b"LOCK", b"UNLOCK", b"TABLES", b"DROP", b"TEMPORARY", b"TABLE", b"XA",
    b"START", b"BACKUP", b"STAGE", b"DEALLOCATE", b"PREPARE", b"HANDLER", b"KILL", b"CREATE", b"@x", b"=",
    b":=", b"NULL", b",", b";", b"(", b")", b"'s'", b"`q`", b"1", b"/*!", b"*/", b"--", b"\n", b"#",
]), max_size=8))
def test_analyze_never_raises(words):
    sql = b" ".join(words)
    analyze(sql)
    session_only(sql)
    parse_set_names(sql)


# 2 ---------------------------------------------------------------------------------------------


def test_set_statement_for_keeps_the_inner_statements_effects():
    """MariaDB: SET STATEMENT var=value FOR stmt is 'SET SESSION var=value; stmt;
    SET SESSION var=@save' - stmt can be anything, e.g. CREATE TEMPORARY TABLE."""
    sql = b"SET STATEMENT max_statement_time=10 FOR CREATE TEMPORARY TABLE t (x INT)"
    assert analyze(sql) == SqlEffects(temp_tables_created=[b"t"])
    assert analyze(b"SET STATEMENT sql_mode='' FOR LOCK TABLES t WRITE") == SqlEffects(lock_tables=True)
    assert analyze(b"SET STATEMENT sql_mode='' FOR PREPARE s FROM 'SELECT 1'") == SqlEffects(sql_prepared=[b"s"])


def test_set_statement_for_is_not_session_only():
    # session_only() explains a state-change flag away as "the trackers said it all"
    assert session_only(b"SET STATEMENT max_statement_time=10 FOR CREATE TEMPORARY TABLE t (x INT)") is False


# 3 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [b"HANDLER t OPEN AS h", b"HANDLER t OPEN h", b"HANDLER db.t OPEN AS h"])
def test_handler_open_with_alias(sql):
    """MySQL/MariaDB HANDLER: 'If you open the table using an alias, further references
    to the open table with other HANDLER statements must use the alias'; HANDLER h CLOSE
    must then close what was opened."""
    assert analyze(sql).handlers_opened == [b"h"]
    assert analyze(b"HANDLER h CLOSE").handlers_closed == [b"h"]


# 4 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [b"FLUSH TABLES t FOR EXPORT", b"FLUSH TABLE db.t1, t2 FOR EXPORT"])
def test_flush_tables_for_export_locks(sql):
    """MariaDB: 'The table is read locked until one has issued UNLOCK TABLES.'"""
    assert analyze(sql).lock_tables is True


# 5 ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    b"/*Maybe GET_LOCK('x', 1)*/ SELECT 1",
    b"SELECT 1 /*MORE: @x := 1 */",
])
def test_comment_starting_with_m_is_a_comment(sql):
    # Only /*M!nnnnnn ... */ is MariaDB's executable comment; /*M... is an ordinary one.
    assert analyze(sql) == SqlEffects()
