"""Capacity checks on the session's real Ray (`cluster.capacity`): a run the cluster cannot hold
is refused in seconds, and resources others hold are waited for, then refused."""

from __future__ import annotations

import time

import pytest

from appliance.errors import ExitCode, exit_code_for
from cluster.capacity import InsufficientResources, check_capacity


def test_more_workers_than_cpus_is_refused_in_seconds(ray_session):
    cpus = ray_session.cluster_resources()["CPU"]
    started = time.monotonic()
    with pytest.raises(InsufficientResources) as err:
        check_capacity(int(cpus) + 6, False)
    assert time.monotonic() - started < 5
    msg = str(err.value)
    assert f"needs {int(cpus) + 6} CPUs" in msg and f"has {cpus:g} CPUs" in msg, msg
    assert exit_code_for(err.value) == ExitCode.USAGE


def test_gpus_on_a_cluster_without_enough_is_refused(ray_session):
    gpus = int(ray_session.cluster_resources().get("GPU", 0))
    with pytest.raises(InsufficientResources, match=rf"needs {gpus + 1} GPUs .* has {gpus} GPUs"):
        check_capacity(gpus + 1, True)


def test_resources_held_by_others_are_waited_for_then_refused(ray_session):
    @ray_session.remote(num_cpus=1.5)
    class Holder:  # stands in for Serve replicas or another run holding CPUs
        def ready(self) -> bool:
            return True

    holder = Holder.remote()
    try:
        ray_session.get(holder.ready.remote())
        said: list[str] = []
        started = time.monotonic()
        with pytest.raises(InsufficientResources,
                           match=r"has 2 CPUs but only 0.5 free after waiting 1 s"):
            check_capacity(1, False, wait_s=1.0, on_wait=said.append)
        assert 1.0 <= time.monotonic() - started < 5
        assert len(said) == 1 and "waiting up to 1 s for 1 free CPUs" in said[0], said
    finally:
        ray_session.kill(holder)
    # Freed again: the same request passes (once Ray has taken the slot back).
    check_capacity(1, False, wait_s=10.0)
