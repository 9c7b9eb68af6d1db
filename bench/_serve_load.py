"""Load and probes for bench/serve.py: closed-loop HTTP clients, a timed call loop, NVML samples.

http_cell(name, url, body, headers, ...) -> Cell     C httpx clients, each sending its next
                                                      request when its last one is answered
paired_cells(make_probes, ...) -> {name: Cell}       one caller taking turns among probes,
                                                      so that all of them meet the same load
http_probe(client, method, url, body, headers)       one HTTP request, as a probe
CpuMeter(groups)                                     CPU seconds of groups of processes
process_tree(root) -> {pid: command line}            a process and its descendants (Linux)
NvmlSampler()                                        GPU utilisation while a block runs
gpu_unavailable() -> str | None                      why the GPU part cannot run, or None

Nothing here imports Ray, so the bench decides when Ray is first imported.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np


@dataclasses.dataclass
class Cell:
    """What one measured cell gave.

    Args:
        name: the cell's label in the report.
        concurrency: requests in flight at once (clients of a closed loop).
        latencies: seconds of each answered request.
        seconds: wall-clock seconds of the measured windows, summed over rounds.
        errors: requests not answered with 200, or that failed in transport.
        rows: rows per request (default 1).
        first_error: the first error seen, for the report (default empty).
        cpu: CPU seconds each group of processes used in the measured windows (default none:
            not metered).
    """

    name: str
    concurrency: int
    latencies: list[float]
    seconds: float
    errors: int
    rows: int = 1
    first_error: str = ""
    cpu: dict[str, float] = dataclasses.field(default_factory=dict)

    def merge(self, other: Cell) -> Cell:
        """This cell and another round of it, as one."""
        cpu = {k: self.cpu.get(k, 0.0) + other.cpu.get(k, 0.0) for k in {*self.cpu, *other.cpu}}
        return dataclasses.replace(
            self,
            latencies=self.latencies + other.latencies,
            seconds=self.seconds + other.seconds,
            errors=self.errors + other.errors,
            first_error=self.first_error or other.first_error,
            cpu=cpu,
        )

    def cpu_ms_per_request(self, group: str | None = None) -> float:
        """CPU milliseconds per answered request, of one group or (None) of all."""
        used = sum(self.cpu.values()) if group is None else self.cpu.get(group, 0.0)
        return used / self.requests * 1e3 if self.requests and self.cpu else float("nan")

    @property
    def requests(self) -> int:
        return len(self.latencies)

    def percentile_ms(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies), q)) * 1e3

    @property
    def p50_ms(self) -> float:
        return self.percentile_ms(50)

    @property
    def p99_ms(self) -> float:
        return self.percentile_ms(99)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")

    @property
    def rows_per_s(self) -> float:
        return self.rps * self.rows


async def _closed_loop(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
) -> tuple[list[float], float, int, str]:
    """(latencies, elapsed seconds, errors, first error) of `concurrency` clients for `seconds`."""
    latencies: list[float] = []
    errors = 0
    first_error = ""
    start = time.perf_counter()
    stop = start + seconds

    async def client_loop() -> None:
        nonlocal errors, first_error
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                resp = await client.request(method, url, content=body, headers=headers)
                failure = "" if resp.status_code == 200 else (
                    f"HTTP {resp.status_code}: {resp.text[:200]}"
                )
            except httpx.HTTPError as exc:
                failure = f"{type(exc).__name__}: {exc}"
            if failure:
                errors += 1
                first_error = first_error or failure
            else:
                latencies.append(time.perf_counter() - t0)

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    # Until the last answer, not the deadline: requests in flight at the deadline count.
    return latencies, time.perf_counter() - start, errors, first_error


def http_cell(
    name: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    concurrency: int,
    seconds: float,
    warmup_s: float,
    rows: int = 1,
    method: str = "POST",
    meter: Callable[[], dict[str, float]] | None = None,
) -> Cell:
    """Measure `concurrency` keep-alive clients sending the same request for `seconds`.

    One `httpx.AsyncClient` with a connection per client; `warmup_s` of the same load first
    (connections opened, replicas warm), not counted.

    Args:
        name: the cell's label.
        url: where to send the request.
        body: the request body, the same bytes every time (None for a GET).
        headers: the request headers.
        concurrency: clients, each with one request in flight at a time.
        seconds: how long to measure.
        warmup_s: how long to load beforehand, unmeasured.
        rows: rows per request, for rows/s (default 1).
        method: the HTTP method (default "POST").
        meter: CPU seconds used so far by group, read before and after the measured window
            (default None: not metered).
    """

    async def run() -> Cell:
        limits = httpx.Limits(max_connections=concurrency,
                              max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
            if warmup_s > 0:
                await _closed_loop(client, method, url, body, headers, concurrency, warmup_s)
            before = meter() if meter else {}
            lat, elapsed, errors, first = await _closed_loop(
                client, method, url, body, headers, concurrency, seconds
            )
            after = meter() if meter else {}
        cpu = {k: after[k] - before.get(k, 0.0) for k in after}
        return Cell(name, concurrency, lat, elapsed, errors, rows, first, cpu)

    return asyncio.run(run())


Probe = Callable[[], Awaitable[str]]


def http_probe(client: httpx.AsyncClient, method: str, url: str, body: bytes | None,
               headers: dict[str, str]) -> Probe:
    """One request as a probe: answers "" on a 200, else what went wrong."""

    async def probe() -> str:
        try:
            resp = await client.request(method, url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        return "" if resp.status_code == 200 else f"HTTP {resp.status_code}: {resp.text[:200]}"

    return probe


def paired_cells(
    make_probes: Callable[[httpx.AsyncClient], dict[str, Probe]],
    *,
    seconds: float,
    warmup_s: float,
) -> dict[str, Cell]:
    """Latency of each probe at one request in flight, the probes taking turns.

    On a shared machine the load moves from one second to the next; probes measured one after
    the other would each meet a different load, and the difference of their medians would be
    mostly that. Taking turns request by request, every probe meets the same load. The cells'
    ``seconds`` is the whole run's, so their req/s mean nothing; only latencies do.

    Args:
        make_probes: given the shared keep-alive client, probe name -> probe (an async call
            that answers "" when it succeeded, else what went wrong).
        seconds: how long to measure.
        warmup_s: how long to take turns beforehand, unmeasured.
    """

    async def turns(probes: dict[str, Probe], duration: float) -> dict[str, Cell]:
        cells = {name: Cell(name, 1, [], 0.0, 0) for name in probes}
        start = time.perf_counter()
        stop = start + duration
        while time.perf_counter() < stop:
            for name, probe in probes.items():
                t0 = time.perf_counter()
                failure = await probe()
                cell = cells[name]
                if failure:
                    cell.errors += 1
                    cell.first_error = cell.first_error or failure
                else:
                    cell.latencies.append(time.perf_counter() - t0)
        for cell in cells.values():
            cell.seconds = time.perf_counter() - start
        return cells

    async def run() -> dict[str, Cell]:
        async with httpx.AsyncClient(timeout=60.0) as client:
            probes = make_probes(client)
            if warmup_s > 0:
                await turns(probes, warmup_s)
            return await turns(probes, seconds)

    return asyncio.run(run())


def process_tree(root: int) -> dict[int, str]:
    """`root` and every process descended from it, each with its command line (Ray's workers
    set theirs to their actor, e.g. ``ray::ServeReplica:oip:OipIngress``); empty off Linux."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        pid = int(entry.name)
        # The command name in parentheses may hold spaces; the parent pid follows the state.
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        titles[pid] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    tree, grew = {root}, True
    while grew:
        found = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= found
        grew = bool(found)
    return {pid: titles.get(pid, "") for pid in tree}


