"""Network helpers shared by the tests and ``bench/``: loopback only, nothing that sleeps."""

from __future__ import annotations

import socket

#: Receive buffer of a stalled client's socket: small, so the server's send buffers fill soon.
STALLED_RCVBUF = 4096


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (for servers that bind it themselves)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def stalled_socket() -> socket.socket:
    """A non-blocking, unconnected TCP socket with a tiny receive buffer, for a client that
    will stop reading (set before connecting, so the TCP window is small from the start)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF)
    sock.setblocking(False)
    return sock
