"""Starting or joining Ray (`cluster.runtime`), where no new Ray is needed: the appliance's own
token (made once, private, under its home), the token auth forced on every Ray it starts or
joins, Ray's API-server variable set only while a Ray starts, a stale head record cleared, and
what a process already connected (the session's `ray_session`) leaves alone or refuses.
Real heads from `ray start`: tests/cluster/test_network.py and tests/cli/test_down.py."""

from __future__ import annotations

import os
import stat

import pytest
from loop_world import config

from appliance.errors import ConflictError
from appliance.ports import free_port
from cluster import head, runtime

_API = "RAY_API_SERVER_ADDRESS"


def test_the_token_is_made_once_private_and_under_the_home(tmp_path, monkeypatch):
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    cfg = config(tmp_path / "not-yet")
    token = runtime.auth_token(cfg)
    path = tmp_path / "not-yet" / "ray_auth_token"
    assert len(token) == 64 and int(token, 16) >= 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    # Every later call, in any process of this appliance, reads the same secret back.
    assert runtime.auth_token(cfg) == token == path.read_text()
    assert runtime.auth_token(config(tmp_path / "another")) != token


def test_the_environments_token_wins_and_no_file_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-the-environment")
    cfg = config(tmp_path)
    assert runtime.auth_token(cfg) == "from-the-environment"
    assert not (tmp_path / "ray_auth_token").exists()


def test_token_auth_is_forced_whatever_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t0ken")
    assert runtime._auth_env(config(tmp_path)) == {"RAY_AUTH_MODE": "token",
                                                   "RAY_AUTH_TOKEN": "t0ken"}


def test_the_api_server_is_named_while_ray_starts_and_forgotten_after(monkeypatch):
    monkeypatch.delenv(_API, raising=False)
    with runtime.api_server_env(4321):
        assert os.environ[_API] == "http://127.0.0.1:4321"
    assert _API not in os.environ
    # A value set before is put back, even when starting Ray failed.
    monkeypatch.setenv(_API, "http://127.0.0.1:1")
    with pytest.raises(RuntimeError, match="ray.init failed"), runtime.api_server_env(4321):
        assert os.environ[_API] == "http://127.0.0.1:4321"
        raise RuntimeError("ray.init failed")
    assert os.environ[_API] == "http://127.0.0.1:1"


def test_a_stale_head_record_is_cleared_and_nothing_is_signalled(tmp_path):
    cfg = config(tmp_path)
    # Nothing listens there and no process names it: a head that died with its machine.
    address = f"127.0.0.1:{free_port()}"
    head.address_file(cfg.home).write_text(address)
    stopped = runtime.stop_head(cfg, grace_s=1.0)
    assert stopped == runtime.HeadStopped(address=address, serve_shutdown=False,
                                          serve_error=None, pids=[], killed=[])
    assert not head.address_file(cfg.home).exists()
    assert runtime.stop_head(cfg) is None


def test_a_connected_process_keeps_its_ray(ray_session, tmp_path):
    connected = ray_session.get_runtime_context().gcs_address
    # Once per process: not even a configured cluster moves it.
    runtime.ensure_ray(config(tmp_path, ray_address="10.0.0.1:6379"))
    runtime.ensure_ray(config(tmp_path), persistent=True)
    assert ray_session.is_initialized()
    assert ray_session.get_runtime_context().gcs_address == connected
    # Its own Ray's address, by any host name, is joined already.
    port = connected.rpartition(":")[2]
    assert runtime._join_head(config(tmp_path), f"localhost:{port}") is False


def test_a_connected_process_refuses_another_local_head(ray_session, tmp_path):
    cfg = config(tmp_path)
    connected = ray_session.get_runtime_context().gcs_address
    other = f"127.0.0.1:{free_port()}"
    message = f"connected to the Ray at {connected}, not to the local head at {other}"
    # A conflict, not "Serve did not answer": the caller runs it from a process of its own.
    with pytest.raises(ConflictError, match=message):
        runtime.serve_applications(cfg, other)
    assert ray_session.get_runtime_context().gcs_address == connected
