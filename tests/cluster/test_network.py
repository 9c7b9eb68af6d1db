"""A Ray no one else can reach: the embedded head, Serve's proxies and replicas listen on
loopback only; token auth is forced; a stale or foreign ``ray_current_cluster`` is never
joined. Real `ray start` heads and real Serve, driven by subprocesses as the CLI runs them;
every head process found is killed by pid afterwards, whatever happened.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest

from appliance.ports import free_port
from cluster import head, network

# As `appliance deploy` does: join (or start) the local head, start Serve with HTTP and gRPC,
# and run an application, so that a proxy and a replica listen too.
_DEPLOY = textwrap.dedent("""
    import sys

    from cluster import runtime  # before Ray: it sets the auth mode
    from appliance.config import load_config
    from cluster.serve._app import _start_serve
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Probe:
        def __call__(self, request):
            return "ok"

    cfg = load_config()
    runtime.ensure_ray(cfg, persistent=True)
    _start_serve(cfg)
    serve.run(Probe.bind(), name="probe", route_prefix="/probe")
    print(runtime.head.recorded_address(cfg.home))
""")

_WHICH_RAY = textwrap.dedent("""
    from cluster import runtime  # before Ray: it sets the auth mode
    from appliance.config import load_config
    import ray

    runtime.ensure_ray(load_config(), num_cpus=1)
    print(ray.get_runtime_context().gcs_address)
    ray.shutdown()
""")


@pytest.fixture
def env(tmp_path):
    """An appliance home of its own (HOME too), ports of its own, and Ray's temporary folder of
    its own (short: Ray's socket paths must fit in 107 bytes)."""
    ray_tmp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))
    home = tmp_path / "home"
    home.mkdir()
    values = {
        "HOME": str(home), "APPLIANCE_HOME": str(tmp_path / "appliance"),
        "APPLIANCE_SERVE_PORT": str(free_port()),
        "APPLIANCE_SERVE_GRPC_PORT": str(free_port()), "RAY_TMPDIR": str(ray_tmp),
        "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
    }
    run_env = {k: v for k, v in os.environ.items()
               if not k.startswith(("RAY_ADDRESS", "RAY_AUTH", "APPLIANCE_"))}
    run_env.update(values)
    yield run_env
    # Whatever a test left running on a head of this home: stopped by pid.
    address = head.recorded_address(Path(values["APPLIANCE_HOME"]))
    if address:
        head.terminate(head.head_processes(address), grace_s=5)
    subprocess.run(["rm", "-rf", str(ray_tmp)], check=False)


def _python(code: str, env: dict[str, str], timeout: float = 240) -> str:
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def test_the_embedded_head_serve_and_replicas_listen_on_loopback_only(env):
    address = _python(_DEPLOY, env).splitlines()[-1]
    procs = head.head_processes(address)
    names = {Path(p.argv[0]).name for p in procs}
    assert {"gcs_server", "raylet"} <= names
    listeners = head.listening(p.pid for p in procs)
    ports = {s.port for s in listeners}
    # Serve's HTTP and gRPC proxies are among them: the list is the real one.
    assert {int(env["APPLIANCE_SERVE_PORT"]), int(env["APPLIANCE_SERVE_GRPC_PORT"])} <= ports
    assert int(address.rpartition(":")[2]) in ports
    assert [s for s in listeners if not s.loopback] == []
    # No Ray client server, no dashboard unless [ray] asks for them.
    assert not [p for p in procs if "ray.util.client.server" in p.argv]
    assert 10001 not in ports and 8265 not in ports
    # Token auth is on in the head's processes, whatever the environment said.
    gcs = next(p for p in procs if Path(p.argv[0]).name == "gcs_server")
    environ = Path(f"/proc/{gcs.pid}/environ").read_bytes().split(b"\0")
    assert b"RAY_AUTH_MODE=token" in environ


def test_token_auth_is_forced_even_when_the_environment_disables_it(env):
    env = {**env, "RAY_AUTH_MODE": "disabled"}
    code = "import cluster, os; print(os.environ['RAY_AUTH_MODE'])"
    assert _python(code, env) == "token"


class _Listener:
    """A TCP port that counts who connects: a "Ray" the appliance must never try to join."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.mark.parametrize("named", ["dead", "foreign"])
def test_a_stale_or_foreign_ray_current_cluster_is_never_joined(env, named):
    listener = _Listener() if named == "foreign" else None
    stale = listener.address if listener else f"127.0.0.1:{free_port()}"
    Path(env["RAY_TMPDIR"], "ray_current_cluster").write_text(stale)
    try:
        # Neither hangs (the timeout) nor goes where the file points.
        joined = _python(_WHICH_RAY, env, timeout=120)
    finally:
        if listener:
            listener.sock.close()
    assert joined != stale and joined.startswith("127.0.0.1:")
    if listener:
        assert listener.connections == 0


@pytest.mark.parametrize(("given", "public", "bound"), [
    ("[::]:8001", None, "127.0.0.1:8001"), ("0.0.0.0:9", None, "127.0.0.1:9"),
    (":7", None, "127.0.0.1:7"), ("[::]:0", "0.0.0.0:8001", "127.0.0.1:0"),
    ("10.0.0.5:8001", None, "10.0.0.5:8001"), ("127.0.0.1:5", None, "127.0.0.1:5"),
    ("unix:/tmp/s", None, "unix:/tmp/s"),
    # The gRPC endpoint follows serve_host, as the HTTP endpoint does.
    ("[::]:8001", "127.0.0.1:8001", "127.0.0.1:8001"),
    ("[::]:8001", "0.0.0.0:8001", "0.0.0.0:8001"),
    ("[::]:8001", "[::]:8001", "[::]:8001"), ("[::]:9000", "0.0.0.0:8001", "127.0.0.1:9000"),
])
def test_any_interface_grpc_addresses_become_loopback_but_the_endpoint(given, public, bound):
    assert network.loopback_address(given, public) == bound


def test_the_runtime_env_names_the_endpoint_s_interface():
    assert network.local_runtime_env("127.0.0.1", 0) == {
        "worker_process_setup_hook": network.SETUP_HOOK}
    assert network.local_runtime_env("::", 8001)["env_vars"] == {
        network.PUBLIC_GRPC_ENV: "[::]:8001"}


_API_SERVER = textwrap.dedent("""
    import os, time

    from cluster import runtime  # before Ray: it sets the auth mode
    from appliance.config import load_config
    import ray

    runtime.ensure_ray(load_config(), num_cpus=1)

    @ray.remote(num_cpus=0)
    def ask():
        # As Ray Train's placement-group cleaner asks after its controller, in an actor.
        from ray.dashboard.utils import get_address_for_submission_client
        from ray.util.state import get_actor

        started = time.monotonic()
        try:
            get_actor("ff" * 16, timeout=10)
        except Exception:
            pass
        return get_address_for_submission_client(None), time.monotonic() - started

    url, seconds = ray.get(ask.remote())
    print(url, round(seconds, 3), os.environ.get("RAY_API_SERVER_ADDRESS"))
    ray.shutdown()
""")


def test_ray_s_workers_ask_their_own_api_server_not_a_stale_cluster(env):
    # A head long gone, as any `ray start` leaves behind: asking it held each fit up by 12 s.
    Path(env["RAY_TMPDIR"], "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")
    url, seconds, driver = _python(_API_SERVER, env, timeout=120).splitlines()[-1].split()
    # This Ray's own API server's address (on loopback), answered at once, with or without
    # a state module (the dashboard); the driver's own environment is as it was.
    assert url.startswith("http://127.0.0.1:")
    assert float(seconds) < 5
    assert driver == "None"
