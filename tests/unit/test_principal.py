"""The caller's identity: role by key, a key id that names the key without revealing it."""

from __future__ import annotations

from pydantic import SecretStr

from compliance.api.principal import Principal, key_id, resolve
from compliance.settings import Settings


def _settings() -> Settings:
    return Settings(admin_api_keys=[SecretStr("admin-key-0123456789abcdef")],
                    producer_api_keys=[SecretStr("producer-key-0123456789ab")])


def test_each_configured_key_resolves_to_its_role_and_id():
    settings = _settings()
    admin = resolve(settings, "admin-key-0123456789abcdef")
    producer = resolve(settings, "producer-key-0123456789ab")
    assert admin == Principal(role="admin", key_id=key_id("admin-key-0123456789abcdef"))
    assert admin is not None and admin.admin and admin.tenant is None
    assert producer is not None and producer.role == "producer" and not producer.admin
    assert resolve(settings, "producer-key-0123456789aX") is None


def test_a_key_id_is_stable_distinct_and_does_not_contain_the_key():
    one, other = key_id("producer-key-0123456789ab"), key_id("producer-key-0123456789ac")
    assert one == key_id("producer-key-0123456789ab") and one != other
    assert one.startswith("key_") and len(one) == 20 and "0123456789" not in one
