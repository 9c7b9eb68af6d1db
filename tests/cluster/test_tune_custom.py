"""The user's own training function as a tuning trial (`cluster.tune_custom`): the sweep's data
with the function loaded once, a context that keeps the model for scoring and never resumes,
the contract's misuses refused, and on a real Ray Tune a function's reports counted as its
epochs, each scored on the validation slice (here a regression) with the function's own numbers
alongside, and the model left in the mode the function had it in. The custom sweep through the
CLI: tests/cli/test_tune_cli.py."""

from __future__ import annotations

import pytest
import torch
from trial_helpers import LABELS, rows, run_trials

from appliance.errors import InvalidInput
from cluster.tune_custom import _TrialContext, prepare, trial

EPOCHS = 3
_ME = __name__  # the module name pytest imported this file as: the functions' "module:"


def _mode_watching_net(ctx) -> torch.nn.Module:
    """A linear model trained full-batch for params["epochs"] epochs, reporting each epoch
    with numbers of its own: its 0-based epoch (which the trial's count replaces), whether the
    model is in training mode as it reports (scoring must not leave it in eval mode), what the
    trial gave it, and two values a report drops (a boolean and a string)."""
    torch.manual_seed(ctx.seed)
    model = ctx.prepare_model(torch.nn.Linear(ctx.width, ctx.outputs))
    opt = torch.optim.SGD(model.parameters(), lr=float(ctx.params["lr"]))
    for epoch in range(int(ctx.params["epochs"])):
        opt.zero_grad()
        loss = ctx.loss(model(ctx.x), ctx.y)
        loss.backward()
        opt.step()
        ctx.report({"epoch": epoch, "loss": float(loss), "training": int(model.training),
                    "threads": torch.get_num_threads(), "world_size": ctx.world_size,
                    "rank": ctx.rank, "lr_given": ctx.params["lr"],
                    "restored": int(ctx.restore() is None), "converged": False, "note": "x"},
                   state={"model": model.state_dict()})
    return model


def _reports_too_soon(ctx) -> torch.nn.Module:
    ctx.report({"loss": 1.0})
    return ctx.prepare_model(torch.nn.Linear(ctx.width, ctx.outputs))


def _returns_weights(ctx):
    return ctx.prepare_model(torch.nn.Linear(ctx.width, ctx.outputs)).state_dict()


def _data(function: str) -> dict:
    return prepare(rows("regression", 300, seed=1), rows("regression", 100, seed=2),
                   label=LABELS["regression"], categorical=["c"], task="regression", seed=3,
                   function=function)


@pytest.fixture
def torch_state():
    """A trial sets torch's thread count and seed for its own process: here that is the test
    process, which gets its own back."""
    threads, rng = torch.get_num_threads(), torch.get_rng_state()
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(rng)


def test_the_sweep_loads_the_function_once_with_the_rows():
    data = _data(f"{_ME}:_mode_watching_net")
    assert data["function"] is _mode_watching_net
    assert data["x"].shape == (300, 4) and data["task"] == "regression"
    assert data["classes"] is None and data["target"] is not None and data["outputs"] == 1
    with pytest.raises(InvalidInput, match="'module:function'"):
        _data("no_colon")
    with pytest.raises(InvalidInput, match=f"module '{_ME}' has no callable 'missing'"):
        _data(f"{_ME}:missing")


def test_the_trial_context_keeps_the_model_and_never_resumes():
    data = _data(f"{_ME}:_mode_watching_net")
    ctx = _TrialContext(x=torch.zeros(1, 4), y=torch.zeros(1), task="regression", width=4,
                        outputs=1, params={}, seed=0, rank=0, world_size=1,
                        device=torch.device("cpu"), loss=torch.nn.MSELoss(), data=data)
    module = torch.nn.Linear(4, 1)
    assert ctx.prepare_model(module) is module and ctx.model is module
    assert ctx.restore() is None and ctx.reports == 0


def test_a_function_that_reports_before_preparing_its_model_is_refused(torch_state):
    with pytest.raises(TypeError, match="reported before passing its model through "
                                        "ctx.prepare_model"):
        trial({"epochs": 1}, _data(f"{_ME}:_reports_too_soon"))


def test_a_function_that_returns_no_module_is_refused(torch_state):
    with pytest.raises(TypeError, match="the training function returned OrderedDict, not an "
                                        "nn.Module"):
        trial({"epochs": 1}, _data(f"{_ME}:_returns_weights"))


@pytest.fixture(scope="module")
def reports(ray_session, tmp_path_factory):
    config = {"epochs": EPOCHS, "lr": 0.1}
    [mine] = run_trials(trial, _data(f"{_ME}:_mode_watching_net"), config,
                        tmp_path_factory.mktemp("tune_custom"))
    return mine


def test_each_report_is_an_epoch_scored_on_the_validation_slice(reports):
    # Counted from 1 by the trial, whatever the function called its epoch.
    assert [r["epoch"] for r in reports] == [1, 2, 3]
    # The function's own numbers, and the task's metrics; a boolean or a string is dropped.
    assert all(set(r) == {"epoch", "loss", "training", "threads", "world_size", "rank",
                          "lr_given", "restored", "rmse", "mae", "r2", "pid"} for r in reports)
    assert reports[-1]["loss"] < reports[0]["loss"]
    assert reports[-1]["rmse"] < reports[0]["rmse"]


def test_the_function_runs_alone_on_one_thread_with_the_trials_params(reports):
    for r in reports:
        assert (r["threads"], r["world_size"], r["rank"]) == (1, 1, 0)
        assert r["lr_given"] == 0.1 and r["restored"] == 1
        # Scoring at the previous report put the model in eval mode; the trial put it back.
        assert r["training"] == 1
