"""`geoq cancel ID | pause QUEUE | resume QUEUE`: job control from a shell."""

from __future__ import annotations

import argparse

from geoq import job as jobs
from geoq.admin import render
from geoq.admin.errors import NotFound
from geoq.admin.session import Session
from geoq.exits import EXIT_OK


def cancel(s: Session, args: argparse.Namespace) -> int:
    """Exit 0 when the job was queued, scheduled or running (it ends cancelled); 1 when it is
    finished or unknown; 2 for an id that cannot be a job's."""
    job_id = jobs.check_id(args.id)
    if not s.client.cancel(job_id, queue=args.queue):
        raise NotFound(f"no job {job_id} to cancel (unknown id, or it has finished)")
    print(render.to_json({"id": job_id, "cancelled": True}) if args.json else f"cancelled {job_id}")
    return EXIT_OK


def pause(s: Session, args: argparse.Namespace) -> int:
    queue = jobs.check_queue(args.queue)
    changed = s.client.pause(queue)
    _report(args, queue, True, "paused" if changed else "already paused")
    return EXIT_OK


def resume(s: Session, args: argparse.Namespace) -> int:
    queue = jobs.check_queue(args.queue)
    changed = s.client.resume(queue)
    _report(args, queue, False, "resumed" if changed else "was not paused")
    return EXIT_OK


def _report(args: argparse.Namespace, queue: str, paused: bool, what: str) -> None:
    print(render.to_json({"queue": queue, "paused": paused}) if args.json else f"queue {queue}: {what}")
