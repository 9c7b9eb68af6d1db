"""The local Ray head's processes, found by pid, and how to stop them; no Ray import.

`ray start --head` leaves a dozen processes behind that share no process group of their own
(they stay in the group of whoever ran ``ray start``, which may be a test session or a shell),
so a signal cannot be aimed at the group. They are found by what names them instead, in
`/proc`, among the current user's processes only:

    gcs_server      ``--gcs_server_port=P``
    raylet, monitor, log monitor, dashboard, client server
                    ``--gcs-address=HOST:P`` or ``--address=HOST:P``
    agents, workers (Serve's controller, proxy, replicas)
                    rename themselves (``ray::ServeReplica:...``), so: descendants of the
                    above, or a ``RAY_RAYLET_PID`` naming one of their raylets

``HOST`` is the head's node IP, which Ray may choose itself (a non-loopback interface even
when started with ``--node-ip-address=127.0.0.1``); any address of this machine is accepted,
never another machine's, so a worker of some other cluster whose GCS happens to use the same
port is left alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
import re
import signal
import socket
import time
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path

from appliance.errors import ConflictError

ADDRESS_FILE = "ray_head_address"
_GCS_PORT_RE = re.compile(r"^--gcs_server_port=(\d+)$")
_GCS_ADDRESS_RE = re.compile(r"^-{1,2}(?:gcs[-_]address|address)=(.+):(\d+)$")
_RAYLET_ENV = b"RAY_RAYLET_PID="
# After SIGKILL, how long to wait for the kernel to take the processes away.
_KILL_WAIT_S = 5.0
_POLL_S = 0.1


def address_file(home: Path) -> Path:
    """Where the local head's address is recorded, under the appliance's `home`."""
    return Path(home) / ADDRESS_FILE


def recorded_address(home: Path) -> str | None:
    """The local head's ``host:port`` as `start_head` recorded it, or None."""
    try:
        text = address_file(home).read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def check_local(ray_address: str | None) -> None:
    """Refuse to act on a Ray cluster the appliance joins rather than starts.

    Raises:
        ConflictError: `ray_address` (the configuration's ``ray_address``) is set.
    """
    if ray_address:
        raise ConflictError(
            f"the appliance uses the Ray cluster at {ray_address!r} (ray_address or "
            "RAY_ADDRESS), which it joins but does not own; `appliance down` only stops the "
            "local head `appliance deploy` starts when none is set: stop that cluster with "
            "its own tooling"
        )


def reachable(address: str, timeout_s: float = 1.0) -> bool:
    """Whether something accepts TCP connections at `address` (``host:port``)."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return True
    except (OSError, ValueError):
        return False


@cache
def _is_local_host(host: str) -> bool:
    # Only an address of one of this machine's interfaces can be bound to.
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as s:
            s.bind((host.strip("[]"), 0))
        return True
    except (OSError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class Proc:
    """One process as /proc showed it when found.

    `start` (clock ticks after boot) tells this process from a later one given the same pid.
    """

    pid: int
    ppid: int
    start: int
    argv: tuple[str, ...]


def _stat(proc: Path, pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time, state) of `pid`, or None when it is gone."""
    try:
        raw = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses; the fields follow its last ")".
    fields = raw[raw.rfind(")") + 2:].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _own_processes(proc: Path) -> Iterable[Proc]:
    uid = os.getuid()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        stat = _stat(proc, int(entry.name))
        if stat is None or stat[2] == "Z":
            continue
        yield Proc(int(entry.name), stat[0], stat[1],
                   tuple(a.decode(errors="replace") for a in argv if a))


def _names_gcs(argv: tuple[str, ...], port: int) -> bool:
    if not argv:
        return False
    if Path(argv[0]).name == "gcs_server":
        return any((m := _GCS_PORT_RE.match(a)) and int(m[1]) == port for a in argv)
    # A Ray program: a binary or script from the ray package, or a module run from it.
    if not any("/ray/" in a or a.startswith("ray.") for a in argv[:3]):
        return False
    for arg in argv:
        m = _GCS_ADDRESS_RE.match(arg)
        if m and int(m[2]) == port and _is_local_host(m[1]):
            return True
    return False


