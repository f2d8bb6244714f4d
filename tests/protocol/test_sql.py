# sql.py: what a COM_QUERY text does to session state that the trackers do not
# report. Each case states the complete SqlEffects expected (so spurious
# effects fail too): user-variable writes (SET @x, :=, INTO @a, @b), system
# variables set to NULL, session_track changes, temporary tables, LOCK /
# UNLOCK TABLES, FLUSH TABLES WITH READ LOCK, named locks with literal and
# non-literal names, SQL PREPARE / DEALLOCATE, HANDLER, XA, KILL forms,
# CONNECTION_ID(); keywords inside strings, comments and backquoted
# identifiers are not effects, executable comments /*! ... */ are;
# multi-statement texts; session_only(); parse_set_names(); the rewrites
# replace_connection_id() and without_schema().
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from mysqlpool_proxy.protocol.sql import (
    INTERESTING,
    NO_EFFECTS,
    SHAPE_UP_TO,
    SqlEffects,
    analyze,
    parse_set_names,
    releases_connection,
    replace_connection_id,
    session_only,
    tables_redefined,
    without_schema,
)


def case(sql: str, **effects):
    return pytest.param(sql.encode(), SqlEffects(**effects), id=sql[:60])


def check(sql: bytes, expected: SqlEffects) -> None:
    assert analyze(sql) == expected


NOTHING = SqlEffects()

# -- user variables ---------------------------------------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    case("SET @x = 1", user_var_write=True, user_vars_written=[b"x"]),
    case("set @X:=1", user_var_write=True, user_vars_written=[b"x"]),
    case("SET @x = NULL", user_var_write=True, user_vars_written=[b"x"]),
    case("SET @`my var` = 1", user_var_write=True, user_vars_written=[b"my var"]),
    case("SET @'quoted' = 'v'", user_var_write=True, user_vars_written=[b"quoted"]),
    case("SET sql_mode = 'ANSI', @x = 2", user_var_write=True, user_vars_written=[b"x"]),
    case("SELECT @x := 1", user_var_write=True, user_vars_written=[b"x"]),
    case("SELECT (@n := @n + 1) AS rownum, a FROM t", user_var_write=True, user_vars_written=[b"n"]),
    case("DO @x := 5", user_var_write=True, user_vars_written=[b"x"]),
    case("UPDATE t SET a = (@old := a) + 1 WHERE id = 3", user_var_write=True, user_vars_written=[b"old"]),
    case("SELECT 1 INTO @a", user_var_write=True, user_vars_written=[b"a"]),
    case("SELECT a, b FROM t WHERE id = 1 INTO @a, @b", user_var_write=True, user_vars_written=[b"a", b"b"]),
    case("SELECT a, b INTO @a,@b FROM t LIMIT 1", user_var_write=True, user_vars_written=[b"a", b"b"]),
    case("SELECT COUNT(*) FROM t INTO @`n`", user_var_write=True, user_vars_written=[b"n"]),
])
def test_user_variable_writes(sql, expected):
    check(sql, expected)


@pytest.mark.parametrize("sql,expected", [
    case("SELECT @x"),
    case("SELECT * FROM t WHERE a = @x AND b = @y"),
    case("INSERT INTO t VALUES (@x, @y)"),
    case("SELECT a, @b FROM t"),
    case("SELECT 1 INTO OUTFILE '/tmp/x'"),
    case("SELECT @@session.sql_mode, @@autocommit"),
    case("SELECT a = @x, b FROM t WHERE c IN (@p, @q)"),
])
def test_user_variable_reads_are_not_writes(sql, expected):
    check(sql, expected)


