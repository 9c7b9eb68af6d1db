"""Progress and failures of real Ray Train runs: each epoch's report reaches the driver, and a
run that fails on its worker fails with its cause on one line. Capacity: test_capacity.py."""

from __future__ import annotations

import os

import pytest

from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.errors import ExitCode, InvalidInput, RunFailed, exit_code_for
from cluster.train import fit


def test_every_epoch_reaches_the_driver(ray_session, tmp_path):
    events = []
    out = fit(generate(300, seed=5), label=LABEL, categorical=CATEGORICAL,
              params={"epochs": 4, "hidden": 8}, seed=3, storage_path=str(tmp_path),
              name="progress", on_progress=events.append)
    assert [e.step for e in events] == [1, 2, 3, 4]
    assert {e.total for e in events} == {4}
    assert all(e.rank == 0 and e.pid != os.getpid() for e in events)
    assert all(0 < e.metrics["loss"] < 5 for e in events)
    assert out.epochs == 4 and out.restarts == 0 and out.resumed_from == []


def test_diverging_run_fails_with_its_cause_on_one_line(ray_session, tmp_path):
    # Sixteen layers at learning rate 1 blow the squared error up to NaN in the first epoch:
    # the worker refuses to go on, for real, and Ray Train is told not to retry.
    with pytest.raises(RunFailed) as err:
        fit(generate(300, seed=5), label="income", categorical=CATEGORICAL, task="regression",
            params={"epochs": 3, "layers": 16, "hidden": 128, "lr": 1.0, "batch_size": 16},
            seed=4, storage_path=str(tmp_path), name="diverge", max_failures=0)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("training run diverge-") and "FloatingPointError: " in msg, msg
    assert "diverged" in msg
    assert exit_code_for(err.value) == ExitCode.CHECK_FAILED


@pytest.mark.parametrize(("max_failures", "keep"), [(-1, 2), (101, 2), (2, 0), (True, 2)])
def test_fault_tolerance_settings_are_checked(max_failures, keep):
    with pytest.raises(InvalidInput, match="must be an integer in"):
        fit(generate(50, seed=1), label=LABEL, categorical=CATEGORICAL, params={}, seed=0,
            storage_path="/nonexistent/ray_results", max_failures=max_failures,
            checkpoints_to_keep=keep)
