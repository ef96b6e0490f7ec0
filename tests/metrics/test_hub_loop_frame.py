"""The stall watch tells a hub back in its own loop from a greenlet holding it.

gevent's monitor can report the greenlet of a stall that has just ended once more, while the
hub already waits in its loop; that second report must not count as a second stall. Run in a
subprocess: only a worker's entry point may monkeypatch.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.support.worker_process import ROOT

PROGRAM = textwrap.dedent("""
    from gevent import monkey; monkey.patch_all()
    import sys, time
    import gevent
    from gevent.monkey import get_original
    from geoq.metrics.hubwatch import _in_hub_loop

    start_thread = get_original("_thread", "start_new_thread")
    hub_thread = gevent.get_hub().thread_ident
    seen = []

    def probe(want):  # an OS thread, like gevent's monitor: sample until the frame shows `want`
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _in_hub_loop(sys._current_frames()[hub_thread]) is want:
                seen.append(want)
                return
        seen.append(None)

    start_thread(probe, (True,))
    while len(seen) < 1:           # idle: the hub waits in its loop between these sleeps
        gevent.sleep(0.05)
    start_thread(probe, (False,))
    while len(seen) < 2:           # busy: this greenlet holds the hub without yielding
        pass
    print(seen)
""")


def test_the_hub_waiting_in_its_loop_is_told_from_a_greenlet_holding_it():
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[True, False]", done.stdout + done.stderr
