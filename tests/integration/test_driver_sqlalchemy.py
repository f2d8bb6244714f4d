# SQLAlchemy 2.x through the proxy, over mysql+pymysql and mysql+mysqldb, with
# SQLAlchemy's own QueuePool in front (no pool_pre_ping, no pool_recycle):
# Core CRUD, commit, rollback and SAVEPOINT, per-connection isolation levels,
# an ORM Session with two related models, multi-statements and a procedure
# with two result sets (raw DBAPI cursors), LOAD DATA LOCAL INFILE, 200,000
# rows with stream_results, a 20 MiB LargeBinary both ways, utf8mb4 with emoji,
# errors identical to a direct connection, the 1045 wording, and pooled
# connections surviving a DBA killing every backend.
import hashlib
import os
from contextlib import closing

import pytest
import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER

pytestmark = pytest.mark.integration

T = "sqlalchemy_"  # table prefix: files share one server
MULTI_STATEMENTS = 1 << 16  # CLIENT.MULTI_STATEMENTS, the same bit in PyMySQL and MySQLdb
DRIVERS = ["mysql+pymysql", "mysql+mysqldb"]


def url(target, scheme, password=APP_PASSWORD):
    return (f"{scheme}://{APP_USER}:{password}@{target.host}:{target.port}/{APP_DB}"
            f"?charset=utf8mb4&client_flag={MULTI_STATEMENTS}&local_infile=1&connect_timeout=10")


@pytest.fixture(params=DRIVERS, ids=["pymysql", "mysqldb"])
def scheme(request):
    return request.param


@pytest.fixture
def make_engine():
    engines = []

    def make(target, scheme, **kwargs):
        engine = sa.create_engine(url(target, scheme, **{k: kwargs.pop(k) for k in ("password",) if k in kwargs}),
                                  **kwargs)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def engine(proxy, scheme, make_engine):
    return make_engine(proxy, scheme, pool_size=3, max_overflow=2)


metadata = sa.MetaData()
kv = sa.Table(
    f"{T}kv", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("v", sa.Text),
    mysql_engine="InnoDB", mysql_charset="utf8mb4",
)
blobs = sa.Table(
    f"{T}blobs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("b", sa.LargeBinary(length=2**32 - 1)),  # LONGBLOB
    mysql_engine="InnoDB",
)


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = f"{T}author"
    __table_args__ = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}  # noqa: RUF012 - SQLAlchemy reads it once
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    books: Mapped[list["Book"]] = relationship(back_populates="author", cascade="all, delete-orphan")


class Book(Base):
    __tablename__ = f"{T}book"
    __table_args__ = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4"}  # noqa: RUF012 - SQLAlchemy reads it once
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    author_id: Mapped[int] = mapped_column(sa.ForeignKey(f"{T}author.id"))
    author: Mapped[Author] = relationship(back_populates="books")


@pytest.fixture(scope="module")
def tables(app_server):
    """Tables created through SQLAlchemy's DDL against the server directly (once)."""
    setup = sa.create_engine(url(app_server, "mysql+pymysql"))
    with setup.begin() as conn:
        Base.metadata.drop_all(conn)
        metadata.drop_all(conn)
        metadata.create_all(conn)
        Base.metadata.create_all(conn)
    setup.dispose()
    app_server.execute(f"DROP PROCEDURE IF EXISTS appdb.{T}two_results")
    app_server.execute(f"CREATE PROCEDURE appdb.{T}two_results(IN n INT) "
                       "BEGIN SELECT n AS a; SELECT n + 1 AS b, 'x' AS c; END")
    return app_server


# -- Core -------------------------------------------------------------------------------


def test_select(engine):
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT 1 + 1, DATABASE(), @@character_set_client")).one()
        assert tuple(row) == (2, "appdb", "utf8mb4")


def test_core_crud(engine, tables):
    with engine.begin() as conn:
        conn.execute(kv.delete())
        conn.execute(kv.insert(), [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}])
        assert conn.execute(kv.update().where(kv.c.id == 2).values(v="B")).rowcount == 1
        assert conn.execute(kv.delete().where(kv.c.id == 3)).rowcount == 1
        new_id = conn.execute(kv.insert().values(v="auto")).inserted_primary_key[0]
        assert new_id > 2
        # rowcount is "rows matched" (FOUND_ROWS), as SQLAlchemy asks for
        assert conn.execute(kv.update().where(kv.c.id == 1).values(v="a")).rowcount == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(kv.c.id, kv.c.v).order_by(kv.c.id)).all() == [
            (1, "a"), (2, "B"), (new_id, "auto")]