# -- system variables set to NULL; session tracking -----------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    case("SET character_set_results = NULL", sysvars_set_null=[b"character_set_results"]),
    case("SET @@character_set_results = NULL", sysvars_set_null=[b"character_set_results"]),
    case("SET @@session.character_set_results=NULL", sysvars_set_null=[b"character_set_results"]),
    case("SET @@SESSION.Character_Set_Results = null", sysvars_set_null=[b"character_set_results"]),
    case("SET SESSION character_set_results = NULL", sysvars_set_null=[b"character_set_results"]),
    case("SET LOCAL character_set_results = NULL", sysvars_set_null=[b"character_set_results"]),
    case("SET @@local.character_set_results = NULL", sysvars_set_null=[b"character_set_results"]),
    case("SET sql_mode = 'ANSI', character_set_results = NULL", sysvars_set_null=[b"character_set_results"]),
    case("SET character_set_results = NULL, collation_connection = NULL",
         sysvars_set_null=[b"character_set_results", b"collation_connection"]),
    case("SET GLOBAL character_set_results = NULL"),
    case("SET @@global.character_set_results = NULL"),
    # the last GLOBAL/SESSION keyword applies to the assignments that follow it
    case("SET GLOBAL max_connections = 10, character_set_results = NULL"),
    case("SET @@session.a = NULL, GLOBAL b = NULL", sysvars_set_null=[b"a"]),
    case("SET character_set_results = 'NULL'"),
    case("SET character_set_results = IFNULL(NULL, 'utf8')"),
    case("SELECT NULL"),
])
def test_system_variables_set_to_null(sql, expected):
    check(sql, expected)


@pytest.mark.parametrize("sql,expected", [
    case("SET session_track_schema = OFF", session_tracking_changed=True),
    case("SET @@session_track_system_variables = ''", session_tracking_changed=True),
    case("SET SESSION session_track_state_change = 0", session_tracking_changed=True),
    case("SET @@session.session_track_transaction_info = 'OFF'", session_tracking_changed=True),
    case("SET session_track_gtids = NULL", session_tracking_changed=True, sysvars_set_null=[b"session_track_gtids"]),
    case("SET GLOBAL session_track_schema = OFF"),
    case("SELECT @@session_track_schema"),
])
def test_session_tracking_changes(sql, expected):
    check(sql, expected)


# -- temporary tables --------------------------------------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    case("CREATE TEMPORARY TABLE tmp (id INT)", temp_tables_created=[b"tmp"]),
    case("create temporary table if not exists `Tmp2` like t", temp_tables_created=[b"tmp2"]),
    case("CREATE OR REPLACE TEMPORARY TABLE db1.t3 AS SELECT 1", temp_tables_created=[b"t3"]),
    case("CREATE TEMPORARY TABLE `a``b` (x INT)", temp_tables_created=[b"a`b"]),
    case("CREATE TABLE `temporary` (x INT)"),
    case("CREATE TABLE t (temporary INT)"),
    case("DROP TEMPORARY TABLE tmp", tables_dropped=[b"tmp"]),
    case("DROP TEMPORARY TABLE IF EXISTS a, db.b", tables_dropped=[b"a", b"b"]),
    case("DROP TABLE t1, `T2`", tables_dropped=[b"t1", b"t2"]),
    case("DROP TABLES IF EXISTS x", tables_dropped=[b"x"]),
    case("DROP DATABASE d"),
    case("DROP VIEW v"),
])
def test_temporary_tables(sql, expected):
    check(sql, expected)


# -- table locks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    case("LOCK TABLES t READ", lock_tables=True),
    case("lock table t1 WRITE, t2 READ LOCAL", lock_tables=True),
    case("UNLOCK TABLES", unlock_tables=True),
    case("unlock table", unlock_tables=True),
    case("FLUSH TABLES WITH READ LOCK", lock_tables=True),
    case("FLUSH TABLES t1, t2 WITH READ LOCK", lock_tables=True),
    case("SELECT * FROM t FOR UPDATE"),
    case("SELECT * FROM t LOCK IN SHARE MODE"),
    case("SELECT 'LOCK TABLES t READ'"),
])
def test_table_locks(sql, expected):
    check(sql, expected)


# -- named locks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    case("SELECT GET_LOCK('a', 10)", named_locks_taken=[b"a"]),
    case('SELECT get_lock("job", 0)', named_locks_taken=[b"job"]),
    case("DO GET_LOCK('x', 1)", named_locks_taken=[b"x"]),
    case("SELECT GET_LOCK ('spaced', 1)", named_locks_taken=[b"spaced"]),
    case("SELECT GET_LOCK('a', 1), GET_LOCK('b', 1)", named_locks_taken=[b"a", b"b"]),
    case("SELECT GET_LOCK('q''uote', 1)", named_locks_taken=[b"q'uote"]),
    case("SELECT GET_LOCK('back\\'slash', 1)", named_locks_taken=[b"back'slash"]),
    case("SELECT GET_LOCK(@name, 10)", named_locks_taken=[None]),
    case("SELECT GET_LOCK(CONCAT('job-', id), 10) FROM t", named_locks_taken=[None]),
    case("SELECT GET_LOCK(?, 1)", named_locks_taken=[None]),
    case("SELECT RELEASE_LOCK('a')", named_locks_released=[b"a"]),
    case("SELECT RELEASE_LOCK(@n)", named_locks_released=[None]),
    case("SELECT RELEASE_ALL_LOCKS()", release_all_locks=True),
    case("SELECT IS_FREE_LOCK('a'), IS_USED_LOCK('a')"),
    case("SELECT 'GET_LOCK(1)'"),
])
def test_named_locks(sql, expected):
    check(sql, expected)


