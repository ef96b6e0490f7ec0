"""The stall watch tells the hub running from a greenlet holding it.

gevent's monitor can report the greenlet of a stall that has just ended once more, while the
hub already runs its loop or a callback (the stall's own report among them); that second
report must not count as a second stall. Run in a subprocess: only a worker's entry point may
monkeypatch.
"""

from __future__ import annotations

import textwrap

from tests.support.program import run_program

PROGRAM = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import sys, time
    import gevent
    from gevent.monkey import get_original
    from geoq.metrics.hubwatch import _in_hub

    start_thread = get_original("_thread", "start_new_thread")
    hub = gevent.get_hub()
    seen = []

    def probe(want):  # an OS thread, like gevent's monitor: sample until the frame shows `want`
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _in_hub(sys._current_frames()[hub.thread_ident]) is want:
                seen.append(want)
                return
        seen.append(None)

    def hold_until(count):  # keep this greenlet (or the hub, as a callback) busy until probed
        while len(seen) < count:
            pass

    start_thread(probe, (True,))
    while len(seen) < 1:           # idle: the hub waits in its loop between these sleeps
        gevent.sleep(0.05)
    start_thread(probe, (True,))
    hub.loop.run_callback(hold_until, 2)
    gevent.sleep(0)                # the hub runs that callback: still the hub, not a greenlet
    start_thread(probe, (False,))
    hold_until(3)                  # busy: the main greenlet holds the hub without yielding
    start_thread(probe, (False,))
    gevent.spawn(hold_until, 4).join()   # and so does a spawned one
    print(seen)
""")


def test_the_hub_running_its_loop_or_a_callback_is_told_from_a_greenlet_holding_it():
    out = run_program(PROGRAM)
    assert out.strip() == "[True, True, False, False]", out
