"""Pure decisions of tenancy: the in-process caches, whose records a scope sees, and the
encryption of stored secrets (no services)."""

from __future__ import annotations

from cryptography.fernet import Fernet

from compliance.store.records import EVERYONE, Scope
from compliance.store.tenants import SigningSecret, TenantDirectory, TenantStore, TtlCache


class FakeStore:
    """Stands in for Redis: the secrets a rotation left, and how often they were read."""

    def __init__(self, secrets: list[SigningSecret]) -> None:
        self.secrets = secrets
        self.reads = 0

    def signing_secrets(self, tenant_id: str) -> list[SigningSecret]:
        self.reads += 1
        return list(self.secrets)


TICK = [0.0]  # the caches' monotonic clock, moved by the tests


def directory(store: FakeStore, ttl: float = 3600) -> TenantDirectory:
    return TenantDirectory(store, key_ttl=5, secret_ttl=ttl,  # type: ignore[arg-type]
                           clock=lambda: TICK[0])


def test_secrets_are_read_once_per_period_not_per_delivery() -> None:
    store = FakeStore([SigningSecret("whsec_a", None)])
    d = directory(store)
    assert [d.secrets("ten_x", 100.0 + i) for i in range(50)] == [["whsec_a"]] * 50
    assert store.reads == 1


def test_a_rotation_is_seen_within_the_cache_period_and_a_known_end_is_kept() -> None:
    """Until the cache period ends the secrets read before a rotation keep signing (never a
    moment with none); once read, the old secret stops exactly at its end."""
    store = FakeStore([SigningSecret("whsec_old", None)])
    d = directory(store, ttl=30)
    assert d.secrets("ten_x", 100.0) == ["whsec_old"]
    store.secrets = [SigningSecret("whsec_old", 110.0), SigningSecret("whsec_new", None)]
    assert d.secrets("ten_x", 111.0) == ["whsec_old"]  # cached: the rotation is not seen yet
    TICK[0] += 30  # the cache period is over
    assert d.secrets("ten_x", 105.0) == ["whsec_old", "whsec_new"]
    assert d.secrets("ten_x", 110.0) == ["whsec_new"]  # its end, to the second
    assert store.reads == 2


def test_with_no_cache_every_call_reads() -> None:
    store = FakeStore([SigningSecret("whsec_a", None)])
    d = directory(store, ttl=0)
    d.secrets("ten_x", 1.0)
    d.secrets("ten_x", 2.0)
    assert store.reads == 2


def test_ttl_cache_expires_and_starts_over_when_full() -> None:
    now = [0.0]
    cache: TtlCache[int] = TtlCache(5, max_entries=2, clock=lambda: now[0])
    cache.put("a", 1)
    assert cache.get("a") == (True, 1)
    now[0] = 5.0
    assert cache.get("a") == (False, None)
    cache.put("a", 1)
    cache.put("b", 2)
    cache.put("c", 3)
    assert cache.get("a") == (False, None) and cache.get("c") == (True, 3)


def test_scopes() -> None:
    assert EVERYONE.allows(None) and EVERYONE.allows("ten_a")
    assert Scope(tenant="ten_a").allows("ten_a") and not Scope(tenant="ten_a").allows("ten_b")
    assert not Scope(tenant="ten_a").allows(None)
    assert Scope().allows(None) and not Scope().allows("ten_a")


def test_the_cipher_decrypts_with_any_listed_key_and_encrypts_with_the_first() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = TenantStore.build_cipher([old])
    after = TenantStore.build_cipher([new, old])
    assert before is not None and after is not None
    token = before.encrypt(b"whsec_x")
    assert after.decrypt(token) == b"whsec_x"
    assert Fernet(new.encode()).decrypt(after.encrypt(b"y")) == b"y"
    assert TenantStore.build_cipher([]) is None


def test_settings_refuse_a_bad_encryption_key_without_echoing_it() -> None:
    import pytest
    from pydantic import ValidationError

    from compliance.settings import Settings

    with pytest.raises(ValidationError) as caught:
        Settings(tenant_encryption_keys="not-a-fernet-key-at-all")  # type: ignore[arg-type]
    assert "not-a-fernet-key" not in str(caught.value)
    assert "Fernet" in str(caught.value)


