"""Free TCP ports on loopback, for the parts the embedded appliance starts itself (the Ray
head, Serve, a Triton server, the demo).

A port found free can be taken by another process before its user binds it; callers that
start a server on it see that as the server's own bind error. Here rather than in `cluster`
so that the core (`appliance.demo`) and the Ray side share one helper (the core may not import
`cluster`).
"""

from __future__ import annotations

import socket


def free_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 right now.

    Args:
        n: how many; all are held open together while they are chosen, so they differ.
    """
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """One TCP port free on 127.0.0.1 right now."""
    return free_ports(1)[0]
