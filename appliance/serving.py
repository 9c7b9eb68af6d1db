"""How one model is served: batching, replicas and autoscaling, resources, its environment.

A deployment spec (``appliance deploy MODEL --spec serving.toml``, keys under ``[serving]``,
or the config file's ``[serving]`` for every model) names any of:

    max_batch_size = 32          # requests scored together in one model call
    batch_wait_s = 0.0           # how long a batch waits to fill (0: it takes what is queued;
                                 # batches form while the model is busy with the last one)
    max_ongoing_requests = 64    # per replica; at least max_batch_size, so batches can fill
    replicas = 1                 # fixed replica count (without [serving.autoscaling])
    num_cpus = 0.2               # per replica
    num_gpus = 0                 # per replica; fractions share a GPU (0.25: four per GPU)
    log_predictions = true       # log every answered row (the monitor needs it)
    log_max_rows = 200000        # rows logged and not yet published before answering 503
    log_flush_s = 1.0            # the most a logged row waits to be published, fsynced (0: as
                                 # soon as the last publish is done); a killed replica loses
                                 # nothing either way, only a power cut within it could
    backend = "torch"            # or "triton": the network runs in a Triton server
    log_columns = ["group"]      # request inputs that are no model feature, logged as text
                                 # for the monitor (segments, a protected attribute) and never
                                 # fed to the model; optional in each request (default none)

    [serving.autoscaling]        # Ray Serve autoscaling instead of a fixed count
    min_replicas = 1
    max_replicas = 4
    target_ongoing_requests = 32

    [serving.runtime_env]        # the replica's own Python packages (a Ray runtime_env)
    pip = ["tinypkg==2.0"]
    wheelhouse = "/srv/wheels"   # install from this folder only (an offline cluster)
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

from appliance.errors import InvalidInput

BACKENDS = ("torch", "triton")
_AUTOSCALING = {"min_replicas", "max_replicas", "target_ongoing_requests"}
_RUNTIME_ENV = {"pip", "wheelhouse", "env_vars"}


@dataclasses.dataclass(frozen=True)
class ServingOptions:
    """A model's serving options (see the module docstring for each key and its default)."""

    max_batch_size: int = 32
    batch_wait_s: float = 0.0
    max_ongoing_requests: int = 64
    replicas: int = 1
    num_cpus: float = 0.2
    num_gpus: float = 0.0
    log_predictions: bool = True
    log_max_rows: int = 200_000
    log_flush_s: float = 1.0
    backend: str = "torch"
    autoscaling: dict[str, Any] | None = None
    runtime_env: dict[str, Any] | None = None
    log_columns: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        doc["log_columns"] = list(self.log_columns)
        return doc

    def deployment_options(self) -> dict[str, Any]:
        """Keyword arguments for ``ModelServer.options(...)``."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        if self.runtime_env:
            actor["runtime_env"] = ray_runtime_env(self.runtime_env)
        out: dict[str, Any] = {
            "max_ongoing_requests": self.max_ongoing_requests,
            "ray_actor_options": actor,
        }
        if self.autoscaling:
            out["autoscaling_config"] = {
                "min_replicas": self.autoscaling["min_replicas"],
                "max_replicas": self.autoscaling["max_replicas"],
                "target_ongoing_requests": self.autoscaling["target_ongoing_requests"],
                # Scale up quickly under a burst, down slowly.
                "upscale_delay_s": 3.0,
                "downscale_delay_s": 60.0,
            }
        else:
            out["num_replicas"] = self.replicas
        return out


def ray_runtime_env(env: dict[str, Any]) -> dict[str, Any]:
    """Ray's ``runtime_env`` for our validated one: pip from a wheelhouse when it names one."""
    out: dict[str, Any] = {}
    if env.get("pip"):
        pip: dict[str, Any] = {"packages": list(env["pip"])}
        if env.get("wheelhouse"):
            # Offline: only the wheelhouse, never an index, nor the find-links or indexes that
            # the node's pip configuration and PIP_* variables add (--isolated). These options
            # replace Ray's defaults, so those are restated.
            pip["pip_install_options"] = [
                "--isolated", "--disable-pip-version-check", "--no-cache-dir",
                "--no-index", "--find-links", str(env["wheelhouse"]),
            ]
        out["pip"] = pip
    if env.get("env_vars"):
        out["env_vars"] = dict(env["env_vars"])
    return out


def _number(doc: dict, key: str, where: str, *, integer: bool, low: float,
            high: float = math.inf, low_open: bool = False) -> None:
    if key not in doc:
        return
    value = doc[key]
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if not ok or isinstance(value, bool) or not math.isfinite(value):
        kind = "an integer" if integer else "a number"
        raise InvalidInput(f"{where}.{key} must be {kind}, got {value!r}")
    if value < low or (low_open and value == low) or value > high:
        bound = f"> {low}" if low_open else f">= {low}"
        raise InvalidInput(f"{where}.{key} must be {bound} and <= {high}, got {value!r}")


def _known_keys(doc: dict, known: set[str], where: str) -> None:
    unknown = set(doc) - set(known)
    if unknown:
        raise InvalidInput(f"{where} has unknown key(s) {sorted(unknown)}; "
                           f"known: {sorted(known)}")