def test_core_commit_rollback_and_savepoint(engine, tables):
    with engine.begin() as conn:
        conn.execute(kv.delete())
        conn.execute(kv.insert(), [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}])
    with engine.connect() as conn:
        conn.execute(kv.update().where(kv.c.id == 1).values(v="z"))
        conn.execute(kv.insert().values(id=3, v="c"))
        conn.rollback()
        conn.execute(kv.delete().where(kv.c.id == 2))
        savepoint = conn.begin_nested()
        conn.execute(kv.insert().values(id=4, v="in savepoint"))
        savepoint.rollback()
        conn.execute(kv.insert().values(id=5, v="after savepoint"))
        conn.commit()
        conn.execute(kv.insert().values(id=6, v="never committed"))
        # closing with a transaction open: the pool's reset-on-return rolls it back
    with engine.connect() as conn:
        assert conn.execute(sa.select(kv.c.id, kv.c.v).order_by(kv.c.id)).all() == [
            (1, "a"), (5, "after savepoint")]


def test_isolation_level_per_connection(engine):
    with engine.connect() as conn:
        default = conn.execute(sa.text("SELECT @@SESSION.tx_isolation")).scalar_one()
    assert default == "REPEATABLE-READ"
    with engine.connect().execution_options(isolation_level="SERIALIZABLE") as conn:
        assert conn.execute(sa.text("SELECT @@SESSION.tx_isolation")).scalar_one() == "SERIALIZABLE"
        conn.commit()
        assert conn.execute(sa.text("SELECT @@SESSION.tx_isolation")).scalar_one() == "SERIALIZABLE"
    # returned to the pool: the level is reset for the next user of that pooled connection
    for _ in range(3):
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT @@SESSION.tx_isolation")).scalar_one() == default


# -- ORM --------------------------------------------------------------------------------


def test_orm_session(engine, tables):
    with Session(engine) as session, session.begin():
        session.execute(sa.delete(Book))
        session.execute(sa.delete(Author))
    with Session(engine) as session:
        tolkien = Author(name="Tolkien", books=[Book(title="The Hobbit"), Book(title="The Silmarillion")])
        session.add_all([tolkien, Author(name="Lem 🚀", books=[Book(title="Solaris")])])
        session.commit()
        tolkien.books.append(Book(title="Unfinished Tales"))
        session.flush()
        session.rollback()  # the appended book is gone, the rest stays
        session.add(Book(title="The Cyberiad", author=session.scalars(
            sa.select(Author).where(Author.name == "Lem 🚀")).one()))
        session.commit()
    with Session(engine) as session:
        authors = session.scalars(sa.select(Author).options(selectinload(Author.books)).order_by(Author.name)).all()
        assert [(a.name, sorted(b.title for b in a.books)) for a in authors] == [
            ("Lem 🚀", ["Solaris", "The Cyberiad"]),
            ("Tolkien", ["The Hobbit", "The Silmarillion"]),
        ]
        counts = session.execute(
            sa.select(Author.name, sa.func.count(Book.id)).join(Book).group_by(Author.name).order_by(Author.name)
        ).all()
        assert counts == [("Lem 🚀", 2), ("Tolkien", 2)]
        session.delete(authors[1])
        session.commit()
        assert session.scalar(sa.select(sa.func.count()).select_from(Book)) == 2


def test_orm_duplicate_key_rolls_back_session(engine, tables):
    with Session(engine) as session:
        session.execute(sa.delete(Book))
        session.execute(sa.delete(Author))
        session.add(Author(name="Only once"))
        session.commit()
        session.add(Author(name="Only once"))
        with pytest.raises(exc.IntegrityError) as err:
            session.commit()
        assert err.value.orig.args == (1062, "Duplicate entry 'Only once' for key 'name'")
        session.rollback()
        assert session.scalar(sa.select(sa.func.count()).select_from(Author)) == 1


# -- raw DBAPI features -----------------------------------------------------------------


def test_multi_statements(engine):
    with closing(engine.raw_connection()) as raw:
        cur = raw.cursor()
        cur.execute("SELECT 1; SELECT 2, 3")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        assert cur.fetchall() == ((2, 3),)
        assert not cur.nextset()
        cur.execute("SELECT 'in sync'")
        assert cur.fetchone() == ("in sync",)
        cur.close()


def test_procedure_with_two_result_sets(engine, tables):
    with closing(engine.raw_connection()) as raw:
        cur = raw.cursor()
        cur.callproc(f"{T}two_results", (41,))
        assert cur.fetchall() == ((41,),)
        assert cur.nextset()
        assert cur.fetchall() == ((42, "x"),)
        while cur.nextset():
            pass
        cur.close()
    with engine.connect() as conn:  # first result set through SQLAlchemy itself
        assert conn.execute(sa.text(f"CALL {T}two_results(:n)"), {"n": 7}).all() == [(7,)]
        assert conn.execute(sa.text("SELECT 'in sync'")).scalar_one() == "in sync"


