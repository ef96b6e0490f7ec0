"""The web dashboard: `geoq dashboard -c FILE`, or `wsgi_app(FILE)` mounted in any WSGI server.

Importing this package imports no gevent and connects nothing; `geoq dashboard` serves the app
with gevent's WSGI server (geoq.dashboard.server), after bin/geoq has monkeypatched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geoq.dashboard.app import Dashboard

__all__ = ["wsgi_app"]


def wsgi_app(config_path: str, read_only: bool = False) -> "Dashboard":
    """The dashboard for the config file at `config_path`, as a WSGI application (read-only when
    asked here or by dashboard.read_only). Raises geoq.ConfigError for a bad file."""
    from geoq.config import load_config
    from geoq.dashboard.app import Dashboard

    return Dashboard(load_config(config_path, producer=True), read_only=read_only)
