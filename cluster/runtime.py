"""Start or join Ray with token authentication.

Ray 2.59+ enables token auth for local clusters and would write ``~/.ray/auth_token``. The
appliance instead keeps its own token under ``$APPLIANCE_HOME`` (mode 0600) and hands it to Ray
through ``RAY_AUTH_TOKEN``, so every process of one appliance shares one secret and nothing is
written outside the appliance's home.

Embedded shape: work that ends with the process (training, the demo) runs on an in-process
local Ray. Work that must outlive the command (a deployment) needs a Ray that outlives it too,
so `ensure_ray(persistent=True)` starts a detached local head once (``ray start --head``) and
records its address under the home; later commands join it, and `stop_head` (``appliance
down``) stops it: Serve first, gracefully, then the head's processes (see `cluster.head`).

Either way the embedded Ray listens on loopback only, with no client server or dashboard
unless ``[ray]`` asks for them (`cluster.network`), and token authentication is on whatever
the environment says. The appliance never joins a Ray it did not choose: the configured
cluster, its own recorded head, or a new local one; never the one Ray's own
``ray_current_cluster`` file names.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import ray

from appliance.config import Config
from appliance.errors import CheckFailed, ConflictError
from appliance.ports import free_port, free_ports
from cluster import head, network


def auth_token(cfg: Config) -> str:
    """Return the appliance's Ray token, creating it (0600) on first use."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"]
    path = Path(cfg.home) / "ray_auth_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip()


def _address_file(cfg: Config) -> Path:
    return head.address_file(cfg.home)


def _reachable(address: str) -> bool:
    return head.reachable(address)


def _auth_env(cfg: Config) -> dict[str, str]:
    # Forced, not defaulted: RAY_AUTH_MODE=disabled in the environment must not open the head.
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": auth_token(cfg)}


def start_head(cfg: Config, num_cpus: int | None = None) -> str:
    """Start a detached local Ray head (loopback only) and return its address."""
    # Chosen together, so the three differ (`free_ports` holds them all while it picks).
    gcs_port, api_port, own_client_port = free_ports(3)
    address = f"127.0.0.1:{gcs_port}"
    # `ray start --head` always starts a Ray client server (port 0 is refused): give it a
    # port of its own, and stop it below unless [ray] asks for one.
    client_port = cfg.ray.client_server_port or own_client_port
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head",
           f"--port={address.rpartition(':')[2]}", f"--node-ip-address={network.LOOPBACK}",
           f"--include-dashboard={str(cfg.ray.dashboard).lower()}",
           f"--dashboard-host={network.LOOPBACK}", f"--dashboard-port={api_port}",
           f"--ray-client-server-port={client_port}",
           "--disable-usage-stats"]
    cpus = num_cpus or cfg.ray_num_cpus
    if cpus:
        cmd.append(f"--num-cpus={cpus}")
    # The head's processes learn where their API server is (see `api_server_env`).
    env = {**os.environ, **network.NODE_ENV, **_auth_env(cfg),
           _API_SERVER_ENV: f"http://{network.LOOPBACK}:{api_port}"}
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CheckFailed(f"could not start a local Ray head: {tail[0]}")
    _address_file(cfg).write_text(address)
    if not cfg.ray.client_server_port:
        servers = [p for p in head.head_processes(address) if _CLIENT_SERVER in p.argv]
        head.terminate(servers, grace_s=5.0)
    return address


# Where Ray's state API client looks for the API server before anything else.
_API_SERVER_ENV = "RAY_API_SERVER_ADDRESS"
# How the Ray client server shows in its process's argv (``python -m ray.util.client.server``).
_CLIENT_SERVER = "ray.util.client.server"