# -- SQL prepared statements, HANDLER, XA --------------------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    case("PREPARE stmt1 FROM 'SELECT 1'", sql_prepared=[b"stmt1"]),
    case("PREPARE `S2` FROM @sql", sql_prepared=[b"s2"]),
    case("DEALLOCATE PREPARE stmt1", sql_deallocated=[b"stmt1"]),
    case("DROP PREPARE Stmt1", sql_deallocated=[b"stmt1"]),
    case("EXECUTE stmt1 USING @a"),
    case("HANDLER t OPEN", handlers_opened=[b"t"]),
    case("HANDLER db.t OPEN", handlers_opened=[b"t"]),
    case("HANDLER t CLOSE", handlers_closed=[b"t"]),
    case("HANDLER t READ FIRST"),
    case("XA START 'xid1'", xa_started=True),
    case("XA BEGIN 'xid1'", xa_started=True),
    case("XA END 'xid1'"),
    case("XA PREPARE 'xid1'"),
    case("XA COMMIT 'xid1'", xa_ended=True),
    case("XA COMMIT 'xid1' ONE PHASE", xa_ended=True),
    case("XA ROLLBACK 'xid1'", xa_ended=True),
    case("XA RECOVER"),
])
def test_prepare_handler_xa(sql, expected):
    check(sql, expected)


# -- KILL, CONNECTION_ID() -----------------------------------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    case("KILL 42", kill=("connection", 42)),
    case("KILL CONNECTION 42", kill=("connection", 42)),
    case("kill hard connection 7", kill=("connection", 7)),
    case("KILL SOFT 9", kill=("connection", 9)),
    case("KILL QUERY 42", kill=("query", 42)),
    case("KILL HARD QUERY 42", kill=("query", 42)),
    case("KILL QUERY ID 42"),  # a query id, not a connection id
    case("KILL USER 'bob'"),
    case("KILL CONNECTION_ID()", reads_connection_id=True),
    case("SELECT 'KILL 42'"),
    case("SELECT CONNECTION_ID()", reads_connection_id=True),
    case("select connection_id ( )", reads_connection_id=True),
    case("SELECT * FROM information_schema.processlist WHERE id = CONNECTION_ID()", reads_connection_id=True),
    case("SELECT 'connection_id()'"),
    case("SELECT `connection_id` FROM t"),
])
def test_kill_and_connection_id(sql, expected):
    check(sql, expected)


# -- strings, comments, identifiers, executable comments -----------------------------------------


@pytest.mark.parametrize("sql,expected", [
    case("SELECT 'SET @x = 1'"),
    case('SELECT "@x := 1"'),
    case("SELECT 'it''s', \"GET_LOCK('a', 1)\""),
    case("SELECT 'a\\'; SET @x = 1; SELECT \\''"),
    case("SELECT 1 -- := @x"),
    case("SELECT 1 --\tGET_LOCK('a', 1)"),
    case("SELECT 1 # GET_LOCK('a', 1)\n"),
    case("SELECT /* GET_LOCK('a', 1) */ 1"),
    case("SELECT /* multi\nline @x := 1\n*/ 1"),
    case("SELECT /*+ MAX_EXECUTION_TIME(1000) */ a FROM t WHERE b = 'GET_LOCK(1)'"),
    case("SELECT `GET_LOCK('a', 1)` FROM t"),
    case("SELECT 1 AS `lock tables`, `@x` FROM `temporary`"),
    case("SELECT 1 AS `:=`"),
    # not comments: `--` must be followed by whitespace
    case("SELECT 1--1, GET_LOCK('a', 1)", named_locks_taken=[b"a"]),
    # executable comments run
    case("/*!40101 SET @x = 1 */", user_var_write=True, user_vars_written=[b"x"]),
    case("/*! SELECT GET_LOCK('a', 1) */", named_locks_taken=[b"a"]),
    case("SELECT 1 /*!50000 , GET_LOCK('b', 1) */", named_locks_taken=[b"b"]),
    case("/*M!100100 SET @x = 1 */", user_var_write=True, user_vars_written=[b"x"]),
    case("/*!40014 SET @OLD_UNIQUE_CHECKS=@@UNIQUE_CHECKS, UNIQUE_CHECKS=0 */", user_var_write=True,
         user_vars_written=[b"old_unique_checks"]),
    case("/*!40103 SET TIME_ZONE=NULL */", sysvars_set_null=[b"time_zone"]),
])
def test_strings_comments_identifiers(sql, expected):
    check(sql, expected)


