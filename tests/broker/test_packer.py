"""geoq.broker.connection.Packer: the same protocol bytes as redis-py's packer, and its errors."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from redis._parsers.encoders import Encoder
from redis.connection import HiredisRespSerializer, PythonRespSerializer

from geoq.broker.connection import PACKER, connect
from geoq.config import RedisConfig

_ENCODE = Encoder("utf-8", "strict", False).encode  # type: ignore[no-untyped-call]
REDIS_PY = HiredisRespSerializer(PythonRespSerializer(6000, _ENCODE).pack, _ENCODE)  # type: ignore[no-untyped-call]

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "ab" * 20, 2, "{q}:processing", "{q}:state", 86400, b'{"i":"q:x","a":0}', b"\xff\x00raw"),
    ("SET", "ключ", "значение ✓", "EX", 5),
    ("ZADD", "k", 0.1, "a", 1765000000.123, "b", 1e20, "c", -0.0, "d", 10 ** 30, "e"),
    ("SCRIPT LOAD", "return 1"),
    ("CLIENT", "SETNAME", "geoq"),
    ("SET", "", b""),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_packs_the_bytes_redis_py_packs(command: tuple[Any, ...]) -> None:
    assert b"".join(PACKER.pack(*command)) == b"".join(REDIS_PY.pack(*command))


def test_a_memoryview_goes_uncopied_as_a_chunk_of_its_own() -> None:
    big = memoryview(b"x" * 10_000)
    chunks = PACKER.pack("RPUSH", "k", big, b"small")
    assert any(chunk is big for chunk in chunks)
    assert b"".join(bytes(c) for c in chunks) == b"".join(bytes(c) for c in REDIS_PY.pack("RPUSH", "k", big, b"small"))


@pytest.mark.parametrize("bad", [None, True, object()], ids=["None", "bool", "object"])
def test_a_value_redis_cannot_take_is_redis_pys_data_error(bad: Any) -> None:
    with pytest.raises(redis.DataError, match="Invalid input of type"):
        PACKER.pack("SET", "k", bad)


def test_a_client_geoq_builds_packs_with_it_and_round_trips_every_kind(redis_url: str) -> None:
    client = connect(RedisConfig(url=redis_url))
    try:
        pipe = client.pipeline(transaction=False)
        pipe.set("text", "значение ✓").set("bytes", b"\xff\x00").set("float", 0.1).set("int", 10 ** 30)
        pipe.rpush("big", memoryview(b"y" * 100_000))
        pipe.execute()
        assert client.mget("text", "bytes", "float", "int") == ["значение ✓".encode(), b"\xff\x00", b"0.1",
                                                              b"1000000000000000000000000000000"]
        assert client.lindex("big", 0) == b"y" * 100_000
        assert client.script_load("return 7") and client.eval("return 7", 0) == 7
        conn = client.connection_pool.get_connection()
        try:
            assert conn._command_packer is PACKER   # type: ignore[attr-defined]
        finally:
            client.connection_pool.release(conn)
    finally:
        client.close()