def ensure_ray(cfg: Config, num_cpus: int | None = None, *, persistent: bool = False) -> None:
    """Connect to Ray once per process.

    Args:
        cfg: the appliance configuration; ``cfg.ray_address`` names a cluster to join.
        num_cpus: CPUs for a locally started Ray (default ``cfg.ray_num_cpus``, else all).
        persistent: when no cluster is configured, join (or start) the detached local head
            instead of an in-process Ray that ends with this process (default False; an
            already running local head is joined either way).
    """
    if ray.is_initialized():
        return
    os.environ.update(_auth_env(cfg))
    quiet = {"logging_level": "ERROR", "log_to_driver": False}
    if cfg.ray_address:
        _join_cluster(cfg, **quiet)
        return
    network.keep_local()
    local = {"runtime_env": network.local_runtime_env(cfg.serve_host, cfg.serve_grpc_port), **quiet}
    recorded = _address_file(cfg)
    address = None
    if recorded.is_file() and _reachable(recorded.read_text().strip()):
        address = recorded.read_text().strip()
    elif persistent:
        address = start_head(cfg, num_cpus)
    if address:
        ray.init(address=address, **local)
        return
    init_local(num_cpus or cfg.ray_num_cpus, dashboard=cfg.ray.dashboard, **local)


def init_local(num_cpus: int | None, *, dashboard: bool = False, **kwargs) -> None:
    """Start a new Ray of this process's own (``ray.init(address="local")``) on loopback.

    "local", because without it ray.init joins whatever cluster /tmp/ray/ray_current_cluster
    names, and hangs or fails if that cluster has died. Its processes are told where its own
    API server listens (`api_server_env`).

    Args:
        num_cpus: CPUs of the new Ray (None: all).
        dashboard: the full dashboard (and Ray's state API) on loopback (default False).
        kwargs: passed on to `ray.init` (runtime_env, logging, num_gpus...).
    """
    port = free_port()
    with api_server_env(port):
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                 dashboard_host=network.LOOPBACK, dashboard_port=port, **kwargs)


@contextlib.contextmanager
def api_server_env(port: int) -> Iterator[None]:
    """Tell the Ray processes started inside the block where their API server listens.

    Ray's state API (which Ray Train's placement-group cleaner polls for its controller, in an
    actor of its own) finds the API server through ``RAY_API_SERVER_ADDRESS`` or, failing that,
    through whatever cluster /tmp/ray/ray_current_cluster names: a head long gone after any
    ``ray start``, or another user's Ray. Asking that one blocks for 10-40 s, and the cleaner's
    stop waits 12 s for it at the end of every fit. The GCS and the raylet inherit this
    process's environment when they start, and every worker the raylet's; so the variable is
    set while Ray starts, and this process's own environment is restored afterwards. Without
    the dashboard that server has no state module: it answers at once that it has none, and
    the cleaner tries again on its next poll instead of stalling.
    """
    previous = os.environ.get(_API_SERVER_ENV)
    os.environ[_API_SERVER_ENV] = f"http://{network.LOOPBACK}:{port}"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(_API_SERVER_ENV, None)
        else:
            os.environ[_API_SERVER_ENV] = previous


def _join_cluster(cfg: Config, **kwargs) -> None:
    """Join the configured cluster, reached and secured as ``[ray]`` says."""
    os.environ.update(cfg.ray.tls_env())
    if cfg.ray.node_ip_address:
        kwargs["_node_ip_address"] = cfg.ray.node_ip_address
    ray.init(address=cfg.ray_address, **kwargs)


def _gcs_port(address: str) -> int:
    return int(address.rpartition(":")[2])


def _join_head(cfg: Config, address: str) -> bool:
    """Connect this process to the local head at `address`; True when this call connected.

    Raises:
        ConflictError: this process is already connected to another Ray.
    """
    if ray.is_initialized():
        connected = ray.get_runtime_context().gcs_address
        if _gcs_port(connected) != _gcs_port(address):
            raise ConflictError(
                f"this process is connected to the Ray at {connected}, not to the local head "
                f"at {address}; call this from a process of its own"
            )
        return False
    os.environ.update(_auth_env(cfg))
    network.keep_local()
    ray.init(address=address, logging_level="ERROR", log_to_driver=False,
             runtime_env=network.local_runtime_env(cfg.serve_host, cfg.serve_grpc_port))
    return True