# -- multi-statement texts -----------------------------------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    case("SELECT 1; SET @x = 1", user_var_write=True, user_vars_written=[b"x"]),
    case("CREATE TEMPORARY TABLE a (x INT); DROP TEMPORARY TABLE a", temp_tables_created=[b"a"],
         tables_dropped=[b"a"]),
    case("SELECT ';'; SELECT GET_LOCK('a', 1)", named_locks_taken=[b"a"]),
    case("SELECT 'a;b'"),
    case("LOCK TABLES t WRITE; UNLOCK TABLES", lock_tables=True, unlock_tables=True),
    case("SELECT GET_LOCK('a', 1); SELECT RELEASE_LOCK('a');", named_locks_taken=[b"a"],
         named_locks_released=[b"a"]),
    case(";; SET @x = 1 ;;", user_var_write=True, user_vars_written=[b"x"]),
    case("SET @x = 1; PREPARE s FROM @q; XA START 'x'", user_var_write=True, user_vars_written=[b"x"],
         sql_prepared=[b"s"], xa_started=True),
])
def test_multi_statements(sql, expected):
    check(sql, expected)


def test_any():
    assert not SqlEffects().any
    assert not analyze(b"SELECT 1").any
    assert not analyze(b"SELECT * FROM t WHERE name = 'null' AND lock_id = 3").any
    assert analyze(b"SET @x = 1").any
    assert analyze(b"SELECT GET_LOCK(@n, 1)").any


def test_boring_statements_have_no_effects():
    for sql in (b"SELECT 1", b"INSERT INTO t VALUES (1)", b"BEGIN", b"COMMIT", b"UPDATE t SET a = 1",
                b"SHOW TABLES", b"", b"   ", b";"):
        assert analyze(sql) == NOTHING


# -- tables_redefined() --------------------------------------------------------------------------


@pytest.mark.parametrize("sql, tables", [
    (b"CREATE INDEX user_tmp_ix ON user_tmp_main (foo)", [b"user_tmp_main"]),
    (b"create unique index if not exists `i` using btree on db.`T1` (a, b)", [b"t1"]),
    (b"CREATE OR REPLACE FULLTEXT INDEX i ON t (c)", [b"t"]),
    (b"DROP INDEX IF EXISTS i ON t", [b"t"]),
    (b"ALTER TABLE t ADD COLUMN b INT", [b"t"]),
    (b"ALTER ONLINE IGNORE TABLE IF EXISTS `db`.`t` ADD INDEX (a)", [b"t"]),
    (b"ALTER TABLE a ADD COLUMN x INT; CREATE INDEX i ON b (x)", [b"a", b"b"]),
])
def test_tables_redefined(sql, tables):
    assert tables_redefined(sql) == tables


@pytest.mark.parametrize("sql", [
    b"CREATE TABLE t (id INT)",
    b"DROP TABLE t",
    b"ALTER TABLE t ADD COLUMN b INT; SELECT @x := 1",  # one statement that is not DDL on a table: None
    b"ALTER DATABASE d CHARACTER SET utf8mb4",
    b"ALTER VIEW v AS SELECT 1",
    b"CREATE INDEX i",  # no table
    b"SELECT 'CREATE INDEX i ON t (a)'",
    b"",
])
def test_tables_redefined_is_none_for_anything_else(sql):
    assert tables_redefined(sql) is None


# -- session_only() ------------------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    b"SET sql_mode = 'ANSI'",
    b"SET SESSION wait_timeout = 10",
    b"SET @@session.time_zone = '+00:00'",
    b"SET autocommit = 0, sql_mode = ''",
    b"USE db",
    b"use `db`",
    b"SET NAMES utf8mb4",
    b"SET autocommit = 0; USE d",
    b"/*!40101 SET character_set_client = utf8 */",
])
def test_session_only(sql):
    assert session_only(sql) is True


