"""A failed run's traceback as geoq keeps it: formatted, without local variables, trimmed, bounded.

The text is what `traceback.format_exception` prints (chained causes included),
with three changes:

- Trimmed: the frames above the handler call belong to the worker
  (`geoq.worker.*`), the same for every job, so they are dropped. The handler's
  frames and everything below them stay, so a job cut short by its timeout shows
  where the handler was when the `gevent.Timeout` reached it.
- Frame-capped: at most MAX_FRAMES innermost frames of the raised exception
  (and of each chained one). Formatting a frame costs about 12 us on CPython 3.11
  (it reads the source line and places the carets): a typical 2-frame failure
  costs 31 us, but an 800-frame recursion held the hub for 10 ms uncapped and
  0.6 ms capped. A marker line says how many outer frames of the raised
  exception were left out (a chained one's are cut without one).
- Bounded: at most LIMIT bytes of UTF-8. Longer text keeps its first line, a
  marker saying how many entries were cut, and the innermost entries that fit,
  always with the exception line(s) at the end. Any one entry longer than a
  quarter of the bound (an exception message holding a whole HTTP body, say) is
  cut at its end first.

No local variables are ever formatted. An exception's message is kept as the
handler wrote it, as the last error always has been: a handler that puts a
secret into a message puts it here too.

Reading source lines through `linecache` is the only I/O; the bounding is pure.
"""

from __future__ import annotations

import traceback as _traceback
from types import TracebackType
from typing import Sequence

LIMIT = 8192          # bytes of UTF-8 kept per traceback
MAX_FRAMES = 50       # innermost frames formatted per exception
WORKER_MODULES = ("geoq.worker.",)
_HEADER = "Traceback (most recent call last):\n"
_ROOM = 100           # bytes reserved for a marker line


def format_failure(error: BaseException, skip: Sequence[str] = WORKER_MODULES, limit: int = LIMIT) -> str:
    """The kept traceback text of `error` (no trailing newline): see the module docstring.

    Leading frames whose module name starts with one of `skip` are dropped.
    """
    tb = _after(error.__traceback__, tuple(skip))
    outer = max(0, _depth(tb) - MAX_FRAMES)
    for _ in range(outer):
        assert tb is not None
        tb = tb.tb_next
    te = _traceback.TracebackException(type(error), error, tb, limit=-MAX_FRAMES, compact=True)
    chunks = list(te.format())
    if outer:
        _mark_outer_frames(chunks, outer)
    return bound(chunks, limit).rstrip("\n")


def bound(chunks: Sequence[str], limit: int = LIMIT) -> str:
    """The chunks joined, in at most `limit` bytes of UTF-8: the first chunk, a marker, and the
    longest run of last chunks that fits. Each chunk is first cut to a quarter of `limit`."""
    cut = [_cut(c, limit // 4) for c in chunks]
    sizes = [len(c.encode()) for c in cut]
    if sum(sizes) <= limit:
        return "".join(cut)
    budget, kept = limit - sizes[0] - _ROOM, 0
    while kept < len(cut) - 1 and sizes[-1 - kept] <= budget:
        budget -= sizes[-1 - kept]
        kept += 1
    dropped = len(cut) - 1 - kept
    marker = f"  [... {dropped} entries cut: a kept traceback is at most {limit} bytes]\n"
    return cut[0] + marker + "".join(cut[len(cut) - kept:])


def _after(tb: TracebackType | None, skip: tuple[str, ...]) -> TracebackType | None:
    """`tb` without its leading frames from the modules in `skip`."""
    while tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).startswith(skip):
        tb = tb.tb_next
    return tb


def _depth(tb: TracebackType | None) -> int:
    n = 0
    while tb is not None:
        n, tb = n + 1, tb.tb_next
    return n


def _mark_outer_frames(chunks: list[str], outer: int) -> None:
    """Put a marker after the raised exception's own header (the last one: chained ones come first)."""
    at = len(chunks) - 1 - chunks[::-1].index(_HEADER) if _HEADER in chunks else 0  # 0: an exception group
    chunks.insert(at + 1, f"  [... {outer} outer frames cut: a kept traceback holds at most {MAX_FRAMES}]\n")


def _cut(text: str, most: int) -> str:
    """`text` in at most `most` bytes of UTF-8, cut at its end with a note of how much went."""
    raw = text.encode()
    if len(raw) <= most:
        return text
    head = raw[:most - _ROOM].decode("utf-8", "ignore")
    return f"{head} [... {len(raw) - len(head.encode())} bytes cut]\n"