def _cpu_seconds(pid: int, tick: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0  # ended: its CPU is no longer counted anywhere
    return (int(fields[11]) + int(fields[12])) / tick  # utime + stime, in clock ticks


class CpuMeter:
    """CPU seconds (user + system, all threads) used so far by named groups of processes.

    Args:
        groups: group name -> the pids it sums.
    """

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self._tick = os.sysconf("SC_CLK_TCK")

    def __call__(self) -> dict[str, float]:
        return {name: sum(_cpu_seconds(pid, self._tick) for pid in pids)
                for name, pids in self.groups.items()}


def gpu_unavailable() -> str | None:
    """Why the GPU part cannot run here (no CUDA device for torch, no NVML), or None."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "no GPU on this host"
    try:
        import pynvml
    except ImportError:
        return "a GPU, but pynvml (nvidia-ml-py) is not installed"
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except pynvml.NVMLError as exc:
        return f"a GPU, but NVML does not answer ({exc})"
    return None


class NvmlSampler:
    """Each GPU's utilisation and memory in use, sampled from NVML while a block runs.

    NVML's utilisation is the share of its own sample period (1/6 s to 1 s, by device) during
    which a kernel ran on the device: busy, not how much of the device was busy.

    Args:
        every_s: seconds between samples (default 0.1).
        clock: the clock the samples are timed by (default `time.monotonic`).
    """

    def __init__(self, every_s: float = 0.1, clock: Callable[[], float] = time.monotonic):
        self.every_s = every_s
        self._clock = clock
        self._stop = threading.Event()
        self.samples: dict[int, list[tuple[float, int, int]]] = {}
        self.names: dict[int, str] = {}

    def __enter__(self) -> NvmlSampler:
        import pynvml  # Deferred: only hosts with an NVIDIA driver have it working.

        self._nvml = pynvml
        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        for i, handle in enumerate(self._handles):
            name = pynvml.nvmlDeviceGetName(handle)
            self.names[i] = name.decode() if isinstance(name, bytes) else str(name)
            self.samples[i] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        nvml = self._nvml
        while not self._stop.wait(self.every_s):
            now = self._clock()
            for i, handle in enumerate(self._handles):
                util = nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                used = nvml.nvmlDeviceGetMemoryInfo(handle).used
                self.samples[i].append((now, int(util), int(used)))

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._nvml.nvmlShutdown()

    def busiest(self) -> dict:
        """The most utilised device's ``index``, ``name``, ``mean``/``max`` utilisation (%),
        ``memory_mib`` (peak in use) and ``samples``; empty when nothing was sampled."""
        best: dict = {}
        for i, rows in self.samples.items():
            if not rows:
                continue
            utils = [u for _, u, _ in rows]
            doc = {"index": i, "name": self.names[i], "mean": float(np.mean(utils)),
                   "max": max(utils), "memory_mib": max(m for _, _, m in rows) / 2**20,
                   "samples": len(rows)}
            if not best or doc["mean"] > best["mean"]:
                best = doc
        return best