def _autoscaling(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where} must be a table, got {doc!r}")
    _known_keys(doc, _AUTOSCALING, where)
    out = {"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 32, **doc}
    _number(out, "min_replicas", where, integer=True, low=0, high=1024)
    _number(out, "max_replicas", where, integer=True, low=1, high=1024)
    _number(out, "target_ongoing_requests", where, integer=False, low=0, low_open=True)
    if out["min_replicas"] > out["max_replicas"]:
        raise InvalidInput(f"{where}: min_replicas {out['min_replicas']} is above "
                           f"max_replicas {out['max_replicas']}")
    return out


def _wheelhouse_versions(house: str) -> dict[str, set]:
    """The versions of each (canonical) project name that `house` holds wheels or sdists of."""
    # Deferred, as in _check_wheelhouse.
    from packaging.utils import parse_sdist_filename, parse_wheel_filename

    found: dict[str, set] = {}
    for path in Path(house).iterdir():
        try:
            if path.name.endswith(".whl"):
                name, version, _, _ = parse_wheel_filename(path.name)
            elif path.name.endswith((".tar.gz", ".zip")):
                name, version = parse_sdist_filename(path.name)
            else:
                continue
        except ValueError:
            continue  # not a distribution pip would pick either
        found.setdefault(name, set()).add(version)
    return found


def _check_wheelhouse(requirements: list[str], house: str, where: str) -> None:
    """Refuse a requirement that no distribution in `house` satisfies.

    Ray would find out only on the replica's node, after copying the virtualenv, and Serve
    then reports a generic failure: checking the folder here names the requirement at once.
    Only the requirements themselves are checked (their dependencies are pip's business), and
    entries that are not plain requirements (URLs, pip options) are left to pip.
    """
    # Deferred: only a spec naming a wheelhouse needs it (packaging comes with pip and Ray).
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    found = None
    for text in requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.url or (requirement.marker and not requirement.marker.evaluate()):
            continue
        if found is None:
            found = _wheelhouse_versions(house)
        versions = found.get(canonicalize_name(requirement.name), set())
        if not any(requirement.specifier.contains(v, prereleases=True) for v in versions):
            there = ", ".join(str(v) for v in sorted(versions)) or "none"
            raise InvalidInput(
                f"{where}.pip: {text!r} is not in wheelhouse {house!r} (versions of "
                f"{requirement.name} there: {there}); add its wheel to the folder on every node"
            )


def _runtime_env(doc: Any, where: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where} must be a table, got {doc!r}")
    _known_keys(doc, _RUNTIME_ENV, where)
    pip = doc.get("pip", [])
    if not isinstance(pip, list) or not all(isinstance(p, str) and p.strip() for p in pip):
        raise InvalidInput(f"{where}.pip must be a list of requirement strings, got {pip!r}")
    out: dict[str, Any] = {"pip": [p.strip() for p in pip]}
    house = doc.get("wheelhouse")
    if house is not None:
        if not isinstance(house, str) or not Path(house).is_dir():
            raise InvalidInput(f"{where}.wheelhouse {house!r} is not a folder")
        out["wheelhouse"] = str(Path(house).resolve())
        _check_wheelhouse(out["pip"], out["wheelhouse"], where)
    env_vars = doc.get("env_vars", {})
    if not isinstance(env_vars, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        raise InvalidInput(f"{where}.env_vars must map names to strings, got {env_vars!r}")
    if env_vars:
        out["env_vars"] = dict(env_vars)
    return out


def _log_columns(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise InvalidInput(f"{where}.log_columns must be a list of column names, got {value!r}")
    return tuple(dict.fromkeys(v.strip() for v in value))


def parse_serving(doc: Any, where: str = "[serving]",
                  base: ServingOptions | None = None) -> ServingOptions:
    """Validate a ``[serving]`` table over `base` (default: the built-in defaults).

    Raises:
        InvalidInput: naming the key and the value that is wrong.
    """
    base = base or ServingOptions()
    if doc is None:
        return base
    if not isinstance(doc, dict):
        raise InvalidInput(f"{where} must be a table, got {doc!r}")
    fields = {f.name for f in dataclasses.fields(ServingOptions)}
    _known_keys(doc, fields, where)
    merged = {**base.to_dict(), **doc}
    _number(merged, "max_batch_size", where, integer=True, low=1, high=65536)
    _number(merged, "batch_wait_s", where, integer=False, low=0, high=10)
    _number(merged, "max_ongoing_requests", where, integer=True, low=1, high=100_000)
    _number(merged, "replicas", where, integer=True, low=1, high=1024)
    _number(merged, "num_cpus", where, integer=False, low=0)
    _number(merged, "num_gpus", where, integer=False, low=0, high=64)
    _number(merged, "log_max_rows", where, integer=True, low=1)
    _number(merged, "log_flush_s", where, integer=False, low=0, high=60)
    if not isinstance(merged["log_predictions"], bool):
        raise InvalidInput(f"{where}.log_predictions must be true or false")
    if merged["backend"] not in BACKENDS:
        raise InvalidInput(f"{where}.backend {merged['backend']!r} is not one of {BACKENDS}")
    if merged["max_ongoing_requests"] < merged["max_batch_size"]:
        raise InvalidInput(
            f"{where}: max_ongoing_requests {merged['max_ongoing_requests']} is below "
            f"max_batch_size {merged['max_batch_size']}; a batch could never fill"
        )
    merged["log_columns"] = _log_columns(merged["log_columns"], where)
    if "autoscaling" in doc and doc["autoscaling"] is not None:
        merged["autoscaling"] = _autoscaling(doc["autoscaling"], f"{where}.autoscaling")
    if "runtime_env" in doc and doc["runtime_env"] is not None:
        merged["runtime_env"] = _runtime_env(doc["runtime_env"], f"{where}.runtime_env")
    return ServingOptions(**merged)
