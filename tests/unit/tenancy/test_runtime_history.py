"""The runtime builds its history store once, however many of worker-rokt's threads ask at once:
Alembic's migration is not thread-safe, and since Python 3.12 `cached_property` does not lock
(on 3.11 its class-wide lock hid the race; the 100-contact demo on 3.13 found it)."""

import time
from concurrent.futures import ThreadPoolExecutor

from pipeline.stores.history import HistoryStore
from pipeline.tenancy.handles import Runtime


def test_threads_asking_at_once_get_one_store_migrated_once(settings, fake_redis, monkeypatch):
    migrations = []

    def slow_migrate(store):
        migrations.append(store)
        time.sleep(0.2)  # long enough for every other thread to ask meanwhile

    monkeypatch.setattr(HistoryStore, "migrate", slow_migrate)
    rt = Runtime(settings, fake_redis)
    with ThreadPoolExecutor(8) as pool:
        stores = list(pool.map(lambda _n: rt.history, range(8)))
    assert len(migrations) == 1 and all(store is migrations[0] for store in stores)
