"""The user's own training function ("custom" kind) as a Ray Tune trial.

The function is called as in training (`cluster.train_custom`), with a `CustomContext` of the
same contract, but in the trial's own process (one CPU, one torch thread, no DDP) and with its
params set to the trial's: the spec's `[params]`, the sampled ones, and "epochs" set to the
sweep's budget. The context differs in three ways, so that ASHA can judge and stop it:

- `prepare_model` returns the module as given and keeps it, to be scored;
- every `report` scores that module as it stands on the sweep's validation slice and reports
  the task's metrics to Ray Tune, with the function's own numbers and the count of reports so
  far as "epoch": a function reports once per epoch, and the sweep counts reports as epochs;
- `restore` returns None: ASHA stops trials, it never pauses and resumes them.

The retrained best goes through `fit_custom` (Ray Train, checkpoints) like any training.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from cluster.train_custom import CustomContext, load_function
from cluster.train_epoch import TaskLoss
from cluster.tune_trial import bundle_of, validation_report
from cluster.tune_trial import prepare as prepare_rows


def prepare(
    train: pa.Table, valid: pa.Table, *, label: str, categorical: list[str], task: str,
    seed: int, function: str | None = None,
) -> dict[str, Any]:
    """What every trial shares: the rows (`cluster.tune_trial.prepare`) and the function.

    Raises:
        InvalidInput: bad columns or labels, or a `function` that is not "module:function"
            naming a callable that imports.
    """
    fn = load_function(function)
    return {**prepare_rows(train, valid, label=label, categorical=categorical, task=task,
                           seed=seed), "function": fn}


@dataclasses.dataclass
class _TrialContext(CustomContext):
    """The contract's context inside a trial (see the module docstring)."""

    data: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)
    model: torch.nn.Module | None = None
    reports: int = 0

    def prepare_model(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` itself (one process, no DDP), kept to be scored at each report."""
        self.model = module
        return module

    def report(self, metrics: dict[str, Any], state: dict[str, Any] | None = None) -> None:
        """Score the model on the validation slice and report it, with `metrics`, to Ray
        Tune (`state` is not kept: a trial is never resumed)."""
        from ray import tune

        if self.model is None:
            raise TypeError("the training function reported before passing its model "
                            "through ctx.prepare_model, so a tuning trial cannot score it")
        self.reports += 1
        own = {k: float(v) for k, v in metrics.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool)}
        training = self.model.training
        # Scoring puts the module in eval mode; the function goes on training where it was.
        scored = validation_report(bundle_of(self.data, self.model, "custom"), self.data)
        self.model.train(training)
        tune.report({**own, **scored, "epoch": self.reports})

    def restore(self) -> dict[str, Any] | None:
        """None: a trial starts from scratch."""
        return None


def trial(config: dict[str, Any], data: dict[str, Any]) -> None:
    """Call the user's function with the params in `config`; each of its reports is one
    step of the trial (see the module docstring).

    Args:
        config: the trial's params (the spec's, the sampled ones and "epochs").
        data: what `prepare` returned.
    """
    # One CPU per trial: torch's own thread pool would fight the other trials for the cores.
    torch.set_num_threads(1)
    torch.manual_seed(data["seed"])
    ctx = _TrialContext(
        x=torch.from_numpy(np.array(data["x"])), y=torch.from_numpy(np.array(data["y"])),
        task=data["task"], width=data["pre"].width, outputs=data["outputs"],
        params=dict(config), seed=data["seed"], rank=0, world_size=1,
        device=torch.device("cpu"), loss=TaskLoss(data["task"]), data=data,
    )
    module = data["function"](ctx)
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"the training function returned {type(module).__name__}, not an "
                        f"nn.Module")
