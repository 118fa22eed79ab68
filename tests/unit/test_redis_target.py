"""Where Redis is: a URL, or a primary behind Sentinel, as redis-py and kombu are told (pure)."""

from __future__ import annotations

import pytest
from kombu import Connection
from pydantic import ValidationError

from compliance.broker_transport import SentinelChannel, SentinelTransport, Transport
from compliance.messaging import celery_config
from compliance.redis_client import RedisTarget
from compliance.settings import Settings

KEYS = {"admin_api_keys": "a" * 20, "producer_api_keys": "p" * 20,
        "webhook_secrets": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}


def test_a_plain_url_stays_a_plain_url_everywhere():
    s = Settings(**KEYS, redis_url="redis://:pw@redis.internal:6380/3")
    target = RedisTarget.from_settings(s)
    assert not target.uses_sentinel
    conf = celery_config(s)
    assert conf["broker_url"] == "redis://:pw@redis.internal:6380/3"
    assert conf["broker_transport"] == "compliance.broker_transport:Transport"
    assert "master_name" not in conf["broker_transport_options"]


def test_sentinels_win_over_the_urls_host_and_keep_its_database_and_password():
    s = Settings(**KEYS, redis_url="redis://user:p%40ss@ignored:1/5",
                 redis_sentinels="s1.internal:26379, [fd00::1]:26380,s3:26381",
                 redis_sentinel_master="compliance", redis_sentinel_password="sentinel-secret")
    target = RedisTarget.from_settings(s)
    assert target.sentinels == (("s1.internal", 26379), ("fd00::1", 26380), ("s3", 26381))
    assert target.master == "compliance"
    params = target.data_node_params()
    assert (params["db"], params["username"], params["password"]) == (5, "user", "p@ss")
    assert "host" not in params and "port" not in params
    assert "sentinel-secret" not in repr(target)  # never in a log line
    conf = celery_config(s)
    assert conf["broker_transport"] == "compliance.broker_transport:SentinelTransport"
    # one URL (no ';' list: kombu would switch to its stock transport on the first error)
    assert conf["broker_url"] == "sentinel://user:p%40ss@s1.internal:26379/5"
    opts = conf["broker_transport_options"]
    assert opts["master_name"] == "compliance"
    assert opts["sentinels"] == [["s1.internal", 26379], ["fd00::1", 26380], ["s3", 26381]]
    assert opts["sentinel_kwargs"]["password"] == "sentinel-secret"
    assert opts["global_keyprefix"] == "compliance-"  # the broker's own options stay
    # kombu parses it into our transport, with the database and the credentials of the data nodes
    conn = Connection(conf["broker_url"], transport=conf["broker_transport"],
                      transport_options=opts)
    assert conn.transport_cls == "compliance.broker_transport:SentinelTransport"
    assert (conn.virtual_host, conn.userid, conn.password) == ("5", "user", "p@ss")
    assert not conn.alt[1:]  # nothing to switch to
    assert "sentinels" in SentinelChannel.from_transport_options
    assert issubclass(SentinelTransport.Channel.QoS, Transport.Channel.QoS)


def test_the_operator_reads_the_same_names_from_a_secret():
    env = {"COMPLIANCE_REDIS_URL": "redis://x:6379/2", "COMPLIANCE_REDIS_SENTINELS": "a:1,b:2",
           "COMPLIANCE_REDIS_SENTINEL_MASTER": "m", "COMPLIANCE_REDIS_SENTINEL_PASSWORD": "pw"}
    target = RedisTarget.from_env(env)
    settings = Settings(**KEYS, redis_url=env["COMPLIANCE_REDIS_URL"], redis_sentinels="a:1,b:2",
                        redis_sentinel_master="m", redis_sentinel_password="pw")
    assert target == RedisTarget.from_settings(settings)
    assert not RedisTarget.from_env({"COMPLIANCE_REDIS_URL": "redis://x:6379/0"}).uses_sentinel
    with pytest.raises(KeyError):
        RedisTarget.from_env({"COMPLIANCE_REDIS_SENTINELS": "a:1"})


@pytest.mark.parametrize("bad", ["nohost", "host:", ":26379", "host:0", "host:70000", "host:port"])
def test_a_bad_sentinel_address_is_refused_clearly(bad):
    with pytest.raises(ValidationError, match="is not host:port"):
        Settings(**KEYS, redis_sentinels=f"ok:26379,{bad}")
    with pytest.raises(ValueError, match="is not host:port"):
        RedisTarget.from_env({"COMPLIANCE_REDIS_URL": "redis://x/0", "COMPLIANCE_REDIS_SENTINELS": bad})
