"""Free TCP ports on the loopback interface."""

from __future__ import annotations

import socket

# Never hand out the port of a system-wide redis, even by accident.
_RESERVED = frozenset({6379})


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on *host* that nothing listens on right now.

    The port is only free at the moment of the call: a caller that binds it
    later must be ready to retry if another process took it meanwhile.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _RESERVED:
            return port
