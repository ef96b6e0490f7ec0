"""The heartbeat thread's hub runs without gevent's blocking monitor.

That hub never switches, so a monitor on it would report a stall ten times a second and format
every greenlet in the process each time, taking CPU from the worker's hub. The control case
shows the monitor does report such a hub. Run in a subprocess: only a worker's entry point may
monkeypatch.
"""

from __future__ import annotations

import textwrap

import pytest

from tests.support.program import run_program

PROGRAM = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import sys
    import gevent
    from gevent import events
    from gevent.monkey import get_original
    from geoq.worker.heartbeat import _unwatched_hub

    gevent.config.max_blocking_time = 0.05
    gevent.config.monitor_thread = True
    gevent.config.print_blocking_reports = False
    stalls, hubs = [], []
    events.subscribers.append(lambda e: isinstance(e, events.EventLoopBlocked) and stalls.append(e.hub))

    def thread(unwatch):  # like the heartbeat: a native thread whose Redis I/O runs its hub, then sleeps unpatched
        if unwatch:
            _unwatched_hub()
        gevent.sleep(0)
        get_original("time", "sleep")(0.6)
        hubs.append(gevent.get_hub())

    gevent.sleep(0)  # the main hub first, as in a worker (its loop's import must not race the thread's)
    get_original("_thread", "start_new_thread")(thread, (sys.argv[1] == "unwatched",))
    while not hubs:
        gevent.sleep(0.05)
    print(sum(1 for hub in stalls if hub is hubs[0]))
""")


@pytest.mark.parametrize("mode,reported", [("unwatched", False), ("watched", True)])
def test_a_native_threads_hub_is_reported_blocked_only_when_left_watched(mode, reported):
    out = run_program(PROGRAM, mode)
    assert (int(out) > 0) is reported, out
