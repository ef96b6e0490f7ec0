"""Fixtures for the dashboard tests: the app served in this process against this test's database."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from geoq.dashboard import wsgi_app
from tests.support.dashboard import Http, ServedApp
from tests.support.worker_process import write_config

ROUTES = {"t.job": {"handler": "tests.support.handlers:ok", "queue": "mail"}}


@pytest.fixture
def config_file(tmp_path: Path, redis_url: str) -> Callable[..., Path]:
    """config_file(**sections): a config on this test's database with a route to queue `mail`."""
    def make(**sections: Any) -> Path:
        return write_config(tmp_path / "dashboard.yaml", redis_url, ROUTES, **sections)
    return make


@pytest.fixture
def serve(config_file: Callable[..., Path]) -> Iterator[Callable[..., Http]]:
    """serve(read_only=False, auth=None, **sections): the app of wsgi_app(config) on a free port,
    and a client for it (with basic auth `auth`, when given)."""
    served: list[ServedApp] = []

    def start(read_only: bool = False, auth: tuple[str, str] | None = None, **sections: Any) -> Http:
        app = ServedApp(wsgi_app(str(config_file(**sections)), read_only=read_only))
        served.append(app)
        return Http(app.url, auth)

    yield start
    for app in served:
        app.close()
