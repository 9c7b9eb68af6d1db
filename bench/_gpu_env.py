"""What `bench/gpu_check.py` needs to know about the machine, and how it measures on it.

probe() -> dict                  mode ("gpu" or "cpu"), why, GPU model, driver, library versions
Timer(xp)                        wall seconds of a block, the device synchronised around it
NvmlTrace(every, phase)          per-GPU utilisation, memory, power and energy while a block runs
build_native_walk(root) -> str   build kernels' compiled merge walk in place when it is missing

Only the standard library is imported at the top: the check runs on a GPU machine that has
torch, CuPy, NVML, NumPy, SciPy and pyarrow but neither Ray nor the appliance's database stack,
and on a CPU host where CuPy and a working NVML are absent. Each of those is imported where it
is used, and its absence is an answer, not an error.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path
from typing import Any


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # absent, or a CUDA library failing to load
        return None
    return str(getattr(mod, "__version__", "?"))


def _nvml_devices() -> tuple[list[dict], str | None, str | None]:
    """(one dict per GPU, driver version, why NVML gave nothing) from NVML."""
    try:
        import pynvml  # deferred: only hosts with an NVIDIA driver answer
    except ImportError:
        return [], None, "pynvml (nvidia-ml-py) is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], None, f"NVML does not answer ({exc})"
    try:
        driver = pynvml.nvmlSystemGetDriverVersion()
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            devices.append({
                "index": i,
                "name": _text(pynvml.nvmlDeviceGetName(handle)),
                "memory_mib": pynvml.nvmlDeviceGetMemoryInfo(handle).total / 2**20,
            })
        return devices, _text(driver), None
    finally:
        pynvml.nvmlShutdown()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def probe(force_cpu: bool = False) -> dict[str, Any]:
    """The machine, and whether the check runs in GPU mode here.

    GPU mode needs torch to see a CUDA device (the training and inference sections run on it);
    CuPy's absence on such a host fails the drift section, and says so, rather than the mode.

    Args:
        force_cpu: CPU mode even where a GPU is usable (default False).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": _cpu_name(), "cores": cores, "python": platform.python_version(),
        "numpy": _version("numpy"), "scipy": _version("scipy"), "pyarrow": _version("pyarrow"),
        "torch": _version("torch"), "cupy": None, "cuda": None, "gpus": [], "driver": None,
    }
    devices, driver, nvml_why = _nvml_devices()
    info.update(gpus=devices, driver=driver, nvml=nvml_why or "ok")
    why = None
    try:
        import torch

        if not torch.cuda.is_available():
            why = "torch sees no CUDA device"
        else:
            info["cuda"] = torch.version.cuda
    except Exception as exc:  # torch missing or broken
        why = f"torch is not usable ({type(exc).__name__}: {exc})"
    if why is None:
        info["cupy"] = _version("cupy")
    if why is not None:
        why = f"no GPU found: {why}"
    elif force_cpu:
        why = "a GPU is here, but CPU mode was asked for (--cpu or --tiny)"
    info["mode"] = "cpu" if why else "gpu"
    info["no_gpu_reason"] = why
    return info


def cupy_or_none():
    """CuPy when it imports and sees a device, else None."""
    try:
        import cupy

        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # not installed, no driver, no device
        return None


class Timer:
    """Wall seconds of a `with` block; on CuPy the device is synchronised before and after,
    so the block's queued kernels are inside the figure (device work is asynchronous)."""

    def __init__(self, xp: Any = None) -> None:
        self._sync = getattr(getattr(xp, "cuda", None), "runtime", None)
        self.seconds = float("nan")

    def _wait(self) -> None:
        if self._sync is not None:
            self._sync.deviceSynchronize()

    def __enter__(self) -> Timer:
        self._wait()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._wait()
        self.seconds = time.perf_counter() - self._t0


def timed(fn: Any, *, xp: Any, repeats: int, warmup: int = 1,
          deadline: float | None = None) -> list[float]:
    """Seconds of each of `repeats` calls of `fn` after `warmup` untimed ones; stops early
    (keeping at least one timing) once `deadline` (time.monotonic) has passed."""
    for _ in range(warmup):
        with Timer(xp):
            fn()
    times = []
    for _ in range(repeats):
        with Timer(xp) as t:
            fn()
        times.append(t.seconds)
        if deadline is not None and time.monotonic() > deadline:
            break
    return times


def median(values: list[float]) -> float:
    """The median of `values` (NaN when empty)."""
    if not values:
        return float("nan")
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


