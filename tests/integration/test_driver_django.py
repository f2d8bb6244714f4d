# Django ORM (django.db.backends.mysql, i.e. mysqlclient) through the proxy,
# with Django's default CONN_MAX_AGE=0 (a connection per "request") and with
# persistent connections (CONN_MAX_AGE=None): the connection's session setup
# (isolation level, charset) holding across pooled transactions, CRUD,
# transaction.atomic commit/rollback and savepoints, select_for_update (NOWAIT,
# SKIP LOCKED, against a second connection), bulk_create, aggregates, utf8mb4,
# a 20 MiB BinaryField, raw cursors (200,000 rows, multi-statements, a
# procedure with two result sets, LOAD DATA LOCAL INFILE), errors identical to
# a direct connection, and the 1045 wording.
#
# Django is configured in-process (settings.configure) by a module fixture that
# also starts its own proxy (the shared `proxy` fixture is per test); the model
# lives in tests/integration/django_app and its table is made by schema_editor.
import hashlib
import os
import threading

import pytest

django = pytest.importorskip("django")

from django.conf import settings  # noqa: E402
from django.db import (  # noqa: E402  # noqa: E402
    DatabaseError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
    close_old_connections,
    connections,
    transaction,
)
from django.db.models import Avg, Count, Max, Sum  # noqa: E402

from tests.support.proxy import APP_DB, APP_PASSWORD, APP_USER, ProxyThread, render_config  # noqa: E402

pytestmark = pytest.mark.integration

T = "django_"  # table prefix: files share one server
PROXY_ALIASES = ["proxy", "proxy_persistent"]  # CONN_MAX_AGE 0 and None


def database(port, conn_max_age=0, password=APP_PASSWORD):
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": APP_DB,
        "USER": APP_USER,
        "PASSWORD": password,
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "CONN_MAX_AGE": conn_max_age,
        "OPTIONS": {"charset": "utf8mb4", "local_infile": 1, "connect_timeout": 10},
    }


@pytest.fixture(scope="module")
def django_proxy(app_server, tmp_path_factory):
    path = tmp_path_factory.mktemp("django-proxy") / "proxy.toml"
    path.write_text(render_config(app_server))
    runner = ProxyThread(path).start()
    yield runner
    runner.stop()


