"""Session affinity through a real redis-server: shared between stores, local fallback while Redis
is down (no exception reaches the caller), and recovery when it returns."""

from __future__ import annotations

import pytest

from kvyard.redis_server import RedisServer
from kvyard.router.sessions import LocalSessions, RedisSessions, SessionRoute


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


async def test_two_frontends_share_affinity(redis_server):
    a, b = RedisSessions(redis_server.url), RedisSessions(redis_server.url)
    await a.put("s1", SessionRoute(decode="d1", prefill="p2"))
    assert await b.get("s1") == SessionRoute(decode="d1", prefill="p2")
    assert await b.get("unknown") is None


async def test_redis_down_falls_back_to_local_then_recovers(redis_server):
    store = RedisSessions(redis_server.url, retry_s=0.0)
    await store.put("s1", SessionRoute(decode="d1"))
    redis_server.stop()
    await store.put("s2", SessionRoute(decode="d2"))  # no exception while Redis is down
    assert await store.get("s1") == SessionRoute(decode="d1")  # served from the local copy
    assert await store.get("s2") == SessionRoute(decode="d2")
    assert store.errors > 0 and store.down_since is not None
    redis_server.start()
    await store.put("s3", SessionRoute(decode="d3"))
    assert store.down_since is None
    other = RedisSessions(redis_server.url)
    assert await other.get("s3") == SessionRoute(decode="d3")


async def test_local_sessions_are_bounded():
    store = LocalSessions(capacity=2)
    for i in range(3):
        await store.put(f"s{i}", SessionRoute(decode=f"d{i}"))
    assert await store.get("s0") is None and await store.get("s2") == SessionRoute(decode="d2")