def test_load_data_local_infile(engine, tables, tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("".join(f"{i}\tvalue {i}\n" for i in range(1, 5001)))
    with engine.begin() as conn:
        conn.execute(kv.delete())
        result = conn.exec_driver_sql(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {T}kv (id, v)")
        assert result.rowcount == 5000
    with engine.connect() as conn:
        assert tuple(conn.execute(sa.select(sa.func.count(), sa.func.max(kv.c.v))).one()) == (5000, "value 999")


def test_200k_rows_streamed(engine):
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=5000).execute(
            sa.text("SELECT seq, CONCAT('row-', seq) FROM seq_1_to_200000"))
        count, last = 0, None
        for partition in result.partitions():
            count += len(partition)
            last = partition[-1]
        assert (count, tuple(last)) == (200000, (200000, "row-200000"))
        assert conn.execute(sa.text("SELECT 'after stream'")).scalar_one() == "after stream"


def test_20_mib_blob_both_ways(engine, tables):
    blob = os.urandom(20 * 1024 * 1024)
    with engine.begin() as conn:
        conn.execute(blobs.delete().where(blobs.c.id == 1))
        conn.execute(blobs.insert().values(id=1, b=blob))
    with engine.connect() as conn:
        back, length, digest = conn.execute(
            sa.select(blobs.c.b, sa.func.length(blobs.c.b), sa.func.sha2(blobs.c.b, 256)).where(blobs.c.id == 1)).one()
    assert length == len(blob)
    assert back == blob
    assert digest == hashlib.sha256(blob).hexdigest()


def test_utf8mb4_round_trip(engine, tables):
    text = "zażółć gęślą jaźń — 日本語 — 🐬🚀👍🏽"
    with engine.begin() as conn:
        new_id = conn.execute(kv.insert().values(v=text)).inserted_primary_key[0]
        value, length, hexed = conn.execute(
            sa.select(kv.c.v, sa.func.char_length(kv.c.v), sa.func.hex(kv.c.v)).where(kv.c.id == new_id)).one()
        assert (value, length) == (text, len(text))
        assert bytes.fromhex(hexed) == text.encode("utf-8")
        assert new_id in conn.execute(sa.select(kv.c.id).where(kv.c.v.contains("🐬"))).scalars().all()


# -- errors -----------------------------------------------------------------------------


def _error_of(engine, statement, setup=()):
    with engine.connect() as conn:
        for sql in setup:
            conn.execute(sa.text(sql))
        conn.commit()
        with pytest.raises(exc.DBAPIError) as err:
            conn.execute(sa.text(statement))
        conn.rollback()
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    return type(err.value), type(err.value.orig), err.value.orig.args


def test_unknown_table_error_same_as_direct(proxy, app_server, scheme, make_engine):
    sql = f"SELECT * FROM {T}no_such_table"
    direct = _error_of(make_engine(app_server, scheme), sql)
    proxied = _error_of(make_engine(proxy, scheme), sql)
    assert proxied == direct
    assert proxied[0] is exc.ProgrammingError
    assert proxied[2] == (1146, f"Table 'appdb.{T}no_such_table' doesn't exist")


def test_duplicate_key_error_same_as_direct(proxy, app_server, scheme, make_engine, tables):
    setup = (f"REPLACE INTO {T}kv (id, v) VALUES (1000, 'dup')",)
    sql = f"INSERT INTO {T}kv (id, v) VALUES (1000, 'again')"
    direct = _error_of(make_engine(app_server, scheme), sql, setup)
    proxied = _error_of(make_engine(proxy, scheme), sql, setup)
    assert proxied == direct
    assert proxied[0] is exc.IntegrityError
    assert proxied[2] == (1062, "Duplicate entry '1000' for key 'PRIMARY'")


def test_bad_password_is_1045(proxy, scheme, make_engine):
    engine = make_engine(proxy, scheme, password="wrong")
    with pytest.raises(exc.OperationalError) as err:
        engine.connect()
    assert err.value.orig.args == (1045, "Access denied for user 'app'@'127.0.0.1' (using password: YES)")


# -- pooling on both sides --------------------------------------------------------------


def test_pooled_connections_survive_killed_backends(proxy, app_server, engine):
    # SQLAlchemy keeps its client connections (no pre-ping); a DBA kills every
    # backend; the next checkout of each pooled connection just works.
    held = [engine.connect() for _ in range(5)]
    for conn in held:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    for conn in held:
        conn.close()  # back into SQLAlchemy's pool, still connected to the proxy
    app_server.kill_connections("app")
    again = [engine.connect() for _ in range(5)]
    for i, conn in enumerate(again):
        assert conn.execute(sa.text("SELECT :i"), {"i": i}).scalar_one() == i
    for conn in again:
        conn.close()
    assert engine.pool.checkedout() == 0
