"""The dead-set index: dead records by group (geoq.fingerprint), read in bounded pages, and the
moves that remove or index records in bulk.

Every script that adds to a dead set or removes from it (dead.lua, reap.lua, promote.lua,
trim.lua, dead_retry.lua, dead_drop.lua and the two below) keeps the index in the same atomic
step (_dead_index.lua). Per queue, under its hash tag:

    dead_groups  zset  fingerprint -> Redis time its newest record died
    dead_titles  hash  fingerprint -> {"type", "error_type", "message"}
    dead_index   zset  "FP:DIED:SEQ:ID", all scored 0, read by lex: one group's records by time
    dead_ids     hash  job id -> its records' entries
    dead_seq     counter of the records' sequence numbers

A record starts {"fp":FP,"seq":SEQ, and its score is DIED, so an entry names its record
exactly: ZRANGE BYSCORE DIED DIED finds it among the (almost always no) others that died in the
same microsecond. A group's size is a ZLEXCOUNT, its first and last deaths its first and last
entries: no counter can drift from the set. Each read here is a few commands per page,
whatever the number of dead records. No policy lives here: what to retry is the caller's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence, cast

import redis

from geoq.broker import keys, replies
from geoq.broker.admin import DeadEntry
from geoq.broker.broker import shared_scripts
from geoq.broker.errors import redis_errors
from geoq.broker.scripts import Call, Scripts, run
from geoq.records import json_object

DROP_STEP = 100     # records one dead_group_drop.lua call removes: about 2-4 ms of Redis time (bench/dead_groups.py)
REINDEX_STEP = 100  # records one dead_reindex.lua call rewrites (each is copied once, whole)
_DIED = slice(17)   # an entry's DIED, after "FP:": 17 characters, %017.6f


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One group as the index holds it."""

    queue: str
    fingerprint: str
    title: Mapping[str, Any]   # {"type", "error_type", "message"}; empty when the title is missing
    count: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class Reindexed:
    """One record of an unindexed dead set, with the group the caller computed for it."""

    member: bytes
    fingerprint: str
    title: bytes   # the group's title, JSON
    id: str        # '' when the record names no job id


def entry_died(fingerprint: str, entry: str) -> float:
    """The death time an index entry of this group names."""
    return float(entry[len(fingerprint) + 1:][_DIED])


