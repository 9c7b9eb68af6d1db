"""The local Ray head found by pid and stopped (`cluster.head`), on real processes and sockets
of this machine, without Ray: a stand-in "gcs_server" (a real process under that name, with
a child) is found by its port, its listening sockets are read from /proc, and `terminate`
stops it in order, killing what ignores SIGTERM."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest

from appliance.errors import ConflictError
from appliance.ports import free_port
from cluster import head

IGNORE_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def test_the_recorded_address_and_a_joined_cluster(tmp_path):
    assert head.recorded_address(tmp_path) is None
    head.address_file(tmp_path).write_text("  \n")
    assert head.recorded_address(tmp_path) is None
    head.address_file(tmp_path).write_text("127.0.0.1:6380\n")
    assert head.recorded_address(tmp_path) == "127.0.0.1:6380"
    head.check_local(None)
    with pytest.raises(ConflictError, match="joins but does not own"):
        head.check_local("10.0.0.9:6379")


def test_listening_sockets_are_read_from_proc_with_their_scope():
    with socket.socket() as lo, socket.socket() as wide:
        lo.bind(("127.0.0.1", 0))
        wide.bind(("0.0.0.0", 0))
        lo.listen()
        wide.listen()
        found = {(s.host, s.port): s for s in head.listening([os.getpid()])}
        mine_lo = found[("127.0.0.1", lo.getsockname()[1])]
        mine_wide = found[("0.0.0.0", wide.getsockname()[1])]
        assert mine_lo.pid == os.getpid() and mine_lo.loopback and not mine_wide.loopback
        assert head.reachable(f"127.0.0.1:{lo.getsockname()[1]}")
    assert not head.reachable(f"127.0.0.1:{free_port()}", timeout_s=0.5)
    assert not head.reachable("no-port-here")


@pytest.fixture
def fake_head(tmp_path):
    """A process named gcs_server, naming a port, with a child that ignores SIGTERM."""
    port = free_port()
    script = tmp_path / "gcs.py"
    # Under another argv[0] the child cannot find its interpreter: it is named here.
    script.write_text(f"import subprocess, time\n"
                      f"subprocess.Popen([{sys.executable!r}, '-c', {IGNORE_TERM!r}])\n"
                      f"time.sleep(60)\n")
    gcs = subprocess.Popen(["bash", "-c", f'exec -a gcs_server "{sys.executable}" "{script}" '
                            f"--gcs_server_port={port}"])
    deadline = time.monotonic() + 10
    procs = []
    while time.monotonic() < deadline and len(procs) < 2:
        procs = head.head_processes(f"127.0.0.1:{port}")
        time.sleep(0.1)
    yield port, gcs, procs
    for p in head.head_processes(f"127.0.0.1:{port}"):
        os.kill(p.pid, 9)
    gcs.wait()


def test_a_head_is_found_by_its_port_and_stopped_in_order(fake_head):
    port, gcs, procs = fake_head
    assert len(procs) == 2 and procs[0].pid == gcs.pid
    assert procs[0].argv[0] == "gcs_server" and head.alive(procs[0])
    assert os.getpid() not in {p.pid for p in procs}
    assert head.head_processes(f"127.0.0.1:{free_port()}") == []
    done = head.terminate(procs, grace_s=1.0)
    assert sorted(done.pids) == sorted(p.pid for p in procs)
    # The child ignored SIGTERM: it was killed; the gcs_server went on SIGTERM.
    assert done.killed == [procs[1].pid] and done.left == []
    gcs.wait(timeout=5)
    assert not any(head.alive(p) for p in procs)