def serve_applications(cfg: Config, address: str) -> dict[str, str]:
    """The Serve applications on the local head at `address`, by name, with their status.

    Joins the head for the call and disconnects again, unless this process was connected to
    it already. An empty answer: Serve is not running there.

    Raises:
        ConflictError: this process is connected to another Ray.
        CheckFailed: the head could not be joined or Serve did not answer.
    """
    from ray import serve  # Deferred: only a running head has applications to list.

    joined = False
    try:
        joined = _join_head(cfg, address)
        apps = serve.status().applications
    except ConflictError:
        raise
    except Exception as exc:  # Ray's own errors, of many kinds, all mean "no answer" here
        raise CheckFailed(f"could not list the Serve applications on the local Ray head at "
                          f"{address}: {type(exc).__name__}: {exc}") from exc
    finally:
        if joined:
            ray.shutdown()
    # ApplicationStatus is a str Enum, whose str() is "ApplicationStatus.RUNNING".
    return {name: getattr(app.status, "value", str(app.status)) for name, app in apps.items()}


@dataclasses.dataclass(frozen=True)
class HeadStopped:
    """What `stop_head` did.

    Args:
        address: the head's recorded address.
        serve_shutdown: whether Serve was shut down gracefully before any signal was sent.
        serve_error: why it was not, when the head answered but the shutdown failed.
        pids: the head's processes, each sent SIGTERM.
        killed: those still running after the grace period, sent SIGKILL.
    """

    address: str
    serve_shutdown: bool
    serve_error: str | None
    pids: list[int]
    killed: list[int]


def _shutdown_serve(cfg: Config, address: str) -> None:
    from ray import serve  # Deferred: only a running head has Serve to shut down.

    _join_head(cfg, address)
    try:
        # Replicas get their graceful shutdown (they flush their prediction logs as they go);
        # bounded by Serve's own 30 s controller timeout.
        serve.shutdown()
    finally:
        # Even when this process was connected before: its Ray is about to be stopped.
        ray.shutdown()


def stop_head(cfg: Config, *, grace_s: float = 15.0) -> HeadStopped | None:
    """Stop the local head `start_head` started, and everything running on it.

    Serve is shut down first when the head answers; then each of the head's processes (see
    `cluster.head.head_processes`) gets SIGTERM, and SIGKILL if it still runs after
    `grace_s`; then the recorded address is removed. Returns None when no head is recorded.

    Args:
        cfg: the appliance configuration; ``cfg.ray_address`` must be unset.
        grace_s: seconds between SIGTERM and SIGKILL (default 15).

    Raises:
        ConflictError: the appliance is configured to use another cluster, or this process
            is connected to another Ray.
        CheckFailed: some of the head's processes survived SIGKILL.
    """
    head.check_local(cfg.ray_address)
    address = head.recorded_address(cfg.home)
    if address is None:
        return None
    graceful, error = False, None
    if head.reachable(address):
        try:
            _shutdown_serve(cfg, address)
            graceful = True
        except ConflictError:
            raise
        except Exception as exc:  # whatever failed there, the processes are stopped all the same
            error = f"{type(exc).__name__}: {exc}"
    done = head.terminate(head.head_processes(address), grace_s=grace_s)
    if done.left:
        raise CheckFailed(
            f"processes {done.left} of the local Ray head at {address} survived SIGKILL; "
            f"the address stays recorded in {head.address_file(cfg.home)}"
        )
    head.address_file(cfg.home).unlink(missing_ok=True)
    return HeadStopped(address=address, serve_shutdown=graceful, serve_error=error,
                       pids=done.pids, killed=done.killed)
