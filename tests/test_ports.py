"""`appliance.ports`: free loopback ports, distinct when asked for several."""

from __future__ import annotations

import socket

from appliance.ports import free_port, free_ports


def test_free_ports_are_distinct_and_bindable_on_loopback():
    ports = free_ports(4) + [free_port()]
    assert len(set(ports[:4])) == 4
    for port in ports:
        assert 0 < port < 65536
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))
