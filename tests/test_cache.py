"""The Redis cache backend (msp_dashboard/cache.py): Django's, keeping one Redis client."""

import threading

import pytest
from django.core.cache import caches

from msp_dashboard.cache import RedisCache


@pytest.fixture
def redis_cache(redis_url, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "msp_dashboard.cache.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": "cache-test",
        }
    }
    caches.close_all()
    cache = caches["default"]
    yield cache
    cache.clear()
    caches.close_all()


def test_production_settings_use_the_kept_client_backend(redis_url):
    assert isinstance(caches["default"], RedisCache)


def test_every_operation_uses_one_client_per_pool(redis_cache):
    client = redis_cache._cache
    first = client.get_client(write=True)
    assert client.get_client(write=True) is first
    assert client.get_client("some-key") is first  # one server: reads share the write pool
    made = []
    original = client._client
    client._client = lambda **kw: made.append(kw) or original(**kw)  # a spy, not a stub
    try:
        redis_cache.set("a", {"x": 1}, 30)
        assert redis_cache.get("a") == {"x": 1}
        assert redis_cache.get_many(["a", "b"]) == {"a": {"x": 1}}
        assert redis_cache.add("a", 2, 30) is False
        redis_cache.delete("a")
        assert redis_cache.get("a") is None
    finally:
        client._client = original
    assert made == []


def test_the_kept_client_serves_threads_at_once(redis_cache):
    errors = []

    def work(n):
        try:
            for i in range(50):
                redis_cache.set(f"t{n}-{i}", i, 30)
                assert redis_cache.get(f"t{n}-{i}") == i
        except Exception as exc:  # reported below
            errors.append(exc)

    # Django's caches are per thread: these threads share this thread's backend, so its client.
    client = redis_cache._cache
    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert client.get_client(write=True) is client.get_client(write=True)
