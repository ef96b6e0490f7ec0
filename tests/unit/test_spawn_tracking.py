"""The worker spawns job greenlets without gevent's spawn-tree tracking, unless the environment asks.

Run in a subprocess: gevent's config is process-wide.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.worker_process import ROOT

PROGRAM = """
import gevent
from geoq.worker.main import skip_spawn_tracking
skip_spawn_tracking()
print(gevent.config.track_greenlet_tree, gevent.spawn(lambda: None).spawning_stack is not None)
"""


@pytest.mark.parametrize("env,tracked", [({}, False), ({"GEVENT_TRACK_GREENLET_TREE": "1"}, True)])
def test_spawn_tracking_is_off_unless_the_environment_turns_it_on(env, tracked):
    done = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(tracked), str(tracked)], done.stdout
