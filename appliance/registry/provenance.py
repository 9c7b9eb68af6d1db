"""What a run records about the code and environment that produced it."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

from sqlmodel import Field, SQLModel


@functools.cache
def code_version() -> str:
    """``git:<sha>[+dirty]`` when running from a checkout, else ``appliance==<version>``."""
    root = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"git:{sha}{'+dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"appliance=={importlib.metadata.version('appliance')}"


@functools.cache
def environment_hash() -> str:
    """sha256 over the sorted ``name==version`` of every installed distribution (a lock hash)."""
    pins = sorted(
        f"{(d.metadata['Name'] or '').lower()}=={d.version}"
        for d in importlib.metadata.distributions()
    )
    return "sha256:" + hashlib.sha256("\n".join(pins).encode()).hexdigest()


class Hardware(SQLModel):
    """The machine a run was started on; None where it cannot be read."""

    cpu: str | None = None
    cores: int | None = None
    memory_bytes: int | None = None
    # NVML's device names, one per GPU; empty where NVML is absent or sees none.
    gpus: list[str] = Field(default_factory=list)


class Runtime(SQLModel):
    """The interpreter, libraries, drivers and machine a run was started with."""

    python: str | None = None
    torch: str | None = None
    # The CUDA toolkit torch was built with (None: a CPU-only build).
    cuda: str | None = None
    gpu_driver: str | None = None
    os: str | None = None
    hardware: Hardware = Field(default_factory=Hardware)


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _nvml() -> tuple[str | None, list[str]]:
    """(driver version, GPU names) from NVML, or (None, []) where NVML cannot be loaded."""
    try:
        import pynvml  # deferred: only a run's start asks, and most hosts load no NVML

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001  (NVMLError_LibraryNotFound, a driver mismatch, ...)
        return None, []
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        names = [pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
                 for i in range(pynvml.nvmlDeviceGetCount())]
        # Older bindings return bytes.
        decode = (lambda v: v.decode() if isinstance(v, bytes) else str(v))  # noqa: E731
        return decode(driver), [decode(n) for n in names]
    except Exception:  # noqa: BLE001  (NVML answered init but not the queries)
        return None, []
    finally:
        pynvml.nvmlShutdown()


def _torch() -> tuple[str | None, str | None]:
    try:
        # Deferred: a run's start has torch loaded already; nothing else calls this.
        import torch
    except ImportError:
        return None, None
    return str(torch.__version__), torch.version.cuda


def runtime() -> Runtime:
    """What this process runs on: Python, torch and its CUDA, the GPU driver, OS, hardware.

    Not cached: a long-running service (the monitor) starts runs for weeks, across driver
    upgrades. Every part that cannot be read is None, never an error.
    """
    torch_version, cuda = _torch()
    driver, gpus = _nvml()
    return Runtime(
        python=f"{platform.python_implementation()} {platform.python_version()}",
        torch=torch_version, cuda=cuda, gpu_driver=driver, os=platform.platform(),
        hardware=Hardware(cpu=_cpu_model(), cores=os.cpu_count(), memory_bytes=_memory_bytes(),
                          gpus=gpus),
    )
