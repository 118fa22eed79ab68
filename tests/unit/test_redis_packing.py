"""The asyncio client's hiredis packer sends the bytes redis-py's own Python packer would."""

from __future__ import annotations

import pytest
import redis.asyncio
from redis.exceptions import DataError

from compliance.redis_client import PackedConnection

COMMANDS = [
    ("SET", "k", "v"),
    ("EVALSHA", "f" * 40, 2, "key:1", "key:2", 1733000000.123456, 0.1 + 0.2, -7, "é ü"),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", "name"),
    ("HSET", b"raw", bytearray(b"\x00\xff"), memoryview(b"view")),
    ("SET", "big", "x" * 10_000),  # past redis-py's buffer cutoff: it sends chunks
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_the_packed_bytes_are_redis_pys_own(command):
    ours = PackedConnection()
    theirs = redis.asyncio.Connection()
    assert b"".join(ours.pack_command(*command)) == b"".join(theirs.pack_command(*command))
    pipeline = [command, ("PING",)]
    assert b"".join(ours.pack_commands(pipeline)) == b"".join(theirs.pack_commands(pipeline))


def test_what_redis_py_refuses_is_refused_as_its_data_error():
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", None)
