"""`geoq [-c CONFIG | --redis-url URL] [--json] <command>`: see and fix queues from a shell.

Exit status: 0 done; 1 what was asked for does not exist (or a named job could not be
acted on: `cancel` of a finished or unknown job); 2 usage or config error (a bad job id
or queue name included), authentication, ACL and certificate failures
included; 3 Redis unreachable (refused, unknown host, timeout). Every error is one
line on stderr. The config comes from -c, else $GEOQ_CONFIG, else the defaults;
--redis-url replaces its redis.url.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, NoReturn, Sequence

import redis

from geoq.admin import commands, control, dead, dead_groups, lookup, render, schedules
from geoq.admin.errors import CommandError, UsageError
from geoq.admin.session import Session, resolve_config
from geoq.broker.errors import translate
from geoq.errors import ConfigError, InvalidJob, PayloadTooLarge, RedisAuthError, RedisUnavailable
from geoq.exits import EXIT_NOT_FOUND, EXIT_UNREACHABLE, EXIT_USAGE
from geoq.units import parse_duration

PROG = "geoq"

Run = Callable[[Session, argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit status 2, never its usage block."""

    def error(self, message: str) -> NoReturn:
        where = self.prog[len(PROG):].strip()
        raise UsageError(f"{where + ': ' if where else ''}{message} (see {self.prog} --help)")


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_duration(text: str) -> float:
    seconds = _duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"expected a duration > 0 such as 2s, got {text!r}")
    return seconds


