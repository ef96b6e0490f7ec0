"""`geoq dead groups`, and `dead retry --group FP` / `dead purge --group FP`: dead jobs by error
fingerprint (geoq.admin.groups). Without --group, `dead retry` and `dead purge` are geoq.admin.dead's."""

from __future__ import annotations

import argparse
import re
from typing import Any, Sequence

from geoq.admin import dead, render
from geoq.admin.dead import Tally
from geoq.admin.errors import NotFound, UsageError
from geoq.admin.groups import Group, GroupPage, delete_group, list_groups, queue_of_group, rebuild, retry_group_into
from geoq.admin.session import Session
from geoq.exits import EXIT_OK

_FINGERPRINT = re.compile(r"[0-9a-f]{1,64}")
_MESSAGE_WIDTH = 60


def dead_groups(s: Session, args: argparse.Namespace) -> int:
    if args.limit <= 0:
        raise UsageError("--limit: expected a positive number")
    queues = dead.queues_for(s, args.queue)
    indexed = {q: rebuild(s, q) for q in queues} if args.rebuild else None
    page = s.read(lambda: list_groups(s, queues, args.type, args.text, args.cursor, args.limit))
    if args.json:
        out: dict[str, Any] = {"groups": [g.as_json() for g in page.groups], "total": page.total,
                               "estimated": page.estimated, "next_cursor": page.next_cursor}
        print(render.to_json(out if indexed is None else {**out, "indexed": indexed}))
        return EXIT_OK
    if indexed is not None:
        print(f"indexed {sum(indexed.values())} dead jobs buried before the index existed")
    print(_text(page) if page.groups else "no dead jobs" + _filtered(args))
    return EXIT_OK


def _text(page: GroupPage) -> str:
    table = render.table(("LAST SEEN", "FIRST SEEN", "COUNT", "QUEUE", "TYPE", "ERROR", "MESSAGE", "GROUP"),
                         [_row(g) for g in page.groups])
    about = "about " if page.estimated else ""
    lines = [table, f"{len(page.groups)} of {about}{page.total} group{'' if page.total == 1 else 's'}"]
    if page.next_cursor:
        lines.append(f"next page: --cursor {page.next_cursor}")
    return "\n".join(lines)


def _row(g: Group) -> Sequence[Any]:
    return (render.when(g.last_seen), render.when(g.first_seen), g.count, g.queue, g.type or "?", g.error_type,
            render.one_line(g.message, _MESSAGE_WIDTH), g.fingerprint)


def _filtered(args: argparse.Namespace) -> str:
    parts = [f"of type {args.type}" if args.type else "", f"matching {args.text!r}" if args.text else ""]
    return "".join(" " + p for p in parts if p)


# -- retry and purge of a group ----------------------------------------------------------------


def dead_retry(s: Session, args: argparse.Namespace) -> int:
    """`dead retry`: a group's jobs with --group, else geoq.admin.dead's."""
    if args.group is None:
        return dead.dead_retry(s, args)
    if args.ids or args.all or args.type:
        raise UsageError("dead retry: give job ids, --all or --group FP (one of them; --type does not go with --group)")
    queue = _group_queue(s, args)
    tally = Tally()
    retry_group_into(s, queue, args.group, tally)
    if args.json:
        print(render.to_json({"retried": len(tally.retried), "ids": tally.retried, "skipped": tally.skipped,
                              "missing": [], "gone": tally.gone, "group": args.group}))
        return EXIT_OK
    print(f"retried {len(tally.retried)} dead job{'' if len(tally.retried) == 1 else 's'} of group {args.group}")
    for item in tally.skipped:
        print(f"left dead: {item['id'] or '?'} ({item['queue']}): {item['why']}")
    return EXIT_OK


def dead_purge(s: Session, args: argparse.Namespace) -> int:
    """`dead purge`: a group's jobs with --group, else geoq.admin.dead's."""
    if args.group is None:
        return dead.dead_purge(s, args)
    if args.ids or args.all or args.older_than is not None:
        raise UsageError("dead purge: give job ids, --all, --older-than AGE or --group FP (one of them)")
    queue = _group_queue(s, args)
    purged = delete_group(s, queue, args.group)
    if args.json:
        print(render.to_json({"purged": purged, "queues": {queue: purged} if purged else {}, "missing": [],
                              "group": args.group}))
    else:
        print(f"purged {purged} dead job{'' if purged == 1 else 's'} of group {args.group}")
    return EXIT_OK


def _group_queue(s: Session, args: argparse.Namespace) -> str:
    """The queue holding the group --group names (exit 1 when none does)."""
    if not _FINGERPRINT.fullmatch(args.group):
        raise UsageError(f"--group: expected a group's fingerprint (hex digits, as `geoq dead groups` shows), "
                         f"got {args.group!r}")
    queue = s.read(lambda: queue_of_group(s, dead.queues_for(s, args.queue), args.group))
    if queue is None:
        raise NotFound(f"no dead group {args.group}" + (f" in queue {args.queue}" if args.queue else ""))
    return queue