class NvmlTrace:
    """Every GPU's utilisation, memory in use, power draw and energy counter, sampled from NVML
    every `every` seconds while a `with` block runs.

    NVML's utilisation is the share of its own sample period (1/6 s to 1 s, by device) during
    which a kernel ran; the energy counter is millijoules since the driver loaded (None where the
    device has none). `records` are the samples, one dict per GPU per tick, each carrying
    `phase` so that several blocks can share one trace file. Without NVML, `error` says why and
    `records` stays empty.

    Args:
        every: seconds between ticks (default 0.1).
        phase: a label stored in every record (default "").
        origin: the clock reading that is t = 0 in the records (default: the block's start),
            so that consecutive blocks share one time axis.
        clock: monotonic clock, injectable for tests (default time.monotonic).
    """

    def __init__(self, every: float = 0.1, phase: str = "", origin: float | None = None,
                 clock: Any = time.monotonic) -> None:
        self.every, self.phase, self._origin, self._clock = every, phase, origin, clock
        self.records: list[dict[str, Any]] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> NvmlTrace:
        try:
            import pynvml  # deferred: see the module docstring

            pynvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError: no trace on this host
            self.error = f"{type(exc).__name__}: {exc}"
            return self
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i)
                         for i in range(pynvml.nvmlDeviceGetCount())]
        self._t0 = self._clock() if self._origin is None else self._origin
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True, name="nvml-trace")
        self._thread.start()
        return self

    def _read(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except self._nvml.NVMLError:  # not supported on this device
            return None

    def _sample(self) -> None:
        nvml, t = self._nvml, round(self._clock() - self._t0, 4)
        for i, handle in enumerate(self._handles):
            util = self._read(nvml.nvmlDeviceGetUtilizationRates, handle)
            mem = self._read(nvml.nvmlDeviceGetMemoryInfo, handle)
            power = self._read(nvml.nvmlDeviceGetPowerUsage, handle)
            energy = self._read(nvml.nvmlDeviceGetTotalEnergyConsumption, handle)
            self.records.append({
                "t": t, "phase": self.phase, "gpu": i,
                "util_gpu": None if util is None else int(util.gpu),
                "util_memory": None if util is None else int(util.memory),
                "memory_used_mib": None if mem is None else round(mem.used / 2**20, 1),
                "power_w": None if power is None else power / 1000.0,
                "energy_mj": None if energy is None else int(energy),
            })

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def __exit__(self, *exc: Any) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._sample()
        self._nvml.nvmlShutdown()

    def summary(self, gpu: int = 0) -> dict[str, Any]:
        """Mean and max utilisation, peak memory, mean power and energy used, of one GPU."""
        rows = [r for r in self.records if r["gpu"] == gpu]
        util = [r["util_gpu"] for r in rows if r["util_gpu"] is not None]
        busy = [i for i, u in enumerate(util) if u > 0]
        steady = util[busy[0]: busy[-1] + 1] if busy else []
        power = [r["power_w"] for r in rows if r["power_w"] is not None]
        energy = [r["energy_mj"] for r in rows if r["energy_mj"] is not None]
        mem = [r["memory_used_mib"] for r in rows if r["memory_used_mib"] is not None]
        return {
            "samples": len(rows),
            "seconds": rows[-1]["t"] - rows[0]["t"] if rows else 0.0,
            "util_mean": sum(util) / len(util) if util else None,
            "util_max": max(util) if util else None,
            # From the first busy sample to the last: start-up and tear-down left out.
            "util_steady_mean": sum(steady) / len(steady) if steady else None,
            "memory_peak_mib": max(mem) if mem else None,
            "power_mean_w": sum(power) / len(power) if power else None,
            "energy_j": (energy[-1] - energy[0]) / 1000.0 if len(energy) >= 2 else None,
        }


def build_native_walk(root: Path) -> str:
    """Build `kernels/_sorted_merge` in place when it is missing; say what happened.

    A source tree that was never pip-installed (the GPU machine's copy) has no compiled merge
    walk, and the CPU engine would fall back to its NumPy walk: slower, so the GPU's speed-up
    over it would be flattered. Built with the flags pyproject.toml gives it.
    """
    import importlib.util
    import sys
    import tempfile

    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    if importlib.util.find_spec("kernels._sorted_merge") is not None:
        return "present"
    try:
        from setuptools import Distribution, Extension
        from setuptools.command.build_ext import build_ext
    except ImportError as exc:
        return f"not built: {exc}"
    ext = Extension("kernels._sorted_merge", [str(root / "kernels" / "_sorted_merge.c")],
                    extra_compile_args=["-O3", "-ffp-contract=off"])
    cwd = os.getcwd()
    try:
        os.chdir(root)
        with tempfile.TemporaryDirectory(prefix="gpu-check-build-") as tmp:
            cmd = build_ext(Distribution({"ext_modules": [ext]}))
            cmd.inplace, cmd.build_temp = True, tmp
            cmd.ensure_finalized()
            cmd.run()
    except (Exception, SystemExit) as exc:  # distutils' errors on a compiler failure
        return f"not built: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        os.chdir(cwd)
    return "built"