class GroupBroker:
    """Reads and bulk moves of the dead-set index. `client` is a redis.Redis built by connection.connect."""

    def __init__(self, client: "redis.Redis", scripts: Scripts | None = None) -> None:
        self.client = client
        self.scripts = scripts or shared_scripts()

    # -- groups --------------------------------------------------------------------------------

    def group_totals(self, queues: Sequence[str]) -> list[int]:
        """How many groups each queue has: one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.zcard(keys.queue_keys(queue).dead_groups)
        with redis_errors("dead groups"):
            return [int(n) for n in pipe.execute()]

    def groups_newest(self, queue: str, below: float, offset: int, count: int) -> list[tuple[str, float]]:
        """(fingerprint, last seen) of a queue's groups whose newest record died at or before
        `below`, newest first (equal times by fingerprint, descending), from `offset`."""
        with redis_errors("dead groups"):
            found = self.client.zrevrangebyscore(keys.queue_keys(queue).dead_groups, repr(below), "-inf",
                                                 start=offset, num=count, withscores=True)
        return [(replies.text(fp), float(score)) for fp, score in cast("list[Any]", found)]

    def titles(self, queue: str, fingerprints: Sequence[str]) -> list[Mapping[str, Any]]:
        """The titles of these groups ({} for one that is gone)."""
        if not fingerprints:
            return []
        with redis_errors("dead groups"):
            found = self.client.hmget(keys.queue_keys(queue).dead_titles, list(fingerprints))
        return [json_object(raw) for raw in cast("list[Any]", found)]

    def all_titles(self, queue: str) -> dict[str, Mapping[str, Any]]:
        """Every group's title in a queue (for counting what a filter matches: call it only for
        a bounded number of groups)."""
        with redis_errors("dead groups"):
            found = cast("dict[bytes, bytes]", self.client.hgetall(keys.queue_keys(queue).dead_titles))
        return {replies.text(fp): json_object(raw) for fp, raw in found.items()}

    def stats(self, queue: str, fingerprints: Sequence[str]) -> list[GroupStats | None]:
        """Each group's title, size and first and last deaths: one round trip (None: gone)."""
        k = keys.queue_keys(queue)
        pipe = self.client.pipeline(transaction=False)
        for fp in fingerprints:
            lo, hi = _lex_range(fp)
            pipe.hget(k.dead_titles, fp)
            pipe.zlexcount(k.dead_index, lo, hi)
            pipe.zrange(k.dead_index, lo, hi, bylex=True, offset=0, num=1)
            pipe.zrange(k.dead_index, hi, lo, desc=True, bylex=True, offset=0, num=1)
        with redis_errors("dead groups"):
            answers = pipe.execute()
        return [_stats(queue, fp, *answers[4 * i:4 * i + 4]) for i, fp in enumerate(fingerprints)]

    # -- one group's records -------------------------------------------------------------------

    def entries(self, queue: str, fingerprint: str, after: str | None, count: int) -> list[str]:
        """A group's index entries, newest first, after the entry `after` (None: from the newest)."""
        lo, hi = _lex_range(fingerprint)
        with redis_errors("dead group"):
            found = self.client.zrange(keys.queue_keys(queue).dead_index, "(" + after if after else hi, lo,
                                       desc=True, bylex=True, offset=0, num=count)
        return [replies.text(e) for e in found]

    def records(self, queue: str, entries: Sequence[str]) -> list[DeadEntry | None]:
        """The dead record each entry names (None: gone meanwhile): one round trip."""
        k = keys.queue_keys(queue)
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:
            died = entry.split(":", 2)[1]
            pipe.zrange(k.dead, died, died, byscore=True, withscores=True)
        with redis_errors("dead group"):
            answers = pipe.execute()
        return [_named(queue, entry, found) for entry, found in zip(entries, answers)]

    def entries_of_id(self, queues: Sequence[str], job_id: str) -> list[tuple[str, str]]:
        """(queue, entry) of every dead record of a job id in these queues: one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            pipe.hget(keys.queue_keys(queue).dead_ids, job_id)
        with redis_errors("dead find"):
            answers = pipe.execute()
        return [(queue, entry) for queue, found in zip(queues, answers) if found
                for entry in replies.text(found).split()]

    # -- bulk moves ----------------------------------------------------------------------------

    def drop_group_step(self, queue: str, fingerprint: str, step: int = DROP_STEP) -> tuple[int, int]:
        """Remove up to `step` of a group's oldest records, with their entries, in one atomic
        step: (records removed, records of the group left)."""
        k = keys.queue_keys(queue)
        with redis_errors("dead purge"):
            ((removed, left),) = run(self.client, self.scripts,
                                     [Call("dead_group_drop", (k.dead, *k.dead_index_keys), [fingerprint, step])])
        return int(removed), int(left)

    def reindex(self, queue: str, items: Sequence[Reindexed]) -> int:
        """Index records buried before the index existed (dead_reindex.lua: each rewritten with its
        head, in one atomic step per REINDEX_STEP records); how many were indexed."""
        k = keys.queue_keys(queue)
        done = 0
        for start in range(0, len(items), REINDEX_STEP):
            args = [part for r in items[start:start + REINDEX_STEP] for part in (r.member, r.fingerprint, r.title, r.id)]
            with redis_errors("dead reindex"):
                done += int(run(self.client, self.scripts, [Call("dead_reindex", (k.dead, *k.dead_index_keys), args)])[0])
        return done


def _lex_range(fingerprint: str) -> tuple[str, str]:
    """The lex bounds of one group's entries ("FP:..."; ";" follows ":")."""
    return "[" + fingerprint + ":", "(" + fingerprint + ";"


def _stats(queue: str, fp: str, title: bytes | None, count: int, first: list[bytes],
           last: list[bytes]) -> GroupStats | None:
    if not first or not last:
        return None
    return GroupStats(queue, fp, json_object(title), int(count), entry_died(fp, replies.text(first[0])),
                      entry_died(fp, replies.text(last[0])))


def _named(queue: str, entry: str, found: list[Any]) -> DeadEntry | None:
    """The record among those of one death time whose head the entry names."""
    fp, _, seq = entry.split(":", 3)[:3]
    head = b'{"fp":"' + fp.encode() + b'","seq":' + seq.encode() + b","
    for member, score in found:
        if bytes(member).startswith(head):
            return DeadEntry(queue, bytes(member), float(score))
    return None
