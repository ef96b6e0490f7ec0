"""Dead records as the CLI reads them, and the fresh envelope a retry puts back. Pure.

The record's layout is geoq.records's (encode_dead, DeadRecord); this module reads a dead-set
entry into one and decides what `dead retry` stores for it.
"""

from __future__ import annotations

import dataclasses

from geoq import records
from geoq.broker.admin import DeadEntry, Revival
from geoq.errors import InvalidJob
from geoq.records import DeadRecord


def read(entry: DeadEntry) -> DeadRecord:
    return records.decode_dead(entry.queue, entry.member, entry.died_at)


def revival(record: DeadRecord) -> Revival | str:
    """What a retry puts back: the original envelope with its runs, worker deaths and errors reset,
    its meta kept. Returns the reason instead when the record holds nothing that can run again.
    The rewrite happens here, not in Lua, because a script must never decode a payload.
    """
    text = record.envelope
    if text is None:
        return "its bytes were not UTF-8 text, so they are not a job"
    try:
        job = records.decode(text.encode("utf-8"), record.queue)
    except InvalidJob:
        return "its envelope is not a job"
    fresh = dataclasses.replace(job, attempt=0, history=(), deaths=0)
    return Revival(record.member, records.encode(fresh, records.NO_LIMIT), job.id)
