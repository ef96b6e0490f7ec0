"""Every config file geoq ships starts a worker: its routes import and accept their options.

example.yaml also routes to a user's own module (myapp.jobs), which is left out here.
"""

import dataclasses
from pathlib import Path

import pytest

from geoq.config import load_config
from geoq.routing import build_router

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "config").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_a_shipped_config_builds_every_route(path):
    config = load_config(path, env={})
    ours = {t: r for t, r in config.routes.items() if r.handler.startswith("geoq.")}
    assert ours, "a shipped config routes to at least one built-in handler"
    config = dataclasses.replace(config, routes=ours)
    router = build_router(config)
    assert sorted(router.types) == sorted(config.routes)