@pytest.mark.parametrize("sql", [
    b"SET @x = 1",
    b"SET sql_mode = '', @x = 1",
    b"SET sql_mode = (SELECT @x := 'ANSI')",
    b"SELECT 1",
    b"USE d; SELECT 1",
    b"SET autocommit = 0; CREATE TEMPORARY TABLE t (x INT)",
    b"",
    b";",
])
def test_not_session_only(sql):
    assert session_only(sql) is False


# -- parse_set_names() ---------------------------------------------------------------------------


@pytest.mark.parametrize("sql,expected", [
    (b"SET NAMES utf8mb4", (b"utf8mb4", None)),
    (b"set names 'utf8mb4' collate 'utf8mb4_unicode_ci'", (b"utf8mb4", b"utf8mb4_unicode_ci")),
    (b"SET NAMES `latin1` COLLATE latin1_swedish_ci;", (b"latin1", b"latin1_swedish_ci")),
    (b"  SET NAMES UTF8MB4  ", (b"utf8mb4", None)),
    (b'SET NAMES "utf8"', (b"utf8", None)),
    (b"SET\tNAMES\nbinary", (b"binary", None)),
])
def test_parse_set_names(sql, expected):
    assert parse_set_names(sql) == expected


@pytest.mark.parametrize("sql", [
    b"SET NAMES DEFAULT",
    b"SET NAMES utf8; SELECT 1",
    b"SET NAMES utf8, autocommit = 0",
    b"SET CHARACTER SET utf8",
    b"SET NAMES",
    b"SET NAMES utf8 COLLATE",
    b"SELECT 'SET NAMES utf8'",
    b"/*!40101 SET NAMES utf8 */",
    b"SET NAMES utf8 -- comment",
    b"SET NAMESutf8",
])
def test_parse_set_names_declines(sql):
    assert parse_set_names(sql) is None


@pytest.mark.parametrize("sql, expected", [
    (b"SELECT CONNECTION_ID()", b"SELECT 77 AS `CONNECTION_ID()`"),
    (b"SELECT connection_id ( ), 1", b"SELECT 77 AS `connection_id ( )`, 1"),
    (b"SELECT CONNECTION_ID() AS me", b"SELECT 77 AS me"),
    (b"KILL CONNECTION_ID()", b"KILL 77"),
    (b"SELECT 'CONNECTION_ID()', `connection_id`() /* CONNECTION_ID() */",
     b"SELECT 'CONNECTION_ID()', `connection_id`() /* CONNECTION_ID() */"),
    (b"SELECT db.connection_id()", b"SELECT db.connection_id()"),
])
def test_replace_connection_id(sql, expected):
    assert replace_connection_id(sql, 77) == expected


NULL_SCHEMA = b"CAST(NULL AS CHAR(64))"


@pytest.mark.parametrize("sql, expected", [
    (b"SELECT DATABASE(), ?", b"SELECT " + NULL_SCHEMA + b" AS `DATABASE()`, ?"),
    (b"SELECT schema() FROM t.x", b"SELECT " + NULL_SCHEMA + b" AS `schema()` FROM t.x"),
    (b"SELECT a FROM d.t WHERE DATABASE() IS NULL", b"SELECT a FROM d.t WHERE " + NULL_SCHEMA + b" IS NULL"),
    (b"SELECT 'DATABASE()' -- DATABASE()", b"SELECT 'DATABASE()' -- DATABASE()"),
    (b"SELECT d.database(), `database`", b"SELECT d.database(), `database`"),
    (b"SELECT COUNT(*) FROM d.t WHERE owner = ?", b"SELECT COUNT(*) FROM d.t WHERE owner = ?"),
])
def test_without_schema(sql, expected):
    assert without_schema(sql) == expected


def test_statements_with_kill_finds_each_kill_and_its_span():
    from mysqlpool_proxy.protocol.sql import KillStatement, replace_spans, statements_with_kill
    sql = b"SELECT 'KILL 1'; kill query 7 ;/* KILL 8 */ KILL CONNECTION 9; KILL QUERY ID 10; SELECT 2"
    count, kills = statements_with_kill(sql)
    assert count == 5
    assert [(k.kind, k.target) for k in kills] == [("query", 7), ("connection", 9)]
    assert [sql[k.start:k.end] for k in kills] == [b"kill query 7", b"KILL CONNECTION 9"]
    assert replace_spans(sql, [(k.start, k.end, b"DO 0") for k in kills]) == \
        b"SELECT 'KILL 1'; DO 0 ;/* KILL 8 */ DO 0; KILL QUERY ID 10; SELECT 2"
    assert statements_with_kill(b"KILL 3") == (1, [KillStatement("connection", 3, 0, 6)])
    assert statements_with_kill(b"") == (0, [])