@pytest.fixture(scope="module")
def django_setup(django_proxy, app_server):
    databases = {
        "proxy": database(django_proxy.port, conn_max_age=0),
        "proxy_persistent": database(django_proxy.port, conn_max_age=None),
        "direct": database(app_server.port),
        "wrong_password": database(django_proxy.port, password="wrong"),
    }
    if not settings.configured:
        settings.configure(
            DATABASES={"default": databases["proxy"], **databases},
            INSTALLED_APPS=["tests.integration.django_app"],
            USE_TZ=True,
            TIME_ZONE="UTC",
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        )
        django.setup()
    else:  # configured by someone else in this process: add our aliases
        configured = connections.configure_settings({"default": databases["proxy"], **databases})
        for alias in databases:
            connections.settings[alias] = configured[alias]
    from tests.integration.django_app.models import Item

    app_server.execute(f"DROP TABLE IF EXISTS appdb.{Item._meta.db_table}")
    with connections["proxy"].schema_editor() as editor:
        editor.create_model(Item)
    app_server.execute(f"DROP PROCEDURE IF EXISTS appdb.{T}two_results")
    app_server.execute(f"CREATE PROCEDURE appdb.{T}two_results(IN n INT) "
                       "BEGIN SELECT n AS a; SELECT n + 1 AS b, 'x' AS c; END")
    app_server.execute(f"CREATE TABLE IF NOT EXISTS appdb.{T}kv (id INT PRIMARY KEY, v TEXT) "
                       "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
    yield Item
    for alias in databases:
        connections[alias].close()


@pytest.fixture(params=PROXY_ALIASES, ids=["conn_max_age_0", "persistent"])
def db(request, django_setup):
    """The alias to use; afterwards the end of a request is simulated (close_old_connections)."""
    django_setup.objects.using(request.param).all().delete()
    yield request.param
    close_old_connections()


@pytest.fixture
def Item(django_setup):  # it is a model class
    return django_setup


# -- connection and ORM -------------------------------------------------------------


def test_session_setup_holds_on_every_statement(db, Item):
    # Django sets READ COMMITTED (and SQL_AUTO_IS_NULL) once per connection, in
    # a multi-statement; every later statement may run on another backend.
    with connections[db].cursor() as cur:
        for _ in range(5):
            cur.execute("SELECT @@SESSION.tx_isolation, @@character_set_client, DATABASE(), @@sql_auto_is_null")
            assert cur.fetchone() == ("READ-COMMITTED", "utf8mb4", "appdb", 0)
            Item.objects.using(db).count()


def test_crud(db, Item):
    items = Item.objects.using(db)
    a = items.create(name="a", qty=1)
    b = items.create(name="b", qty=2, note="bee")
    assert a.pk and b.pk and a.pk != b.pk
    assert items.get(name="b").note == "bee"
    assert list(items.filter(qty__gte=1).order_by("name").values_list("name", flat=True)) == ["a", "b"]
    assert items.filter(name="a").update(qty=10) == 1
    b.qty = 20
    b.save(using=db)
    assert sorted(items.values_list("name", "qty")) == [("a", 10), ("b", 20)]
    a.delete(using=db)
    assert list(items.values_list("name", flat=True)) == ["b"]
    assert not items.filter(name="a").exists()


def test_atomic_commit_and_rollback(db, Item):
    items = Item.objects.using(db)
    with transaction.atomic(using=db):
        items.create(name="kept")
        items.create(name="kept too")
    with pytest.raises(RuntimeError), transaction.atomic(using=db):
        items.create(name="rolled back")
        items.filter(name="kept").update(qty=99)
        raise RuntimeError("abort")
    with transaction.atomic(using=db):
        items.create(name="outer")
        try:
            with transaction.atomic(using=db):  # a savepoint
                items.create(name="inner")
                raise RuntimeError("abort inner")
        except RuntimeError:
            pass
        assert items.filter(name="inner").count() == 0
    assert sorted(items.values_list("name", "qty")) == [("kept", 0), ("kept too", 0), ("outer", 0)]
    # what the server itself holds (not the client's view)
    with connections["direct"].cursor() as cur:
        cur.execute(f"SELECT name FROM {Item._meta.db_table} ORDER BY name")
        assert cur.fetchall() == (("kept",), ("kept too",), ("outer",))


def _in_other_thread(fn):
    """Run fn in a new thread (so it gets its own Django connections); return its result or raise its error."""
    outcome = {}

    def run():
        try:
            outcome["result"] = fn()
        except BaseException as exc:  # re-raised below
            outcome["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")


def test_select_for_update(db, Item):
    items = Item.objects.using(db)
    items.bulk_create([Item(name=f"lock-{i}", qty=i) for i in range(3)])
    with transaction.atomic(using=db):
        locked = items.select_for_update().get(name="lock-0")
        locked.qty += 100
        locked.save(using=db)

        def other_client_nowait():
            with transaction.atomic(using=db):
                return items.select_for_update(nowait=True).get(name="lock-0")

        with pytest.raises(DatabaseError):
            _in_other_thread(other_client_nowait)

        def other_client_skip_locked():
            with transaction.atomic(using=db):
                return sorted(items.select_for_update(skip_locked=True).values_list("name", flat=True))

        assert _in_other_thread(other_client_skip_locked) == ["lock-1", "lock-2"]
    # committed and released: the other client gets the row now
    def other_client_after():
        with transaction.atomic(using=db):
            return items.select_for_update(nowait=True).get(name="lock-0").qty

    assert _in_other_thread(other_client_after) == 100


def test_bulk_create_and_aggregate(db, Item):
    items = Item.objects.using(db)
    created = items.bulk_create([Item(name=f"bulk-{i:04}", qty=i % 10) for i in range(2000)], batch_size=500)
    assert len(created) == 2000
    stats = items.aggregate(n=Count("id"), total=Sum("qty"), top=Max("name"), mean=Avg("qty"))
    assert stats == {"n": 2000, "total": 9000, "top": "bulk-1999", "mean": 4.5}
    groups = list(items.values("qty").annotate(n=Count("id")).order_by("qty"))
    assert groups == [{"qty": q, "n": 200} for q in range(10)]


def test_utf8mb4_round_trip(db, Item):
    text = "zażółć gęślą jaźń — 日本語 — 🐬🚀👍🏽"
    item = Item.objects.using(db).create(name="🐬 dolphin", note=text)
    back = Item.objects.using(db).get(pk=item.pk)
    assert (back.name, back.note) == ("🐬 dolphin", text)
    assert Item.objects.using(db).filter(note__contains="🚀").count() == 1


def test_20_mib_binary_field(Item):
    db = "proxy"
    Item.objects.using(db).filter(name="blob").delete()
    blob = os.urandom(20 * 1024 * 1024)
    item = Item.objects.using(db).create(name="blob", data=blob)
    back = Item.objects.using(db).get(pk=item.pk)
    assert bytes(back.data) == blob
    with connections[db].cursor() as cur:
        cur.execute(f"SELECT LENGTH(data), SHA2(data, 256) FROM {Item._meta.db_table} WHERE id = %s", [item.pk])
        assert cur.fetchone() == (len(blob), hashlib.sha256(blob).hexdigest())
    close_old_connections()


# -- raw cursors ----------------------------------------------------------------------


def test_200k_rows(db):
    with connections[db].cursor() as cur:
        cur.execute("SELECT seq, CONCAT('row-', seq) FROM seq_1_to_200000")
        count, last = 0, None
        while rows := cur.fetchmany(10000):
            count += len(rows)
            last = rows[-1]
    assert (count, last) == (200000, (200000, "row-200000"))


def test_multi_statements(db):
    with connections[db].cursor() as cur:
        cur.execute("SELECT 1; SELECT 2, 3")
        assert cur.fetchall() == ((1,),)
        assert cur.nextset()
        assert cur.fetchall() == ((2, 3),)
        assert not cur.nextset()
        cur.execute("SELECT 'in sync'")
        assert cur.fetchone() == ("in sync",)


def test_procedure_with_two_result_sets(db, Item):
    with connections[db].cursor() as cur:
        cur.callproc(f"{T}two_results", [41])
        assert cur.fetchall() == ((41,),)
        assert cur.nextset()
        assert cur.fetchall() == ((42, "x"),)
        while cur.nextset():
            pass
        cur.execute("SELECT 'in sync'")
        assert cur.fetchone() == ("in sync",)


def test_load_data_local_infile(db, tmp_path):
    path = tmp_path / "rows.tsv"
    path.write_text("".join(f"{i}\tvalue {i}\n" for i in range(1, 5001)))
    with connections[db].cursor() as cur:
        cur.execute(f"DELETE FROM {T}kv")
        cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {T}kv (id, v)")
        assert cur.rowcount == 5000
        cur.execute(f"SELECT COUNT(*), MAX(v) FROM {T}kv")
        assert cur.fetchone() == (5000, "value 999")


# -- errors -----------------------------------------------------------------------------


def _duplicate_error(alias, Item):
    Item.objects.using(alias).filter(name="dup").delete()
    Item.objects.using(alias).create(name="dup")
    with pytest.raises(IntegrityError) as err, transaction.atomic(using=alias):
        Item.objects.using(alias).create(name="dup")
    assert Item.objects.using(alias).filter(name="dup").count() == 1  # still usable
    return err.value.args, type(err.value.__cause__), err.value.__cause__.args


def test_duplicate_key_error_same_as_direct(db, Item):
    direct = _duplicate_error("direct", Item)
    proxied = _duplicate_error(db, Item)
    assert proxied == direct
    assert proxied[0] == (1062, "Duplicate entry 'dup' for key 'name'")


def _unknown_table_error(alias):
    with connections[alias].cursor() as cur:
        with pytest.raises(ProgrammingError) as err:
            cur.execute(f"SELECT * FROM {T}no_such_table")
        state = connections[alias].connection.sqlstate()
        cur.execute("SELECT 1")
        assert cur.fetchone() == (1,)
    return err.value.args, state


def test_unknown_table_error_same_as_direct(db):
    direct = _unknown_table_error("direct")
    proxied = _unknown_table_error(db)
    assert proxied == direct == ((1146, f"Table 'appdb.{T}no_such_table' doesn't exist"), "42S02")


def test_bad_password_is_1045(django_setup):
    conn = connections["wrong_password"]
    with pytest.raises(OperationalError) as err:
        conn.ensure_connection()
    assert err.value.args == (1045, "Access denied for user 'app'@'127.0.0.1' (using password: YES)")


# -- connection lifetime ----------------------------------------------------------------


def test_conn_max_age_0_closes_and_persistent_keeps_the_client_connection(django_setup, django_proxy):
    Item = django_setup
    close_old_connections()
    connections["proxy"].close()
    connections["proxy_persistent"].close()
    persistent_ids = set()
    for _ in range(5):  # five "requests"
        for alias in PROXY_ALIASES:
            with transaction.atomic(using=alias):
                Item.objects.using(alias).create(name=f"req-{alias}-{len(persistent_ids)}-{os.urandom(4).hex()}")
        persistent_ids.add(id(connections["proxy_persistent"].connection))
        close_old_connections()  # what Django does at the end of every request
        assert connections["proxy"].connection is None
        assert connections["proxy_persistent"].connection is not None
    assert len(persistent_ids) == 1  # the same client connection for every request
    stats = django_proxy.pool_stats()
    assert stats["busy"] == 0  # between requests no client holds a backend
    assert django_proxy.client_count() == 1  # only the persistent connection is open
    connections["proxy_persistent"].close()