def _raylet_pid(proc: Path, pid: int) -> int | None:
    try:
        env = (proc / str(pid) / "environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    for var in env.split(b"\0"):
        if var.startswith(_RAYLET_ENV):
            value = var[len(_RAYLET_ENV):]
            return int(value) if value.isdigit() else None
    return None


def _ancestors(pid: int, parents: dict[int, int]) -> set[int]:
    found = set()
    while pid in parents and pid not in found:
        found.add(pid)
        pid = parents[pid]
    return found


def head_processes(address: str, *, proc: Path = Path("/proc")) -> list[Proc]:
    """The current user's processes of the Ray instance whose GCS listens at `address`.

    Args:
        address: the GCS's ``host:port``, as recorded by `start_head`.
        proc: the proc filesystem to read (default ``/proc``).

    The calling process and its ancestors are never included.
    """
    port = int(address.rpartition(":")[2])
    procs = {p.pid: p for p in _own_processes(proc)}
    parents = {p.pid: p.ppid for p in procs.values()}
    found = {pid for pid, p in procs.items() if _names_gcs(p.argv, port)}
    raylets = {pid for pid in found if Path(procs[pid].argv[0]).name == "raylet"}
    if raylets:
        found |= {pid for pid in procs if pid not in found and _raylet_pid(proc, pid) in raylets}
    # Descendants: agents and workers renamed themselves; a replica may have started helpers.
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    todo = list(found)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    found -= _ancestors(os.getpid(), parents)
    return sorted((procs[pid] for pid in found), key=lambda p: p.pid)


@dataclasses.dataclass(frozen=True)
class Listener:
    """A TCP socket in the LISTEN state, and a process that holds it."""

    pid: int
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        address = ipaddress.ip_address(self.host)
        mapped = getattr(address, "ipv4_mapped", None)
        return (mapped or address).is_loopback


def _proc_net_host(hex_host: str) -> str:
    raw = bytes.fromhex(hex_host)
    # /proc/net/tcp{,6} print each 32-bit word of the address in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listening(pids: Iterable[int], *, proc: Path = Path("/proc")) -> list[Listener]:
    """The TCP sockets that processes `pids` listen on (IPv4 and IPv6), by pid and port."""
    owner: dict[str, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError):  # gone, or not ours to read
            for fd in (proc / str(pid) / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        owner[target[8:-1]] = pid
    found = set()
    for table in ("tcp", "tcp6"):
        with contextlib.suppress(OSError):
            for line in (proc / "net" / table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == "0A" and fields[9] in owner:
                    host, port = fields[1].split(":")
                    found.add(Listener(owner[fields[9]], _proc_net_host(host), int(port, 16)))
    return sorted(found, key=lambda s: (s.pid, s.port, s.host))


def alive(p: Proc, *, proc: Path = Path("/proc")) -> bool:
    """Whether `p` still runs (a zombie does not; a new process under its pid is not `p`)."""
    stat = _stat(proc, p.pid)
    return stat is not None and stat[1] == p.start and stat[2] != "Z"


@dataclasses.dataclass(frozen=True)
class Terminated:
    """What `terminate` did: every pid signalled, those that needed SIGKILL, any left."""

    pids: list[int]
    killed: list[int]
    left: list[int]


def _stage(p: Proc) -> int:
    # `ray stop`'s order. The raylet goes first: with its GCS up it exits at once, and its
    # agents and workers follow it. Sent SIGTERM together, the GCS and the autoscaler's
    # monitor were seen to hang past 15 s (the monitor reports its own death to the GCS,
    # which is shutting down) and the raylet to take 10 s.
    name = Path(p.argv[0]).name if p.argv else ""
    return {"raylet": 0, "gcs_server": 2}.get(name, 1)


def _signal(procs: Iterable[Proc], sig: signal.Signals, proc: Path) -> None:
    for p in procs:
        if alive(p, proc=proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, sig)


def _wait_gone(procs: list[Proc], deadline: float, proc: Path,
               clock: Callable[[], float], sleep: Callable[[float], None]) -> list[Proc]:
    while True:
        procs = [p for p in procs if alive(p, proc=proc)]
        if not procs or clock() >= deadline:
            return procs
        sleep(_POLL_S)


def terminate(procs: list[Proc], *, grace_s: float = 15.0, proc: Path = Path("/proc"),
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> Terminated:
    """SIGTERM `procs` in `ray stop`'s order, then SIGKILL whatever still runs after `grace_s`.

    Raylets first, then everything else, then the GCS; each stage is waited for (up to its
    share of what is left of `grace_s`) before the next is signalled.

    Args:
        procs: the processes to stop (from `head_processes`).
        grace_s: seconds, in all, to wait after SIGTERM before SIGKILL (default 15).
        proc: the proc filesystem to read (default ``/proc``).
        clock: monotonic seconds (default `time.monotonic`).
        sleep: how to wait between checks (default `time.sleep`).
    """
    deadline = clock() + grace_s
    stubborn: list[Proc] = []
    for stage in range(3):
        batch = [p for p in procs if _stage(p) == stage]
        _signal(batch, signal.SIGTERM, proc)
        share = (deadline - clock()) / (3 - stage)
        stubborn += _wait_gone(batch, clock() + share, proc, clock, sleep)
    stubborn = _wait_gone(stubborn, deadline, proc, clock, sleep)
    _signal(stubborn, signal.SIGKILL, proc)
    left = _wait_gone(stubborn, clock() + _KILL_WAIT_S, proc, clock, sleep)
    return Terminated(pids=[p.pid for p in procs], killed=[p.pid for p in stubborn],
                      left=[p.pid for p in left])
