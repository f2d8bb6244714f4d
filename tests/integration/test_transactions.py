# Transactions through the proxy as real drivers run them, against a real MariaDB:
# savepoints before the first table (Django's nested atomic(), SQLAlchemy's
# begin_nested(), JDBC's setAutoCommit(false) + setSavepoint()), and the
# COMMIT / ROLLBACK a pool sends on return needing no backend.
from __future__ import annotations

import threading

import pymysql
import pytest
import sqlalchemy

pytestmark = pytest.mark.integration


@pytest.fixture
def one_backend(proxy_factory, app_server):
    app_server.execute("CREATE TABLE IF NOT EXISTS appdb.trx (id INT PRIMARY KEY) ENGINE=InnoDB")
    app_server.execute("DELETE FROM appdb.trx")
    return proxy_factory(pool={"max_size": 2, "checkout_timeout": 5})


def bystanders(proxy, n=3):
    """Clients that run statements meanwhile, so that a backend given back is taken at once."""
    conns = [proxy.connect() for _ in range(n)]
    for conn in conns:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    return conns


def churn(conns):
    for conn in conns:
        with conn.cursor() as cur:
            cur.execute("SELECT CONNECTION_ID()")


def test_savepoint_before_any_table_with_autocommit_off(one_backend):
    app = one_backend.connect(autocommit=False)
    others = bystanders(one_backend)
    with app.cursor() as cur:
        cur.execute("SAVEPOINT s1")
        churn(others)
        cur.execute("INSERT INTO trx VALUES (1)")
        churn(others)
        cur.execute("ROLLBACK TO SAVEPOINT s1")
        cur.execute("SAVEPOINT s2")
        churn(others)
        cur.execute("RELEASE SAVEPOINT s2")
        cur.execute("INSERT INTO trx VALUES (2)")
    app.commit()
    with others[0].cursor() as cur:
        cur.execute("SELECT id FROM trx ORDER BY id")
        assert cur.fetchall() == ((2,),)


def test_savepoint_right_after_begin(one_backend):
    app = one_backend.connect()
    others = bystanders(one_backend)
    with app.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SAVEPOINT s1")
        churn(others)
        cur.execute("ROLLBACK TO SAVEPOINT s1")
        cur.execute("RELEASE SAVEPOINT s1")
        cur.execute("COMMIT")


def test_sqlalchemy_begin_nested_as_first_statement(one_backend):
    engine = sqlalchemy.create_engine(one_backend.url(), poolclass=sqlalchemy.pool.NullPool)
    others = bystanders(one_backend)
    with engine.connect() as conn, conn.begin():
        nested = conn.begin_nested()
        churn(others)
        conn.execute(sqlalchemy.text("INSERT INTO trx VALUES (3)"))
        churn(others)
        nested.rollback()
        inner = conn.begin_nested()
        conn.execute(sqlalchemy.text("INSERT INTO trx VALUES (4)"))
        inner.commit()
    with others[0].cursor() as cur:
        cur.execute("SELECT id FROM trx ORDER BY id")
        assert cur.fetchall() == ((4,),)
    engine.dispose()


def test_pool_returns_roll_back_while_every_backend_is_held(one_backend):
    """Two stuck transactions hold both backends; other clients' ROLLBACK / COMMIT / SET autocommit
    (what pools send on return and on checkout) are answered at once, without a backend."""
    stuck = [one_backend.connect() for _ in range(2)]
    for conn in stuck:
        with conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.execute("SELECT * FROM trx FOR UPDATE")
    errors = []

    def pool_user():
        try:
            conn = one_backend.connect(read_timeout=3)
            conn.rollback()
            conn.commit()
            conn.autocommit(True)
            conn.close()
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=pool_user) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert errors == []
    for conn in stuck:
        conn.rollback()


def test_autocommit_off_client_holds_its_backend_until_it_ends_the_transaction(one_backend):
    app = one_backend.connect(autocommit=False)
    with app.cursor() as cur:
        cur.execute("SELECT 1")  # touches no table: the server flags no transaction

    def pool_busy():
        return one_backend.call(lambda: len(one_backend.proxy.pools["app"].busy))

    assert pool_busy() == 1
    app.rollback()
    assert pool_busy() == 0


def lost(conn, sql="SELECT 1") -> int | None:
    """The error number `sql` gets on `conn` (None: it ran)."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        return None
    except (pymysql.err.OperationalError, pymysql.err.InterfaceError) as exc:
        return exc.args[0] if exc.args else -1


@pytest.mark.parametrize("ending", [["COMMIT RELEASE"], ["ROLLBACK WORK RELEASE"],
                                    ["SET completion_type = 2", "COMMIT"]])
def test_commit_release_ends_the_connection_as_directly_and_no_one_else_notices(
        one_backend, app_server, ending):
    # The server hangs up after the OK of a COMMIT ... RELEASE: the client is disconnected, as on
    # a direct connection, and the backend is closed, never handed to another client.
    outcomes = []
    for connect in (lambda: app_server.connect(database="appdb", autocommit=False),
                    lambda: one_backend.connect(autocommit=False)):
        conn = connect()
        with conn.cursor() as cur:
            cur.execute("INSERT INTO trx VALUES (1)")
            for sql in ending:
                cur.execute(sql)
        outcomes.append(lost(conn))
        assert app_server.execute("SELECT COUNT(*) FROM appdb.trx")[0][0] == (1 if "COMMIT" in ending[-1] else 0)
        app_server.execute("DELETE FROM appdb.trx")
    direct, through_proxy = outcomes
    assert direct in (2006, 2013) and through_proxy in (2006, 2013)
    others = bystanders(one_backend, 2)
    for _ in range(20):
        churn(others)
    assert one_backend.pool_stats()["closed"].get("ended_by_server", 0) == 1
