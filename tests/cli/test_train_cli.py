"""`appliance train` as a subprocess on a real local Ray of 2 CPUs (the test session's, which
the command joins as a configured cluster): more workers than CPUs exit 2 in seconds, and a
run that fails on its worker exits 1 with the cause on one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pyarrow.csv as pacsv
import pytest
from sqlmodel import select

from appliance.data.synthetic import CATEGORICAL, generate
from appliance.store import dispose_all, session_scope
from appliance.store.models import Run


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def env(tmp_path_factory, ray_session):
    home = tmp_path_factory.mktemp("train-cli-home")
    e = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    e["APPLIANCE_HOME"] = str(home)
    e["RAY_ADDRESS"] = ray_session.get_runtime_context().gcs_address
    assert _cli(["init", "--json"], e).returncode == 0
    data = home / "credit.csv"
    pacsv.write_csv(generate(300, seed=8), str(data))
    res = _cli(["data", "add", str(data), "--name", "credit-train"], e)
    assert res.returncode == 0, res.stderr
    yield e
    dispose_all()


def _spec(tmp_path, body: str):
    path = tmp_path / "spec.toml"
    path.write_text(f'model = "credit"\ndataset = "credit-train"\n'
                    f'categorical = {json.dumps(CATEGORICAL)}\n{body}')
    return path


def test_more_workers_than_the_cluster_has_exits_2_in_seconds(env, tmp_path):
    spec = _spec(tmp_path, 'label = "default"\n[resources]\nnum_workers = 8\n')
    started = time.monotonic()
    res = _cli(["train", str(spec), "--json"], env)
    elapsed = time.monotonic() - started
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "resources.num_workers = 8 needs 8 CPUs" in lines[0]
    assert "this Ray cluster has 2 CPUs" in lines[0]
    assert res.stdout == ""
    # The command's own start-up (Python, Ray's import and join) is most of it: no wait.
    assert elapsed < 45, elapsed


def test_a_run_that_fails_on_its_worker_exits_1_with_its_cause(env, tmp_path):
    spec = _spec(tmp_path, 'label = "income"\ntask = "regression"\nseed = 4\n'
                 '[params]\nepochs = 3\nlayers = 16\nhidden = 128\nlr = 1.0\nbatch_size = 16\n'
                 '[fault_tolerance]\nmax_failures = 0\n')
    res = _cli(["train", str(spec), "--json"], env)
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: training run credit-"), lines[0]
    assert "failed: FloatingPointError: the training loss is nan" in lines[0]
    assert res.stdout == ""
    with session_scope(f"sqlite:///{env['APPLIANCE_HOME']}/appliance.db") as session:
        run = session.exec(select(Run)).one()
        assert run.status == "failed" and "FloatingPointError" in run.error