def _common(parser: argparse.ArgumentParser, top: bool) -> None:
    """Options every command takes, before or after its name (a command's own copy must not
    reset what was given before it, hence SUPPRESS there)."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument("-c", "--config", default=default(None), metavar="CONFIG",
                        help="config file (default: $GEOQ_CONFIG, else built-in defaults)")
    parser.add_argument("--redis-url", default=default(None), metavar="URL", help="Redis to use (replaces redis.url)")
    parser.add_argument("--json", action="store_true", default=default(False), help="print JSON for scripts")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="See and fix geoq queues.")
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    command = _Commands(sub)

    p = command("stats", commands.stats, "per queue: ready, scheduled, processing, dead; the live workers")
    p.add_argument("--watch", type=_positive_duration, metavar="SECONDS", help="refresh every SECONDS until Ctrl-C")
    p.add_argument("--history", action="store_true", help="per-minute jobs and wait times of each queue, then per type")
    p.add_argument("--since", type=_positive_duration, metavar="DURATION", help="with --history: the window (default 1h)")
    p.add_argument("--queue", help="with --history: only this queue")

    p = command("enqueue", commands.enqueue, "store one job and print its id")
    p.add_argument("type", metavar="TYPE")
    p.add_argument("--payload", metavar="JSON|@FILE", help="the payload as JSON, or @file holding it (@- = stdin)")
    p.add_argument("--queue", help="queue (default: the route's, else default)")
    p.add_argument("--delay", type=_duration, help="run no sooner than this, e.g. 30s")
    p.add_argument("--priority", choices=("normal", "high"), help="high: the head of the queue")
    p.add_argument("--id", help="the job's id (an id still live stores nothing)")
    p.add_argument("--max-retries", type=int, metavar="N")
    p.add_argument("--timeout", type=_positive_duration, metavar="DURATION")
    p.add_argument("--expires", type=_duration, metavar="DURATION", help="not started within this: dead, expired")
    p.add_argument("--unique-for", type=_duration, metavar="DURATION",
                   help="unique job: while one with its key is live, and this long after, store nothing")

    dead_parser = command("dead", None, "list, show, group, retry or purge dead jobs")
    _dead_commands(_Commands(dead_parser.add_subparsers(dest="dead_command", required=True, metavar="COMMAND",
                                                        parser_class=_Parser)))

    command("workers", commands.workers, "registered workers, their load and last heartbeat")

    p = command("job", lookup.job, "a job's state, attempts, errors and result")
    p.add_argument("id", metavar="ID")

    p = command("purge", commands.purge, "delete every waiting (ready and scheduled) job of a queue")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("--yes", action="store_true", help="yes, delete them")

    p = command("cancel", control.cancel, "cancel a queued, scheduled or running job (exit 1: finished or unknown)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--queue", help="the job's queue, for an id that does not name it")
    p = command("pause", control.pause, "every worker stops taking jobs from QUEUE (running jobs finish)")
    p.add_argument("queue", metavar="QUEUE")
    p = command("resume", control.resume, "workers take jobs from QUEUE again")
    p.add_argument("queue", metavar="QUEUE")

    p = command("dashboard", _dashboard, "serve the web dashboard (default 127.0.0.1:9181) until Ctrl-C")
    p.add_argument("--listen", metavar="HOST:PORT", help="address to serve on (default: dashboard.listen)")
    p.add_argument("--read-only", action="store_true", help="show no actions and refuse every POST")

    p = command("schedules", schedules.schedules, "the config's schedules: when each runs next and ran last")
    sub_schedules = p.add_subparsers(dest="schedules_command", metavar="COMMAND", parser_class=_Parser)
    run = _Commands(sub_schedules)("run", schedules.run, "enqueue one job of a schedule now")
    run.add_argument("name", metavar="NAME")
    return parser


def _dead_commands(add: "_Commands") -> None:
    p = add("list", dead.dead_list, "dead jobs, newest first")
    p.add_argument("--queue")
    p.add_argument("--type")
    p.add_argument("--limit", type=int, default=100, metavar="N", help="at most N (default 100; 0 = all)")

    p = add("show", dead.dead_show, "one dead job: reason, error, history, envelope")
    p.add_argument("id", metavar="ID")
    p.add_argument("--queue")

    p = add("retry", dead_groups.dead_retry, "back to the ready list with attempts reset")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="every dead job (of --queue, of --type)")
    p.add_argument("--group", metavar="FP", help="every job of one group (see dead groups)")
    p.add_argument("--queue")
    p.add_argument("--type")

    p = add("purge", dead_groups.dead_purge, "delete dead jobs")
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument("--all", action="store_true", help="every dead job (of --queue)")
    p.add_argument("--older-than", type=_duration, metavar="AGE", help="those that died more than AGE ago, e.g. 7d")
    p.add_argument("--group", metavar="FP", help="every job of one group (see dead groups)")
    p.add_argument("--queue")

    p = add("groups", dead_groups.dead_groups, "dead jobs grouped by error: count, first and last seen")
    p.add_argument("--queue")
    p.add_argument("--type", help="only groups of this job type")
    p.add_argument("--text", help="only groups whose type, error or message contains this (any case)")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N groups (default 50)")
    p.add_argument("--cursor", metavar="CURSOR", help="the next page, as the last one said")
    p.add_argument("--rebuild", action="store_true", help="first index dead jobs an older geoq buried")


def _dashboard(s: Session, args: argparse.Namespace) -> int:
    from geoq.dashboard.server import run  # imported for this command only: it brings gevent

    return run(s, args)


class _Commands:
    """Adds a command: its parser, with the common options, that runs `run`."""

    def __init__(self, under: "argparse._SubParsersAction[_Parser]") -> None:
        self.under = under

    def __call__(self, name: str, run: Run | None, help: str) -> argparse.ArgumentParser:
        p = self.under.add_parser(name, help=help, description=help)
        _common(p, top=False)
        p.set_defaults(run=run)
        return p


def main(argv: Sequence[str] | None = None) -> int:
    session: Session | None = None
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
        session = Session(resolve_config(args.config, args.redis_url, os.environ))
        run: Run = args.run
        return run(session, args)
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader (head, less) left: nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # noqa: BLE001 - a person gets one line, never a traceback
        return _fail(e)
    finally:
        if session is not None:
            session.close()


def _fail(error: Exception) -> int:
    if isinstance(error, redis.RedisError):  # one that escaped the broker's translation
        error = translate(error, "command")
    print(f"{PROG}: {render.one_line(str(error) or type(error).__name__)}", file=sys.stderr)
    return exit_code(error)


def exit_code(error: Exception) -> int:
    if isinstance(error, CommandError):
        return error.exit_code
    if isinstance(error, (ConfigError, RedisAuthError, InvalidJob, PayloadTooLarge)):
        return EXIT_USAGE
    if isinstance(error, RedisUnavailable):
        return EXIT_UNREACHABLE
    return EXIT_NOT_FOUND  # Redis refused (full, read-only) or a failure nobody planned for
