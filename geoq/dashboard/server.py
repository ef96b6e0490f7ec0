"""`geoq dashboard`: serve the dashboard with gevent's WSGI server, in this one process, until
SIGINT or SIGTERM.

gevent is imported here, when the command runs, never by `import geoq.dashboard`; bin/geoq
has monkeypatched first (only for this command), so each request's Redis reads yield to the
others instead of blocking the process.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys

from geoq import logs
from geoq.admin.errors import UsageError
from geoq.admin.session import Session
from geoq.config.schema import Invalid, dashboard_listen, split_listen
from geoq.dashboard.app import Dashboard
from geoq.exits import EXIT_OK

log = logging.getLogger(__name__)


def run(s: Session, args: argparse.Namespace) -> int:
    """Serve until a signal; exit 0. A listen address that cannot be had is a usage error (2)."""
    host, port = _listen(args.listen or s.config.dashboard.listen)
    logs.configure(s.config.logging)
    app = Dashboard(s.config, read_only=args.read_only)
    from gevent import monkey
    if not monkey.is_module_patched("socket"):
        log.warning("gevent has not monkeypatched this process (run bin/geoq): requests will wait on each other")
    serve(app, host, port)
    return EXIT_OK


def _listen(text: str) -> tuple[str, int]:
    try:
        return split_listen(dashboard_listen(text))
    except Invalid as e:
        raise UsageError(f"--listen: expected {e.expected}, got {text!r}") from None


def serve(app: Dashboard, host: str, port: int) -> None:
    import gevent
    from gevent.event import Event
    from gevent.pywsgi import WSGIServer

    stop = Event()
    for signum in (signal.SIGINT, signal.SIGTERM):   # before the URL is out: a signal right after it counts
        gevent.signal_handler(signum, stop.set)
    server = WSGIServer((host, port), app, log=None, error_log=log)
    try:
        server.start()
    except OSError as e:
        raise UsageError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    _announce(app, host, server.server_port)
    stop.wait()
    server.stop(timeout=2)
    app.session.close()


def _announce(app: Dashboard, host: str, port: int) -> None:
    shown = f"[{host}]" if ":" in host else host
    mode = " (read-only)" if app.read_only else ""
    print(f"geoq dashboard: http://{shown}:{port}/{mode}  (Ctrl-C stops it)", flush=True)
    if not app.config.dashboard.auth and not _loopback(host):
        print(f"geoq dashboard: warning: {host} is reachable from other machines and no password is set "
              "(dashboard.username, dashboard.password): anyone who reaches it can retry and delete jobs",
              file=sys.stderr, flush=True)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
