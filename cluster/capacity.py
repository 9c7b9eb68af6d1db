"""Whether the Ray cluster can hold a training run's workers, asked before the run starts.

Ray Train waits for as long as it takes to place its workers, so a run that asks for more than
the cluster has would hang with no word. `check_capacity` answers first, in seconds:

- the request exceeds the cluster's total (CPUs, or GPUs with use_gpu): refused at once,
  naming what is asked and what the cluster has;
- it fits the total but not what is free now (Serve replicas, another run hold the rest):
  waited for, up to `wait_s` (10 s by default: enough for a run that just ended to hand its
  slots back), then refused, naming what is free and who may hold it. The operator retries
  later or scales a deployment down; nothing queues behind their back.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import ray

from appliance.errors import InvalidInput

DEFAULT_WAIT_S = 10.0
_POLL_S = 0.5
# Ray reports free fractions of a CPU with float noise (1.5999999).
_EPS = 1e-6


class InsufficientResources(InvalidInput):
    """The Ray cluster cannot hold the workers a run asks for."""


def worker_resources(num_workers: int, use_gpu: bool) -> dict[str, float]:
    """What Ray Train reserves for `num_workers` workers, as its ScalingConfig computes it
    (one CPU per worker, or one GPU per worker with `use_gpu`)."""
    from ray.train import ScalingConfig  # Deferred: Ray Train's import costs about a second.

    scaling = ScalingConfig(num_workers=num_workers, use_gpu=use_gpu)
    return {k: float(v) for k, v in scaling.total_resources.items() if k in ("CPU", "GPU")}


def resolve_gpu(num_workers: int, use_gpu: bool | None) -> bool:
    """`use_gpu` as given, or for None ("auto"): whether the cluster has a GPU per worker."""
    if use_gpu is None:
        return ray.cluster_resources().get("GPU", 0) >= num_workers
    return bool(use_gpu)


def _fmt(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2g}"


def _short(needs: dict[str, float], have: dict[str, float]) -> str | None:
    for kind, amount in needs.items():
        if have.get(kind, 0.0) + _EPS < amount:
            return kind
    return None


def check_capacity(
    num_workers: int,
    use_gpu: bool,
    *,
    wait_s: float = DEFAULT_WAIT_S,
    on_wait: Callable[[str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Refuse a run the connected Ray cluster cannot hold, in seconds rather than never.

    Args:
        num_workers: Ray Train workers the run asks for.
        use_gpu: whether each worker asks for a GPU.
        wait_s: how long to wait for resources that exist but are held (default 10 s).
        on_wait: told once, in words, when the check starts waiting (default None).
        clock: monotonic seconds (injectable for tests).

    Raises:
        InsufficientResources: the cluster has too few in total, or too few free after
            `wait_s`; the message names what is asked, the total and what is free.
    """
    needs = worker_resources(num_workers, use_gpu)
    total = ray.cluster_resources()
    kind = _short(needs, total)
    what = f"resources.num_workers = {num_workers}" + (" with use_gpu" if use_gpu else "")
    if kind is not None:
        free = ray.available_resources().get(kind, 0.0)
        raise InsufficientResources(
            f"{what} needs {_fmt(needs[kind])} {kind}s for its workers; this Ray cluster has "
            f"{_fmt(total.get(kind, 0.0))} {kind}s ({_fmt(free)} free): lower num_workers"
            + (" or set use_gpu = false" if kind == "GPU" else "")
        )
    deadline = clock() + wait_s
    told = False
    while True:
        free = ray.available_resources()
        kind = _short(needs, free)
        if kind is None:
            return
        if clock() >= deadline:
            raise InsufficientResources(
                f"{what} needs {_fmt(needs[kind])} {kind}s for its workers; this Ray cluster "
                f"has {_fmt(total[kind])} {kind}s but only {_fmt(free.get(kind, 0.0))} free "
                f"after waiting {_fmt(wait_s)} s (Serve replicas or another run hold the "
                f"rest): retry later, scale a deployment down or lower num_workers"
            )
        if not told and on_wait is not None:
            on_wait(f"waiting up to {_fmt(wait_s)} s for {_fmt(needs[kind])} free {kind}s "
                    f"({_fmt(free.get(kind, 0.0))} of {_fmt(total[kind])} free now)")
            told = True
        time.sleep(_POLL_S)
