"""Where the embedded appliance's Ray listens: on loopback, and nowhere else.

Three things stand between ``ray start --node-ip-address=127.0.0.1`` and a Ray that keeps to
loopback on Linux (Ray 2.60, checked by listing the head's sockets in
tests/cluster/test_network.py):

- Ray turns a loopback node address into the machine's LAN address, so that other nodes could
  reach it, unless clusters are disabled: its ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` switch,
  read when Ray is imported, does that on Linux too. With it off, the GCS, the raylet, the
  agents and the workers all bind 127.0.0.1.
- ``ray start --head`` also starts a Ray client server (port 10001) unless told port 0.
- Serve's gRPC proxy and each Serve replica's inter-deployment server bind ``[::]`` whatever
  the node address is. `loopback_grpc`, a worker setup hook that every worker of the
  appliance's jobs runs when it starts, makes the process's gRPC servers bind loopback, but
  for the KServe v2 gRPC endpoint: that one binds ``serve_host``, as the HTTP endpoint does
  (loopback by default; an operator who serves other machines sets it).

A node of a real cluster must be reachable from the other nodes, so none of this applies when
the configuration names a cluster (``ray_address``): its bind address and TLS are
configuration (`appliance.ray_settings`).
"""

from __future__ import annotations

import functools
import os
import re

# Ray reads it when first imported; child processes (workers, `ray start`) inherit it.
NODE_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
SETUP_HOOK = "cluster.network.loopback_grpc"
# The gRPC endpoint's own ``host:port``, for the hook in the workers.
PUBLIC_GRPC_ENV = "APPLIANCE_PUBLIC_GRPC"
LOOPBACK = "127.0.0.1"
_ANY_HOST = re.compile(r"^(?:\[::\]|0\.0\.0\.0|\*|)(:\d+)$")


def keep_local() -> None:
    """Make this process's Ray, and every process it starts, keep to loopback.

    Call before `ray.init` of an embedded appliance: Ray may have been imported already, so its
    constant is set as well as the environment.
    """
    os.environ.update(NODE_ENV)
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


def local_runtime_env(serve_host: str = LOOPBACK, grpc_port: int = 0) -> dict:
    """The job runtime environment of an embedded appliance's drivers (see `loopback_grpc`).

    Args:
        serve_host: the interface the serving endpoints bind (``cfg.serve_host``).
        grpc_port: the KServe v2 gRPC endpoint's port (``cfg.serve_grpc_port``; 0: none).
    """
    env: dict = {"worker_process_setup_hook": SETUP_HOOK}
    if grpc_port:
        host = f"[{serve_host}]" if ":" in serve_host else serve_host or "0.0.0.0"
        env["env_vars"] = {PUBLIC_GRPC_ENV: f"{host}:{grpc_port}"}
    return env


def loopback_address(address: str, public: str | None = None) -> str:
    """Where a gRPC server asked to listen at `address` listens: an any-interface host
    (``[::]``, ``0.0.0.0``, none) becomes loopback, unless the port is that of `public`
    (``host:port``, the gRPC endpoint's), which takes that host."""
    match = _ANY_HOST.match(address)
    if not match:
        return address
    if public and public.rpartition(":")[2] == match.group(1)[1:]:
        return public
    return f"{LOOPBACK}{match.group(1)}"


def loopback_grpc() -> None:
    """Worker setup hook: every gRPC server this process starts binds loopback.

    Serve's gRPC proxy and its replicas' inter-deployment servers ask for ``[::]:port``; the
    same port on 127.0.0.1 serves the local clients they have, and the gRPC endpoint's port
    its ``serve_host``. Idempotent.
    """
    import grpc._server
    import grpc.aio._server

    for cls in (grpc.aio._server.Server, grpc._server._Server):
        for name in ("add_insecure_port", "add_secure_port"):
            method = getattr(cls, name)
            if not getattr(method, "_appliance_loopback", False):
                setattr(cls, name, _on_loopback(method))


def _on_loopback(method):
    @functools.wraps(method)
    def bind(self, address: str, *args, **kwargs):
        public = os.environ.get(PUBLIC_GRPC_ENV)
        return method(self, loopback_address(address, public), *args, **kwargs)

    bind._appliance_loopback = True
    return bind
