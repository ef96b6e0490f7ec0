"""dead.lua puts the envelope into the dead record itself: exact text, or hex for bytes that are not UTF-8."""

from __future__ import annotations

import json

import pytest

from geoq import records
from geoq.broker import keys
from geoq.broker.broker import Broker, Bury, Retention, Settlement
from geoq.broker.connection import connect
from geoq.config import default_config

K = keys.queue_keys("default")
EVERY_CHARACTER = "".join(map(chr, range(128))) + 'é€😀 "\\/ \u2028'
ENVELOPES = {
    "every ASCII character and some that are not": EVERY_CHARACTER.encode(),
    "a large one, sent as a memoryview": ('{"i":"default:x","a":0,"t":"t","p":"' + EVERY_CHARACTER * 1000 + '"}').encode(),
    "every byte (not UTF-8)": bytes(range(256)) * 300,
    "a cut UTF-8 sequence": "é".encode()[:1],
}


@pytest.fixture
def broker(redis_url: str) -> Broker:
    return Broker(connect(default_config(redis_url).redis, max_connections=4))


@pytest.mark.parametrize("name", list(ENVELOPES))
def test_a_buried_envelope_reads_back_from_its_dead_record_byte_for_byte(broker, redis_client, name):
    envelope = ENVELOPES[name]
    redis_client.rpush(K.processing("w1"), envelope)
    head = json.dumps({"id": "default:x", "reason": "oversize", "died_at": 1.5}).encode()
    burial = Bury(envelope, head, records.is_utf8(envelope), "default:x", b"{}")
    result = broker.settle("w1", [Settlement("default", burials=[burial])], Retention(60, 100, 3600.0))
    assert (result.fenced, result.refused) == (0, [])
    ((member, _),) = redis_client.zrange(K.dead, 0, -1, withscores=True)
    record = json.loads(member)
    assert {k: record[k] for k in ("id", "reason", "died_at")} == {"id": "default:x", "reason": "oversize",
                                                                     "died_at": 1.5}
    if records.is_utf8(envelope):
        assert record["envelope"].encode() == envelope and "envelope_hex" not in record
    else:
        assert bytes.fromhex(record["envelope_hex"]) == envelope and "envelope" not in record
    assert redis_client.exists(K.processing("w1")) == 0 and redis_client.get(K.done("default:x")) == b"{}"
