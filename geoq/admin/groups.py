"""STAND-IN for the dead-groups layer (see CONTRACT B): groups found by scanning whole dead sets.

Slow (every call reads every record) and with a crude mask; the real module, with its own
fingerprint and index, replaces this one at merge. The dashboard is built only against these
names and signatures.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Iterable, Sequence

from geoq.admin import dead
from geoq.admin.revive import read
from geoq.admin.session import Session
from geoq.records import DeadRecord


@dataclass(frozen=True, slots=True)
class Group:
    fingerprint: str
    queue: str
    type: str
    error_type: str
    message: str
    count: int
    first_seen: float
    last_seen: float


@dataclass(frozen=True, slots=True)
class GroupPage:
    groups: list[Group]
    next_cursor: str | None
    total: int


_MASK = re.compile(r"0x[0-9a-fA-F]+|[0-9a-fA-F-]{8,}|\d+|'[^']*'|\"[^\"]*\"")


def _parts(r: DeadRecord) -> tuple[str, str, str, str]:
    error = str(r.body.get("error") or "")
    kind, sep, message = error.partition(": ")
    if not sep:
        kind, message = str(r.body.get("reason") or ""), error
    return r.queue, r.type or "", kind, _MASK.sub("#", message)


def _fingerprint(parts: tuple[str, str, str, str]) -> str:
    return hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).hexdigest()


def _records(s: Session, queue: str) -> list[DeadRecord]:
    return sorted(map(read, s.broker.dead_scan(queue)), key=lambda r: r.died_at, reverse=True)


def _offset(cursor: str | None) -> int:
    return int(cursor) if cursor and cursor.isdigit() else 0


def list_groups(s: Session, queues: Sequence[str], job_type: str | None = None, text: str | None = None,
                cursor: str | None = None, limit: int = 50) -> GroupPage:
    found: dict[str, list[DeadRecord]] = {}
    parts: dict[str, tuple[str, str, str, str]] = {}
    for queue in queues:
        for r in _records(s, queue):
            p = _parts(r)
            if job_type and p[1] != job_type:
                continue
            if text and text.lower() not in " ".join(p + (str(r.body.get("error") or ""),)).lower():
                continue
            fp = _fingerprint(p)
            parts[fp] = p
            found.setdefault(fp, []).append(r)
    groups = sorted((Group(fp, *parts[fp], len(rs), min(r.died_at for r in rs), max(r.died_at for r in rs))
                     for fp, rs in found.items()), key=lambda g: g.last_seen, reverse=True)
    start = _offset(cursor)
    more = start + limit < len(groups)
    return GroupPage(groups[start:start + limit], str(start + limit) if more else None, len(groups))


def _members(s: Session, queue: str, fingerprint: str) -> list[DeadRecord]:
    return [r for r in _records(s, queue) if _fingerprint(_parts(r)) == fingerprint]


def group_jobs(s: Session, queue: str, fingerprint: str, cursor: str | None = None,
               limit: int = 50) -> tuple[list[DeadRecord], str | None]:
    rs, start = _members(s, queue, fingerprint), _offset(cursor)
    return rs[start:start + limit], (str(start + limit) if start + limit < len(rs) else None)


def find_dead(s: Session, job_id: str) -> DeadRecord | None:
    found = dead.find(s, s.queues(), [job_id])
    return found[0] if found else None


def _retry(s: Session, queue: str, chosen: Iterable[DeadRecord]) -> int:
    tally = dead._Tally()
    dead._retry(s, queue, chosen, tally)
    return len(tally.retried)


def retry_group(s: Session, queue: str, fingerprint: str) -> int:
    return _retry(s, queue, _members(s, queue, fingerprint))


def delete_group(s: Session, queue: str, fingerprint: str) -> int:
    return s.broker.dead_remove(queue, [r.member for r in _members(s, queue, fingerprint)])


def retry_dead(s: Session, queue: str, job_ids: Sequence[str]) -> int:
    return _retry(s, queue, [r for r in dead.find(s, [queue], job_ids)])


def delete_dead(s: Session, queue: str, job_ids: Sequence[str]) -> int:
    return s.broker.dead_remove(queue, [r.member for r in dead.find(s, [queue], job_ids)])


def retry_all(s: Session, queue: str) -> int:
    return _retry(s, queue, _records(s, queue))


def delete_all(s: Session, queue: str) -> int:
    return s.broker.dead_remove_all(queue)
