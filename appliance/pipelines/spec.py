"""Training specs: a TOML or JSON file naming the model, data, label and parameters.

    model = "credit"                 # required
    dataset = "credit-train"         # required: name (latest) or name:version
    label = "default"                # required
    task = "binary"                  # optional: "binary" (0/1 labels), "multiclass" (int or
                                     #   string classes) or "regression" (numbers)
    kind = "mlp"                     # optional: "mlp" (PyTorch), "xgboost" (boosted trees)
                                     #   or "custom"; [params] are the kind's (train_params)
    function = "pkg.mod:train"       # the custom kind's training function (required by it)
    categorical = ["employment"]     # optional, default none
    seed = 7                         # optional, default 0
    holdout = 0.2                    # optional: share kept back for evaluation and the gate
    split = "random"                 # optional: "random" (seeded) or "latest" (the last rows,
                                     #   in the dataset's order: for time-ordered data)
    [params]                         # optional: passed to the trainer (epochs, lr, hidden...)
    [resources]                      # optional: num_workers (1), use_gpu ("auto"|true|false)
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import tomllib

from appliance.errors import InvalidInput

_TOP = {"model", "dataset", "label", "task", "kind", "function", "categorical", "seed",
        "holdout", "split", "params", "resources"}
SPLITS = ("random", "latest")
TASKS = ("binary", "multiclass", "regression")
KINDS = ("mlp", "xgboost", "custom")
_RESOURCES = {"num_workers", "use_gpu"}


@dataclasses.dataclass
class TrainSpec:
    model: str
    dataset: str
    label: str
    categorical: list[str] = dataclasses.field(default_factory=list)
    seed: int = 0
    holdout: float = 0.2
    split: str = "random"
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    num_workers: int = 1
    use_gpu: bool | None = None
    task: str = "binary"
    kind: str = "mlp"
    function: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _expect(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise InvalidInput(f"spec {where}: {msg}")


def parse_spec(doc: dict[str, Any], where: str = "<spec>") -> TrainSpec:
    """Validate a spec document; InvalidInput names the file and the offending key."""
    _expect(isinstance(doc, dict), where, "must be a table/object")
    unknown = sorted(set(doc) - _TOP)
    _expect(not unknown, where, f"unknown key(s) {unknown}; allowed: {sorted(_TOP)}")
    for key in ("model", "dataset", "label"):
        _expect(isinstance(doc.get(key), str) and doc[key], where, f"'{key}' is required")
    task = doc.get("task", "binary")
    _expect(task in TASKS, where, f"'task' must be one of {list(TASKS)}, got {task!r}")
    kind = doc.get("kind", "mlp")
    _expect(kind in KINDS, where, f"'kind' must be one of {list(KINDS)}, got {kind!r}")
    function = doc.get("function")
    _expect((function is not None) == (kind == "custom"), where,
            "'function' (\"module:function\") is required with kind = \"custom\", and only then")
    _expect(function is None or isinstance(function, str), where,
            f"'function' must be a string \"module:function\", got {function!r}")
    cats = doc.get("categorical", [])
    _expect(isinstance(cats, list) and all(isinstance(c, str) for c in cats), where,
            "'categorical' must be a list of column names")
    seed = doc.get("seed", 0)
    _expect(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0, where,
            f"'seed' must be a non-negative integer, got {seed!r}")
    holdout = doc.get("holdout", 0.2)
    _expect(isinstance(holdout, (int, float)) and 0.05 <= holdout <= 0.5, where,
            f"'holdout' must be between 0.05 and 0.5, got {holdout!r}")
    split = doc.get("split", "random")
    _expect(split in SPLITS, where, f"'split' must be one of {list(SPLITS)}, got {split!r}")
    params = doc.get("params", {})
    _expect(isinstance(params, dict), where, "'params' must be a table")
    res = doc.get("resources", {})
    _expect(isinstance(res, dict), where, "'resources' must be a table")
    bad = sorted(set(res) - _RESOURCES)
    _expect(not bad, where, f"unknown resources key(s) {bad}; allowed: {sorted(_RESOURCES)}")
    workers = res.get("num_workers", 1)
    _expect(isinstance(workers, int) and workers >= 1, where,
            f"'resources.num_workers' must be >= 1, got {workers!r}")
    gpu = res.get("use_gpu", "auto")
    _expect(gpu in ("auto", True, False), where, "'resources.use_gpu' must be auto, true or false")
    return TrainSpec(
        model=doc["model"], dataset=doc["dataset"], label=doc["label"], categorical=cats,
        seed=seed, holdout=float(holdout), split=split, params=params, num_workers=workers,
        use_gpu=None if gpu == "auto" else gpu, task=task, kind=kind,
        function=function,
    )


def load_spec(path: Path) -> TrainSpec:
    path = Path(path)
    if not path.is_file():
        raise InvalidInput(f"spec file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        doc = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"spec file {str(path)!r} is malformed: {exc}") from exc
    return parse_spec(doc, repr(str(path)))
