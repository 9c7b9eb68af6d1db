"""What every kind's Ray Train run shares (`cluster.train_run`): the run folder's digest, the
one-line cause of a failed run, and the refusal to fit without a started Ray. A real failed run
(`run_trainer` on Ray) is in tests/cluster/test_progress.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from cluster.train_run import _cause, run_digest


def test_the_digest_is_stable_and_covers_rows_params_seed_and_scaling():
    x, y = np.arange(12, dtype=np.float32).reshape(4, 3), np.array([0, 1, 0, 1], np.float32)
    base = run_digest(x, y, {"lr": 0.1}, 1, 1, False)
    assert base == run_digest(x.copy(), y.copy(), {"lr": 0.1}, 1, 1, False)
    assert len(base) == 12
    changed = [run_digest(x + 1, y, {"lr": 0.1}, 1, 1, False),
               run_digest(x, 1 - y, {"lr": 0.1}, 1, 1, False),
               run_digest(x, y, {"lr": 0.2}, 1, 1, False),
               run_digest(x, y, {"lr": 0.1}, 2, 1, False),
               run_digest(x, y, {"lr": 0.1}, 1, 2, False),
               run_digest(x, y, {"lr": 0.1}, 1, 1, True)]
    assert len({base, *changed}) == 7


class _WorkerError(Exception):
    """Ray's wrapper of a worker's exception: the worker's own under `cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("wrapped\ntraceback lines")
        self.cause = cause


class _TrainingFailed(Exception):
    def __init__(self, failures: dict[int, BaseException]) -> None:
        super().__init__("Training failed due to worker errors")
        self.worker_failures = failures


def test_the_cause_is_the_first_workers_own_exception_on_one_line():
    exc = _TrainingFailed({1: _WorkerError(KeyError("b")),
                           0: _WorkerError(FloatingPointError("loss is nan\nat epoch 3"))})
    assert _cause(exc) == "FloatingPointError: loss is nan"
    assert _cause(ValueError("")) == "ValueError: no message"


def test_a_fit_without_a_started_ray_is_refused_not_started_here(tmp_path):
    # In a fresh interpreter: this test session's Ray may already be up.
    code = ("import cluster\nfrom cluster.train_run import place_run\n"
            "import ray\n"
            f"try:\n    place_run({str(tmp_path / 'runs')!r}, 1, False)\n"
            "except Exception as exc:\n    print(type(exc).__name__, exc)\n"
            "print(ray.is_initialized())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.startswith("RunFailed Ray is not started"), out
    assert out.splitlines()[-1] == "False"
    assert not (tmp_path / "runs").exists()
