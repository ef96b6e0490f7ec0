"""Hub-stall detection on gevent's own monitor thread.

gevent's monitor thread (``gevent.config.monitor_thread``) checks every
``max_blocking_time`` seconds whether any greenlet switch happened; if not, it
emits ``gevent.events.EventLoopBlocked`` from that thread. Our subscriber
only notes the stall there (with the blocked thread's stack, taken while it
is still blocked) and hands it to the hub with ``run_callback_threadsafe``:
the count and the log line are written by the hub once it runs again, so no
lock is shared with the monitor thread (after monkeypatching, the locks of
logging and prometheus_client are gevent locks, meant for one thread).

One stall gives one log line and one increment of
geoq_hub_blocked_seconds_total. The first report comes between one and two
thresholds after the stall began (the monitor looks back over one whole
period without a switch), so the stall is estimated as 1.5 thresholds plus
the time from that report to the moment the hub ran again.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
import warnings
from dataclasses import dataclass
from time import perf_counter
from types import FrameType
from typing import Any, Callable

import gevent
from gevent import events
from gevent.monkey import get_original

from geoq.logs import FIELDS
from geoq.metrics.metrics import Metrics

log = logging.getLogger(__name__)

_allocate_lock = get_original("_thread", "allocate_lock")  # a real lock: two OS threads use it
STACK_FRAMES = 12  # innermost frames put on the log line


@dataclass(slots=True)
class _Stall:
    greenlet: str
    stack: str
    first_seen: float


class HubWatch:
    """The EventLoopBlocked subscriber for one hub; `count(seconds)` is called in the hub."""

    def __init__(self, hub: Any, threshold: float, count: Callable[[float], None]) -> None:
        self.hub = hub
        self.threshold = threshold
        self.count = count
        self._lock = _allocate_lock()
        self._stall: _Stall | None = None
        self._hub_ran_at = 0.0  # when the hub last ran `_report`: it was free then

    def __call__(self, event: object) -> None:
        """Runs in the monitor thread: note the stall, wake the hub's side at its first report."""
        if not isinstance(event, events.EventLoopBlocked) or event.hub is not self.hub:
            return
        frame = sys._current_frames().get(self.hub.thread_ident)
        if frame is not None and _in_hub(frame):
            # The monitor's view of the switches can lag: just after a stall ends, it may report
            # the greenlet that blocked once more while the hub already runs its loop or callbacks
            # (our own report among them). gevent itself never counts the hub as blocking.
            return
        with self._lock:
            if self._stall is not None:
                return  # the same stall, already reported to the hub
            if perf_counter() - self._hub_ran_at < self.threshold / 2:
                # The same lag, caught after the hub has moved on: a new stall cannot be reported
                # this soon, since the monitor needs one whole period without a switch.
                return
            self._stall = _Stall(_name(event.greenlet), _stack_line(frame), perf_counter())
        self.hub.loop.run_callback_threadsafe(self._report)

    def _report(self) -> None:
        """Runs in the hub once it is free again: count the stall and log it, once."""
        with self._lock:
            stall, self._stall = self._stall, None
            self._hub_ran_at = perf_counter()
        if stall is None:
            return
        seconds = perf_counter() - stall.first_seen + 1.5 * self.threshold
        self.count(seconds)
        log.warning("hub blocked for about %.2fs by %s; no other greenlet ran meanwhile; stack: %s",
                    seconds, stall.greenlet, stall.stack,
                    extra={FIELDS: {"blocked": round(seconds, 3), "greenlet": stall.greenlet, "stack": stall.stack}})

    def close(self) -> None:
        """Stop listening (the monitor thread itself stays, as gevent owns it)."""
        if self in events.subscribers:
            events.subscribers.remove(self)


def install_hubwatch(metrics: Metrics, threshold: float = 0.1) -> HubWatch:
    """Detect greenlets that hold the hub longer than `threshold` seconds; call in the hub's thread.

    Turns on gevent's monitor thread for the current hub, silences gevent's own
    multi-line report, and counts into geoq_hub_blocked_seconds_total.
    """
    gevent.config.max_blocking_time = threshold
    gevent.config.monitor_thread = True
    gevent.config.print_blocking_reports = False
    hub = gevent.get_hub()
    watch = HubWatch(hub, threshold, metrics.blocked)
    events.subscribers.append(watch)
    with warnings.catch_warnings():
        # Memory monitoring wants psutil; it is not used here, so its warning is noise.
        warnings.filterwarnings("ignore", message=".*memory usage.*")
        hub.start_periodic_monitoring_thread()
    return watch


def _name(greenlet: object) -> str:
    try:
        return str(greenlet)
    except Exception:  # a greenlet's repr is user code (its function's repr); never let it break the report
        return object.__repr__(greenlet)


def _in_hub(frame: FrameType) -> bool:
    """Whether the hub greenlet runs (its loop or a callback), not some other greenlet's code.

    Each greenlet has its own stack, so the outermost frame tells whose it is: the hub's
    starts in gevent/hub.py's run.
    """
    outermost: FrameType = frame
    while outermost.f_back is not None:
        outermost = outermost.f_back
    code = outermost.f_code
    return code.co_name == "run" and code.co_filename.endswith(os.path.join("gevent", "hub.py"))


def _stack_line(frame: FrameType | None) -> str:
    """The blocked thread's innermost frames on one line, outermost first."""
    if frame is None:
        return "(no stack: the hub's thread is gone)"
    frames = traceback.extract_stack(frame)[-STACK_FRAMES:]
    parts = [f"{_short(f.filename)}:{f.lineno} {f.name}" for f in frames]
    innermost = frames[-1].line if frames else ""
    return " > ".join(parts) + (f" [{innermost}]" if innermost else "")


def _short(path: str) -> str:
    """The last two parts of a path: enough to find the module, short enough for one line."""
    head, tail = os.path.split(path)
    return os.path.join(os.path.basename(head), tail) if head else tail
