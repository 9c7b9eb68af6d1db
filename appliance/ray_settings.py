"""The ``[ray]`` table of the configuration: what of Ray is reachable, and how.

The embedded appliance's Ray keeps to loopback (`cluster.network`); these settings open only
what an operator asks for::

    [ray]
    client_server_port = 10001   # Ray client server of the local head (default: none)
    dashboard = true             # the Ray dashboard of the local head, on loopback (default off)
    # Joining a cluster (ray_address): how this node is reached, and TLS between nodes.
    node_ip_address = "10.0.0.5"
    tls_ca = "/etc/appliance/ray-ca.pem"
    tls_cert = "/etc/appliance/ray-node.pem"
    tls_key = "/etc/appliance/ray-node.key"
"""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

from appliance.errors import InvalidInput

_TLS = ("tls_ca", "tls_cert", "tls_key")
_KEYS = ("client_server_port", "dashboard", "node_ip_address", *_TLS)


@dataclasses.dataclass(frozen=True)
class RaySettings:
    """See the module docstring; every default keeps Ray closed."""

    client_server_port: int | None = None
    dashboard: bool = False
    node_ip_address: str | None = None
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    def tls_env(self) -> dict[str, str]:
        """Ray's TLS environment (empty without TLS): every Ray process of this node needs it."""
        if not self.tls:
            return {}
        return {"RAY_USE_TLS": "1", "RAY_TLS_SERVER_CERT": str(self.tls_cert),
                "RAY_TLS_SERVER_KEY": str(self.tls_key), "RAY_TLS_CA_CERT": str(self.tls_ca)}


def parse_ray_settings(doc: object, where: str) -> RaySettings:
    """Validate a ``[ray]`` table (None: the defaults); InvalidInput names what is wrong."""
    if doc is None:
        return RaySettings()
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where} must be a table, got {doc!r}")
    unknown = sorted(set(doc) - set(_KEYS))
    if unknown:
        raise InvalidInput(f"{where} has unknown key(s) {unknown}; known keys: {list(_KEYS)}")
    port = doc.get("client_server_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int)
                             or not 1 <= port <= 65535):
        raise InvalidInput(f"{where} client_server_port must be a port number, got {port!r}")
    dashboard = doc.get("dashboard", False)
    if not isinstance(dashboard, bool):
        raise InvalidInput(f"{where} dashboard must be true or false, got {dashboard!r}")
    node_ip = doc.get("node_ip_address")
    if node_ip is not None:
        try:
            ipaddress.ip_address(node_ip)
        except (TypeError, ValueError):
            raise InvalidInput(
                f"{where} node_ip_address must be an IP address, got {node_ip!r}") from None
    given = [k for k in _TLS if doc.get(k) is not None]
    if given and len(given) != len(_TLS):
        raise InvalidInput(f"{where} TLS needs all of {list(_TLS)}, got only {given}")
    tls = {}
    for key in given:
        if not isinstance(doc[key], str) or not Path(doc[key]).is_file():
            raise InvalidInput(f"{where} {key} must name a readable file, got {doc[key]!r}")
        tls[key] = Path(doc[key])
    return RaySettings(client_server_port=port, dashboard=dashboard, node_ip_address=node_ip,
                       **tls)
