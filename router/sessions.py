"""Session affinity shared by every frontend replica: session id -> the workers that served it.

``RedisSessions`` keeps the map in Redis (one key per session, with a TTL) so that any frontend
routes a session's next turn where its cache is; it also keeps a local LRU copy and uses it alone
while Redis is unreachable, retrying Redis at most every ``retry_s`` seconds, so a Redis outage
degrades affinity for sessions that moved between frontends, never a request. Short socket
timeouts keep a dead Redis from stalling the event loop.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

import msgspec

log = logging.getLogger("kvyard.router")


class SessionRoute(msgspec.Struct, frozen=True):
    decode: str
    prefill: str | None = None


class LocalSessions:
    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._map: OrderedDict[str, SessionRoute] = OrderedDict()

    async def get(self, session: str) -> SessionRoute | None:
        route = self._map.get(session)
        if route is not None:
            self._map.move_to_end(session)
        return route

    async def put(self, session: str, route: SessionRoute) -> None:
        self._map[session] = route
        self._map.move_to_end(session)
        while len(self._map) > self.capacity:
            self._map.popitem(last=False)


class RedisSessions(LocalSessions):
    def __init__(self, url: str, *, ttl_s: int = 3600, retry_s: float = 2.0, prefix: str = "kvyard:session:"):
        super().__init__()
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url, socket_timeout=0.2, socket_connect_timeout=0.2, retry_on_timeout=False)
        self.ttl_s, self.retry_s, self.prefix = ttl_s, retry_s, prefix
        self.down_since: float | None = None
        self.errors = 0

    def _usable(self) -> bool:
        return self.down_since is None or time.monotonic() - self.down_since >= self.retry_s

    def _failed(self, exc: Exception) -> None:
        self.errors += 1
        if self.down_since is None:
            log.warning("redis unreachable, routing from local state until it returns: %s", exc)
        self.down_since = time.monotonic()

    def _recovered(self) -> None:
        if self.down_since is not None:
            log.info("redis is back; shared session affinity resumes")
        self.down_since = None

    async def get(self, session: str) -> SessionRoute | None:
        if self._usable():
            try:
                raw = await self.redis.get(self.prefix + session)
                self._recovered()
                if raw is not None:
                    route = msgspec.json.decode(raw, type=SessionRoute)
                    await super().put(session, route)
                    return route
            except Exception as exc:  # any Redis failure falls back to local state
                self._failed(exc)
        return await super().get(session)

    async def put(self, session: str, route: SessionRoute) -> None:
        await super().put(session, route)
        if self._usable():
            try:
                await self.redis.set(self.prefix + session, msgspec.json.encode(route), ex=self.ttl_s)
                self._recovered()
            except Exception as exc:
                self._failed(exc)
