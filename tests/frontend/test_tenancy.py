"""API keys → tenants → cache salts, and per-key limits on requests in flight (pure logic)."""

import pytest

from kvyard.config import FrontendConfig
from kvyard.errors import AuthenticationFailed, RateLimited
from kvyard.frontend.tenancy import OPEN, ConcurrencyLimiter, KeyRing, combine_salts, tenant_salt
from kvyard.router.hashing import block_hashes, derive_salt

KEYS = [
    "sk-alone-0001",
    {"key": "sk-acme-0001", "tenant": "acme", "max_concurrent": 2},
    {"key": "sk-acme-0002", "tenant": "acme"},
    {"key": "sk-globex-01", "tenant": "globex"},
]


def ring(**fields) -> KeyRing:
    return KeyRing(FrontendConfig(api_keys=KEYS, **fields))


def test_no_keys_means_open_access_and_one_shared_cache():
    assert KeyRing(FrontendConfig()).authenticate({}) == OPEN
    assert OPEN.cache_salt is None


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "sk-wrong-0001"}, {"authorization": "Basic c2stYWNtZS0wMDAx"}, {"authorization": "Bearer "}],
)
def test_missing_or_wrong_key_is_refused(headers):
    with pytest.raises(AuthenticationFailed):
        ring().authenticate(headers)


def test_key_by_header_or_bearer():
    keys = ring()
    assert keys.authenticate({"x-api-key": "sk-acme-0001"}) == keys.authenticate({"authorization": "Bearer sk-acme-0001"})


def test_keys_of_one_tenant_share_a_salt_and_tenants_differ():
    keys = ring()
    acme1 = keys.authenticate({"x-api-key": "sk-acme-0001"})
    acme2 = keys.authenticate({"x-api-key": "sk-acme-0002"})
    globex = keys.authenticate({"x-api-key": "sk-globex-01"})
    alone = keys.authenticate({"x-api-key": "sk-alone-0001"})
    assert acme1.cache_salt == acme2.cache_salt == tenant_salt("acme")
    assert len({acme1.cache_salt, globex.cache_salt, alone.cache_salt}) == 3
    assert acme1.key_id != acme2.key_id
    assert "sk-" not in repr(acme1)  # the key itself is never kept on the caller


def test_tenants_share_no_router_block_hash():
    keys = ring()
    salts = [keys.authenticate({"x-api-key": k}).cache_salt for k in ("sk-acme-0001", "sk-globex-01")]
    prompt = list(range(200))
    a, b = (block_hashes(prompt, 32, derive_salt("m", None, s)) for s in salts)
    assert not set(a) & set(b)


def test_isolation_can_be_turned_off():
    assert ring(isolate_tenants=False).authenticate({"x-api-key": "sk-acme-0001"}).cache_salt is None


def test_client_salt_chains_after_the_tenants():
    t = tenant_salt("acme")
    assert combine_salts(t, None) == t
    assert combine_salts(None, "mine") == "mine"
    assert combine_salts(t, "mine") not in (t, "mine", combine_salts(tenant_salt("globex"), "mine"))


def test_per_key_limit_refuses_past_it_and_releases():
    keys, limiter = ring(max_concurrent_per_key=5), ConcurrencyLimiter()
    acme1 = keys.authenticate({"x-api-key": "sk-acme-0001"})  # its own limit: 2
    acme2 = keys.authenticate({"x-api-key": "sk-acme-0002"})  # the default: 5
    limiter.acquire(acme1)
    limiter.acquire(acme1)
    with pytest.raises(RateLimited) as refused:
        limiter.acquire(acme1)
    assert refused.value.status == 429
    for _ in range(5):
        limiter.acquire(acme2)  # another key of the same tenant has its own count
    limiter.release(acme1)
    limiter.acquire(acme1)
    with limiter.held(OPEN):
        pass
    assert limiter.in_flight == {acme1.key_id: 2, acme2.key_id: 5}


def test_held_releases_on_error():
    keys, limiter = ring(), ConcurrencyLimiter()
    acme1 = keys.authenticate({"x-api-key": "sk-acme-0001"})
    with pytest.raises(RuntimeError), limiter.held(acme1):
        raise RuntimeError("boom")
    assert not limiter.in_flight


@pytest.mark.parametrize("bad", [[{"key": ""}], [{"key": "k", "max_concurrent": 0}], [{"key": "k", "extra": 1}]])
def test_bad_key_entries_are_rejected_in_config(bad):
    with pytest.raises(ValueError):
        FrontendConfig(api_keys=bad)
