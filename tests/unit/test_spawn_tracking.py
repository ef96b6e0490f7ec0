"""The worker spawns job greenlets without gevent's spawn-tree tracking, unless the environment asks.

Run in a subprocess: gevent's config is process-wide.
"""

from __future__ import annotations

import pytest

from tests.support.program import run_program

PROGRAM = """
import gevent
from geoq.worker.main import skip_spawn_tracking
skip_spawn_tracking()
print(gevent.config.track_greenlet_tree, gevent.spawn(lambda: None).spawning_stack is not None)
"""


@pytest.mark.parametrize("env,tracked", [({}, False), ({"GEVENT_TRACK_GREENLET_TREE": "1"}, True)])
def test_spawn_tracking_is_off_unless_the_environment_turns_it_on(env, tracked):
    out = run_program(PROGRAM, env=env)
    assert out.split() == [str(tracked), str(tracked)], out
