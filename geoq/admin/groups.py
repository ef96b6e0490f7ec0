"""Dead jobs grouped by error fingerprint (geoq.fingerprint): list and filter the groups, page
one group's jobs, find one dead job by id, retry or delete one job, a group or all.

Every call reads a bounded amount per page from the dead-set index (geoq.broker.groups),
whatever the number of dead jobs: a page of groups is a few commands per queue, a filtered
one looks at SCAN_BUDGET groups at most. Group-wide retries and deletes go in batches, each
one atomic script, so no call holds Redis for long. `rebuild` indexes dead sets buried before
the index existed.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

from geoq import fingerprint as fingerprints
from geoq import job as jobs
from geoq.admin.dead import Tally, find_indexed, newest_per_id, retry_dead_before, retry_records
from geoq.admin.errors import UsageError
from geoq.admin.revive import read
from geoq.admin.session import Session
from geoq.broker.groups import GroupBroker, Reindexed
from geoq.errors import InvalidJob
from geoq.records import DeadRecord

SCAN_BUDGET = 2000    # groups a filtered page looks at, at most: the rest is for the next page
EXACT_TOTAL = 5000    # a filtered total is counted exactly up to this many groups, else estimated
_BATCH = 200          # groups or records read per round trip
_REINDEX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Group:
    fingerprint: str
    queue: str
    type: str               # job type ("" when unknown)
    error_type: str         # exception class name, or the reason (e.g. "expired") when no exception
    message: str            # the masked message (as the group's title)
    count: int
    first_seen: float       # unix seconds
    last_seen: float

    def as_json(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "queue": self.queue, "type": self.type,
                "error_type": self.error_type, "message": self.message, "count": self.count,
                "first_seen": round(self.first_seen, 3), "last_seen": round(self.last_seen, 3)}


@dataclass(frozen=True, slots=True)
class GroupPage:
    groups: list[Group]     # by last_seen, newest first
    next_cursor: str | None  # opaque; None on the last page
    total: int              # groups matching the filters (an estimate when `estimated`)
    estimated: bool = False  # filtered, over more than EXACT_TOTAL groups: total is extrapolated


# One group on its way through a page: (last seen, queue, fingerprint, title). Pages sort by the
# first three, descending, which is each queue's own order in Redis (ties: fingerprint, descending).
_Item = tuple[float, str, str, Mapping[str, Any]]


def _broker(s: Session) -> GroupBroker:
    return GroupBroker(s.broker.client, s.broker.scripts)


# -- groups ------------------------------------------------------------------------------------


def list_groups(s: Session, queues: Sequence[str], job_type: str | None = None, text: str | None = None,
                cursor: str | None = None, limit: int = 50) -> GroupPage:
    """The groups of these queues, newest last death first, `limit` at most per page, from `cursor`."""
    if limit <= 0:
        raise UsageError("--limit: expected a positive number")
    gb, after = _broker(s), _cursor(cursor)
    match = _matcher(job_type, text)
    merged = heapq.merge(*(_walk(gb, q, after, match is not None) for q in queues), key=_key, reverse=True)
    picked, scanned, last = [], 0, None
    for item in merged:
        scanned, last = scanned + 1, item
        if match is None or match(item[3]):
            picked.append(item)
        if len(picked) == limit or (match is not None and scanned >= SCAN_BUDGET):
            break
    more = last is not None and next(merged, None) is not None
    total, estimated = _total(gb, queues, match, after is None, len(picked), scanned, more)
    return GroupPage(_described(gb, picked), _cursor_of(last) if last is not None and more else None, total,
                     estimated)


def _walk(gb: GroupBroker, queue: str, after: tuple[float, str, str] | None, titled: bool) -> Iterator[_Item]:
    """One queue's groups after `after`, in page order, read _BATCH at a time (titles too when
    a filter needs them)."""
    below, offset = (after[0] if after else float("inf")), 0
    while True:
        found = gb.groups_newest(queue, below, offset, _BATCH)
        titles = gb.titles(queue, [fp for fp, _ in found]) if titled else [{}] * len(found)
        for (fp, seen), title in zip(found, titles):
            if after is None or (seen, queue, fp) < after:
                yield seen, queue, fp, title
        if len(found) < _BATCH:
            return
        offset += _BATCH


def _key(item: _Item) -> tuple[float, str, str]:
    return item[0], item[1], item[2]


def _described(gb: GroupBroker, items: Sequence[_Item]) -> list[Group]:
    """Each group's count, first and last deaths and title, read per queue in one round trip."""
    by_queue: dict[str, list[str]] = {}
    for _, queue, fp, _ in items:
        by_queue.setdefault(queue, []).append(fp)
    stats = {(st.queue, st.fingerprint): st for queue, fps in by_queue.items()
             for st in gb.stats(queue, fps) if st is not None}
    out = []
    for _, queue, fp, _ in items:
        st = stats.get((queue, fp))
        if st is not None:  # None: emptied since the page was read
            t = st.title
            out.append(Group(fp, queue, str(t.get("type") or ""), str(t.get("error_type") or ""),
                             str(t.get("message") or ""), st.count, st.first_seen, st.last_seen))
    return out


def _matcher(job_type: str | None, text: str | None) -> Callable[[Mapping[str, Any]], bool] | None:
    if job_type is None and not text:
        return None
    needle = (text or "").casefold()

    def match(title: Mapping[str, Any]) -> bool:
        if job_type is not None and title.get("type") != job_type:
            return False
        haystack = " ".join(str(title.get(k) or "") for k in ("type", "error_type", "message"))
        return needle in haystack.casefold()
    return match


