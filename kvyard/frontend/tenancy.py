"""Who is calling: API key → tenant → cache salt, and per-key limits on requests in flight.

* Keys are looked up by their SHA-256 digest, so the lookup takes the same time whatever the key;
  a key's *id* in logs and metrics is a short digest, never the key.
* A tenant's cache salt is ``sha256("kvyard-tenant\\0" + tenant)``: engines (vLLM ``cache_salt``)
  and the router's block hashes are seeded with it, so equal prompts of two tenants share no KV
  block and no tenant can probe another's cache through TTFT. A client may add its own
  ``cache_salt`` (vLLM's field) to split further; it is chained after the tenant's, never instead.
* Limits count requests in flight per key on this frontend replica: acquiring past the limit
  raises ``RateLimited`` (429 in the API's shape), and every acquire is released when the request
  (or its stream) ends.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import msgspec

from kvyard.config import ApiKeyConfig, FrontendConfig
from kvyard.errors import AuthenticationFailed, RateLimited


class Caller(msgspec.Struct, frozen=True):
    key_id: str | None = None
    """Short digest of the key (None when keys are off)."""
    tenant: str | None = None
    cache_salt: str | None = None
    max_concurrent: int | None = None


OPEN = Caller()
"""The caller when no keys are configured: one shared cache, no per-key limit."""


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def tenant_salt(tenant: str) -> str:
    return _digest("kvyard-tenant\0" + tenant)[:32]


def combine_salts(tenant: str | None, client: str | None) -> str | None:
    """The salt sent to engines and router: the tenant's, then the client's (either may be absent)."""
    if not client:
        return tenant
    return client if tenant is None else _digest(f"{tenant}\0{client}")[:32]


def presented_key(headers) -> str:
    """The key in ``x-api-key`` or ``Authorization: Bearer``; empty when neither is sent."""
    given = headers.get("x-api-key") or ""
    auth = headers.get("authorization") or ""
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    return given


class KeyRing:
    """The configured keys, by digest."""

    def __init__(self, config: FrontendConfig):
        self._callers: dict[str, Caller] = {}
        for entry in config.api_keys:
            spec = ApiKeyConfig(key=entry) if isinstance(entry, str) else entry
            digest = _digest(spec.key)
            tenant = spec.tenant or f"key-{digest[:12]}"
            self._callers[digest] = Caller(
                key_id=digest[:12],
                tenant=tenant,
                cache_salt=tenant_salt(tenant) if config.isolate_tenants else None,
                max_concurrent=spec.max_concurrent or config.max_concurrent_per_key,
            )

    @property
    def enabled(self) -> bool:
        return bool(self._callers)

    def authenticate(self, headers) -> Caller:
        if not self._callers:
            return OPEN
        caller = self._callers.get(_digest(presented_key(headers)))
        if caller is None:
            raise AuthenticationFailed("missing or invalid API key: send it as 'x-api-key' or 'Authorization: Bearer'")
        return caller


class ConcurrencyLimiter:
    """Requests in flight per key on this replica."""

    def __init__(self) -> None:
        self.in_flight: Counter[str] = Counter()

    def acquire(self, caller: Caller) -> None:
        if caller.key_id is None or caller.max_concurrent is None:
            return
        if self.in_flight[caller.key_id] >= caller.max_concurrent:
            raise RateLimited(
                f"this API key already has {caller.max_concurrent} requests in flight (its limit): wait for one to finish"
            )
        self.in_flight[caller.key_id] += 1

    def release(self, caller: Caller) -> None:
        if caller.key_id is None or caller.max_concurrent is None:
            return
        self.in_flight[caller.key_id] -= 1
        if self.in_flight[caller.key_id] <= 0:
            del self.in_flight[caller.key_id]

    @contextmanager
    def held(self, caller: Caller) -> Iterator[None]:
        self.acquire(caller)
        try:
            yield
        finally:
            self.release(caller)
