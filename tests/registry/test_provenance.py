"""What a run records about its code and environment (`appliance.registry.provenance`): the
checkout's commit, a hash of the installed distributions, and the machine, never an error."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

from appliance.registry.provenance import Runtime, code_version, environment_hash, runtime

ROOT = Path(__file__).resolve().parents[2]


def test_code_version_names_the_checkouts_commit():
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip()
    assert re.fullmatch(rf"git:{sha}(\+dirty)?", code_version())


def test_the_environment_hash_is_a_stable_sha256_of_the_installed_pins():
    value = environment_hash()
    environment_hash.cache_clear()
    assert environment_hash() == value
    # A lock hash: the sorted name==version lines, so the order of site-packages is no matter.
    pins = sorted(f"{(d.metadata['Name'] or '').lower()}=={d.version}"
                  for d in importlib.metadata.distributions())
    assert f"pytest=={importlib.metadata.version('pytest')}" in pins
    assert value == "sha256:" + hashlib.sha256("\n".join(pins).encode()).hexdigest()


def test_runtime_describes_this_process_and_round_trips():
    rt = runtime()
    assert rt.python == f"{platform.python_implementation()} {platform.python_version()}"
    assert rt.os == platform.platform()
    assert rt.hardware.cores == os.cpu_count()
    assert rt.hardware.memory_bytes and rt.hardware.memory_bytes > 2**28
    assert rt.torch and rt.torch.split("+")[0].count(".") >= 1
    # Without NVML (this CI) there are no GPUs and no driver; with one, both are read.
    assert (rt.gpu_driver is None) == (rt.hardware.gpus == [])
    assert Runtime.model_validate(rt.model_dump(mode="json")) == rt