def _total(gb: GroupBroker, queues: Sequence[str], match: Callable[[Mapping[str, Any]], bool] | None,
           first: bool, picked: int, scanned: int, more: bool) -> tuple[int, bool]:
    """How many groups match: exact without a filter, over few groups, or when the first page
    held them all; else extrapolated from the share of the groups looked at that matched."""
    totals = sum(gb.group_totals(queues))
    if match is None:
        return totals, False
    if first and not more:
        return picked, False
    if totals <= EXACT_TOTAL:
        return sum(1 for q in queues for title in gb.all_titles(q).values() if match(title)), False
    return round(totals * picked / max(1, scanned)), True


def _cursor_of(item: _Item) -> str:
    return f"{item[0]!r}/{item[2]}/{item[1]}"


def _cursor(text: str | None) -> tuple[float, str, str] | None:
    """(last seen, queue, fingerprint) a page ended with; a cursor this module did not make is refused."""
    if text is None:
        return None
    try:
        seen, fp, queue = text.split("/", 2)
        return float(seen), jobs.check_queue(queue), fp
    except (ValueError, InvalidJob):   # InvalidJob: the queue part is not a queue name
        raise UsageError(f"not a cursor of the dead groups: {text!r}") from None


# -- one group, one job ------------------------------------------------------------------------


def group_jobs(s: Session, queue: str, fingerprint: str, cursor: str | None = None,
               limit: int = 50) -> tuple[list[DeadRecord], str | None]:
    """A page of one group's dead jobs, newest first, and the cursor of the next page (None: last)."""
    if cursor is not None and not cursor.startswith(fingerprint + ":"):
        raise UsageError(f"not a cursor of dead group {fingerprint}: {cursor!r}")
    gb = _broker(s)
    entries = gb.entries(queue, fingerprint, cursor, limit)
    found = [read(entry) for entry in gb.records(queue, entries) if entry is not None]
    return found, (entries[-1] if len(entries) == limit else None)


def find_dead(s: Session, job_id: str) -> DeadRecord | None:
    """The newest dead record of a job id, found through the id index: a round trip for the queue
    its id names and the config's queues, then (not found there) one for every other queue found
    in Redis, which costs a SCAN of the keyspace. None when no index holds the id."""
    named = jobs.queue_of_id(job_id)
    likely = list(dict.fromkeys(([named] if named else []) + s.known_queues()))
    found = find_indexed(s, likely, [job_id])
    if not found:
        found = find_indexed(s, [q for q in s.queues() if q not in likely], [job_id])
    return found[0] if found else None


# -- retry and delete --------------------------------------------------------------------------


def retry_group(s: Session, queue: str, fingerprint: str) -> int:
    """Put every job of a group that was dead when the call began back on its ready list; the number re-queued."""
    tally = Tally()
    retry_group_into(s, queue, fingerprint, tally)
    return len(tally.retried)


def retry_group_into(s: Session, queue: str, fingerprint: str, tally: Tally) -> None:
    """As retry_group, each outcome counted in `tally` (dead retry's report)."""
    until, cursor = s.broker.server_time(), None
    while True:
        page, cursor = group_jobs(s, queue, fingerprint, cursor, _BATCH)
        retry_records(s, queue, (r for r in page if r.died_at <= until), tally)
        if cursor is None:
            return


def delete_group(s: Session, queue: str, fingerprint: str) -> int:
    """Delete every job of a group, in atomic steps; the number deleted."""
    gb, deleted = _broker(s), 0
    while True:
        removed, left = gb.drop_group_step(queue, fingerprint)
        deleted += removed
        if not left or not removed:
            return deleted


def retry_dead(s: Session, queue: str, job_ids: Sequence[str]) -> int:
    """Put these dead jobs (their newest records) back on the ready list; the number re-queued."""
    tally = Tally()
    retry_records(s, queue, newest_per_id(find_indexed(s, [queue], job_ids)), tally)
    return len(tally.retried)


def delete_dead(s: Session, queue: str, job_ids: Sequence[str]) -> int:
    """Delete every dead record of these job ids; the number deleted."""
    return s.broker.dead_remove(queue, [r.member for r in find_indexed(s, [queue], job_ids)])


def retry_all(s: Session, queue: str) -> int:
    """Put every job that was dead in the queue when the call began back on its ready list."""
    tally = Tally()
    retry_dead_before(s, queue, s.broker.server_time(), tally)
    return len(tally.retried)


def delete_all(s: Session, queue: str) -> int:
    """Empty the queue's dead set, in bounded steps; the number deleted."""
    return s.broker.dead_remove_all(queue)


def queue_of_group(s: Session, queues: Sequence[str], fingerprint: str) -> str | None:
    """The queue among these whose dead set holds this group (a fingerprint digests its queue)."""
    gb = _broker(s)
    for queue in queues:
        if gb.titles(queue, [fingerprint])[0]:
            return queue
    return None


# -- rebuild -----------------------------------------------------------------------------------


def rebuild(s: Session, queue: str) -> int:
    """Index the queue's dead records that have no index entry (buried by an older geoq): read
    in one scan of the set, rewritten in atomic batches. The number indexed."""
    gb, batch, done = _broker(s), [], 0
    for entry in s.broker.dead_scan(queue):
        if entry.member.startswith(b'{"') and not entry.member.startswith(b'{"fp":"'):
            batch.append(_reindexed(queue, read(entry)))
        if len(batch) == _REINDEX_BATCH:
            done, batch = done + gb.reindex(queue, batch), []
    return done + gb.reindex(queue, batch)


def _reindexed(queue: str, r: DeadRecord) -> Reindexed:
    title = fingerprints.title(queue, r.type, str(r.body.get("reason") or ""), str(r.body.get("error") or ""))
    return Reindexed(r.member, title.fingerprint, title.meta(), r.id)
