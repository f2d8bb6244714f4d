# [proxy] workers: the arithmetic of shares and the per-worker config.
import pytest

from mysqlpool_proxy.config import AdminConfig, Config, ConfigError, MetricsConfig, PoolConfig, ProxyConfig, UserConfig
from mysqlpool_proxy.workers import WorkerSlot, share, validate, worker_config


@pytest.mark.parametrize("total,count", [(1, 1), (4, 2), (5, 2), (7, 3), (100, 8), (3, 3)])
def test_shares_sum_to_the_total_and_differ_by_at_most_one(total, count):
    parts = [share(total, i, count) for i in range(count)]
    assert sum(parts) == total
    assert max(parts) - min(parts) <= 1


def test_every_worker_needs_a_connection_of_every_pool():
    config = Config(proxy=ProxyConfig(workers=3), pool=PoolConfig(max_size=2),
                    users=(UserConfig(name="app", password="x"),))
    with pytest.raises(ConfigError) as err:
        validate(config)
    assert "max_size 2 is less than proxy.workers 3" in str(err.value)


def test_each_worker_serves_metrics_and_admin_on_its_own_port():
    config = Config(proxy=ProxyConfig(workers=2), metrics=MetricsConfig(listen="0.0.0.0:9106"),
                    admin=AdminConfig(listen="127.0.0.1:6034", password="pw"),
                    users=(UserConfig(name="app", password="x"),))
    second = worker_config(config, WorkerSlot(1, 2))
    assert second.metrics.listen == "0.0.0.0:9107"
    assert second.admin.listen == "127.0.0.1:6035"
    assert worker_config(config, WorkerSlot(0, 2)).metrics.listen == "0.0.0.0:9106"


def test_the_admin_user_cannot_be_the_workers_own_login():
    config = Config(proxy=ProxyConfig(workers=2), admin=AdminConfig(user="mysqlpool-peer", password="pw"),
                    users=(UserConfig(name="app", password="x"),))
    with pytest.raises(ConfigError, match=r"admin\.user 'mysqlpool-peer' is the name workers use"):
        validate(config)
    validate(Config(proxy=ProxyConfig(workers=2), admin=AdminConfig(user="ops", password="pw"),
                    users=(UserConfig(name="app", password="x"),)))
