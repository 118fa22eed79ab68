"""The settings class refuses unsafe combinations and accepts what people type."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from compliance.messaging import celery_config
from compliance.settings import Settings

KEYS = {"admin_api_keys": "a" * 20, "producer_api_keys": "p" * 20,
        "webhook_secrets": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}


def test_production_defaults_are_safe_and_match_the_seed():
    s = Settings(**KEYS)
    assert (s.worker_concurrency, s.worker_prefetch_multiplier, s.task_time_limit) == (4, 1, 3600)
    assert s.max_retries == 3
    assert (s.status_ttl_delivered, s.status_ttl_open, s.dead_letter_ttl) == (1800, 604800, 2592000)
    assert s.broker_queue_key == "compliance-compliance_queue"
    assert s.allow_loopback_targets is False
    assert s.ttl_for_status("delivered") == 1800
    assert all(s.ttl_for_status(x) == 604800 for x in ("pending", "retrying", "failed"))


def test_celery_config_is_the_safe_seed_config():
    s = Settings(**KEYS)
    conf = celery_config(s)
    assert conf["worker_concurrency"] == 4
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["task_time_limit"] == 3600
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    opts = conf["broker_transport_options"]
    assert opts["global_keyprefix"] == "compliance-"
    assert opts["visibility_timeout"] > s.task_time_limit + s.retry_after_max_seconds
    assert conf["worker_soft_shutdown_timeout"] > 0
    # Redis trouble is waited out, and a dead restore-lock holder blocks restores briefly
    assert conf["broker_connection_max_retries"] is None
    assert opts["unacked_mutex_expire"] == s.broker_unacked_mutex_expire < 300
    # deliveries have their own, short limit (their lease derives from it); reports recycle
    assert conf["task_annotations"]["compliance.deliver_webhook"]["time_limit"] == 120
    assert s.delivery_lease_seconds > 120
    assert conf["worker_max_tasks_per_child"] == s.worker_max_tasks_per_child > 0
    assert conf["worker_max_memory_per_child"] == s.worker_max_memory_per_child > 0


def test_refuses_visibility_timeout_not_above_limits():
    with pytest.raises(ValidationError, match="visibility_timeout"):
        Settings(**KEYS, broker_visibility_timeout=3600)
    with pytest.raises(ValidationError, match="visibility_timeout"):
        Settings(**KEYS, broker_visibility_timeout=4000, retry_after_max_seconds=900)


def test_each_process_asks_only_for_what_it_uses():
    # A worker, the Celery CLI, the replay Job and the operator need no API keys.
    bare = Settings()
    assert any("API_KEYS" in p for p in bare.api_problems())
    assert any("WEBHOOK_SECRETS" in p for p in bare.signing_problems())
    signer = Settings(webhook_secrets=KEYS["webhook_secrets"])
    assert signer.signing_problems() == [] and signer.api_problems() != []
    api = Settings(admin_api_keys="a" * 20, producer_api_keys="p" * 20)
    assert api.api_problems() == [] and api.signing_problems() != []
    with pytest.raises(ValidationError, match="placeholders"):
        Settings(admin_api_keys="changeme", producer_api_keys="p" * 20)
    dev = Settings(dev_mode=True)
    assert dev.api_problems() == [] and dev.signing_problems() == []


def test_the_api_refuses_to_start_without_keys_outside_dev_mode():
    from compliance.api.app import create_app

    with pytest.raises(ValueError, match="API_KEYS"):
        create_app(Settings(webhook_secrets=KEYS["webhook_secrets"]))


def test_lists_from_env_accept_csv_and_json(monkeypatch):
    monkeypatch.setenv("COMPLIANCE_DEV_MODE", "true")
    monkeypatch.setenv("COMPLIANCE_ALLOWED_PORTS", "443, 8443")
    monkeypatch.setenv("COMPLIANCE_ADMIN_API_KEYS", '["k1-aaaaaaaaaaaaaaaa", "k2-bbbbbbbbbbbbbbbb"]')
    s = Settings()
    assert s.allowed_ports == [443, 8443]
    assert [k.get_secret_value() for k in s.admin_api_keys] == ["k1-aaaaaaaaaaaaaaaa", "k2-bbbbbbbbbbbbbbbb"]
    monkeypatch.setenv("COMPLIANCE_ALLOWED_PORTS", "")
    assert Settings().allowed_ports == []


def test_secrets_must_be_whsec():
    with pytest.raises(ValidationError, match="whsec_"):
        Settings(dev_mode=True, webhook_secrets="plain-secret")


def test_soft_limit_below_hard_limit():
    with pytest.raises(ValidationError, match="soft"):
        Settings(dev_mode=True, task_soft_time_limit=3600)


def test_redis_pool_covers_delivery_threads():
    with pytest.raises(ValidationError, match="redis_max_connections"):
        Settings(dev_mode=True, delivery_engine="threads", delivery_concurrency=256,
                 redis_max_connections=100)
    # the asyncio engine holds one pool connection per batch, not per delivery
    assert Settings(dev_mode=True, delivery_concurrency=1024, redis_max_connections=100)
