"""The local Ray head found by pid and stopped (`cluster.head`), on real processes and sockets
of this machine, without Ray: stand-ins for a head's processes (a "gcs_server" naming its
port, scripts under a `ray/` folder naming the GCS address) are found by the address, their
listening sockets read from /proc, and `terminate` stops them in order, killing what ignores
SIGTERM. `appliance down` on a real head: tests/cli/test_down.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
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


# Stand-ins for a head's processes: a script under a `ray/` folder, so it looks like Ray's own.
_SLEEPER = textwrap.dedent("""
    import signal, subprocess, sys, time
    if "--ignore-term" in sys.argv:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "--with-child" in sys.argv:
        subprocess.Popen(["sleep", "60"])
    print("ready", flush=True)
    time.sleep(60)
""")


def test_head_processes_are_found_by_gcs_address_and_stopped(tmp_path):
    script = tmp_path / "ray" / "fake_agent.py"
    script.parent.mkdir()
    script.write_text(_SLEEPER)
    plain = tmp_path / "not_it.py"
    plain.write_text(_SLEEPER)
    port = free_port()
    here = f"--gcs-address=127.0.0.1:{port}"
    argvs = {
        "ours": [str(script), here, "--with-child"],
        "stubborn": [str(script), f"--address=127.0.0.1:{port}", "--ignore-term"],
        "other port": [str(script), f"--gcs-address=127.0.0.1:{port + 1}"],
        "other machine": [str(script), f"--gcs-address=203.0.113.7:{port}"],
        "not ray": [str(plain), here],
    }
    procs = {name: subprocess.Popen([sys.executable, *argv], stdout=subprocess.PIPE, text=True)
             for name, argv in argvs.items()}
    try:
        for proc in procs.values():
            assert proc.stdout.readline().strip() == "ready"
        found = head.head_processes(f"127.0.0.1:{port}")
        pids = {p.pid for p in found}
        assert {procs["ours"].pid, procs["stubborn"].pid} <= pids
        # The child renamed nothing but descends from one of the head's processes.
        assert any(p.argv[0] == "sleep" for p in found), [p.argv for p in found]
        assert not pids & {procs[n].pid for n in ("other port", "other machine", "not ray")}
        assert os.getpid() not in pids

        done = head.terminate(found, grace_s=1.0)
        assert done.killed == [procs["stubborn"].pid] and done.left == []
        for name, proc in procs.items():
            if name in ("ours", "stubborn"):
                assert proc.wait(timeout=10) in (-signal.SIGTERM, -signal.SIGKILL)
            else:
                assert proc.poll() is None, name
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