def test_statements_are_cut_as_the_clients_sql_mode_reads_quotes():
    from mysqlpool_proxy.protocol.sql import ANSI_QUOTES, NO_BACKSLASH_ESCAPES
    nbe = b"SELECT 'a\\'; SET @x = 1; SELECT '\\'"  # with NO_BACKSLASH_ESCAPES: three statements
    assert not analyze(nbe).user_var_write
    assert analyze(nbe, NO_BACKSLASH_ESCAPES).user_vars_written == [b"x"]
    ansi = b'SELECT "a\\"; SET @y = 1; SELECT "\\"'  # with ANSI_QUOTES "..." is an identifier
    assert not analyze(ansi).user_var_write
    assert analyze(ansi, ANSI_QUOTES).user_vars_written == [b"y"]
    assert analyze(b"SELECT 'it''s'; SET @z = 2", NO_BACKSLASH_ESCAPES).user_vars_written == [b"z"]


@pytest.mark.parametrize(("sql", "releases", "with_completion_release"), [
    (b"COMMIT RELEASE", True, True),
    (b"rollback work release", True, True),
    (b"COMMIT AND NO CHAIN RELEASE", True, True),
    (b"COMMIT NO RELEASE", False, False),
    (b"COMMIT", False, True),
    (b"ROLLBACK WORK", False, True),
    (b"COMMIT AND CHAIN", False, False),
    (b"COMMIT AND NO CHAIN", False, True),
    (b"ROLLBACK TO SAVEPOINT s1", False, False),
    (b"SELECT 'COMMIT RELEASE'", False, False),
    (b"SELECT RELEASE_LOCK('x')", False, False),
    (b"INSERT INTO t VALUES (1); COMMIT RELEASE", True, True),
])
def test_commit_or_rollback_that_releases_the_connection(sql, releases, with_completion_release):
    assert analyze(sql).releases_connection is releases
    assert releases_connection(sql) is with_completion_release


# -- the shape check -------------------------------------------------------------------------
# A short text's "does it mention a trigger word" is remembered by its shape (lower-cased, digits
# dropped): it must never say no where the text itself says yes, however digits sit around the
# words (xa has word boundaries), and whether it is asked the first time or again.

_PIECES = st.sampled_from([b"lock", b"LOCK", b"xa", b"XA", b"@", b"drop", b"null", b"select", b"from t",
                           b"where id=", b" ", b"_", b"(", b"'", b"1", b"42", b"x", b"a", b"9xa", b"xa9", b"z"])


@given(st.lists(_PIECES, max_size=12).map(b"".join), st.integers(0, 10 ** 9))
def test_the_shape_of_a_text_never_hides_a_trigger_word(text, number):
    for sql in (text, text + b"%d" % number, b"%d" % number + text):
        for _ in range(2):  # asked, then remembered
            if INTERESTING.search(sql) is not None:
                assert analyze(sql) == analyze_without_shapes(sql), sql
            else:  # (NO_EFFECTS itself, or the same found the long way: a shape may show more words)
                assert analyze(sql) == NO_EFFECTS, sql


def analyze_without_shapes(sql: bytes) -> SqlEffects:
    """The analysis of a text as if it were too long to have its shape remembered."""
    padded = sql + b" " * (SHAPE_UP_TO + 1 - len(sql))
    return analyze(padded)


def test_statements_that_differ_only_in_numbers_share_their_shape():
    assert analyze(b"SELECT c FROM sbtest1 WHERE id=4711") is NO_EFFECTS
    assert analyze(b"SELECT c FROM sbtest1 WHERE id=12") is NO_EFFECTS
    assert analyze(b"SELECT c FROM t2 WHERE id=1 FOR UPDATE") is NO_EFFECTS
    assert analyze(b"SELECT GET_LOCK('l2', 10)").named_locks_taken == [b"l2"]
    assert analyze(b"SELECT 1 FROM t1 LOCK IN SHARE MODE") == analyze_without_shapes(
        b"SELECT 1 FROM t1 LOCK IN SHARE MODE")
