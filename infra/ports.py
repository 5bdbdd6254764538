"""Free loopback ports."""

from __future__ import annotations

import socket

__all__ = ["free_port", "port_taken"]


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the caller must still expect a race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_taken(host: str, port: int) -> bool:
    """Whether a server could not listen on ``host:port`` now (someone else does).

    Bound as servers bind (``SO_REUSEADDR``), so a port left in TIME_WAIT by a server
    that just stopped counts as free, as it is for the next server.
    """
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False
