"""`appliance tune` as a subprocess on a real local Ray (the test session's, joined as a
configured cluster), sweeping the user's own training function (the custom kind): stderr says
how each trial ended, one line per trial, while stdout is the one JSON record; ASHA stops
trials early, and the best is registered with lineage naming the tuning run."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select

from appliance.artifacts import ArtifactStore
from appliance.data.synthetic import CATEGORICAL, LABEL, generate
from appliance.governance.users import create_user, issue_token
from appliance.registry import datasets
from appliance.registry.lineage import lineage
from appliance.store import dispose_all, migrate, session_scope
from appliance.store.models import ModelVersion, Run
from cluster.bundle import ModelBundle

MAX_EPOCHS = 8
# tests/custom_training.py: the subprocess imports the function from here.
_TESTS = str(Path(__file__).resolve().parents[1])


def _cli(args, env):
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def env(tmp_path_factory, ray_session):
    """A store with an admin and a dataset, made in this process (a subprocess of `appliance
    init` and one of `data add` would cost seconds each), and the command's environment."""
    home = tmp_path_factory.mktemp("tune-cli-home")
    db_url = f"sqlite:///{home}/appliance.db"
    migrate(db_url)
    with session_scope(db_url) as session:
        create_user(session, "admin", "admin", actor="admin")
        secret = issue_token(session, "admin", "tests", actor="admin")
        datasets.add_table(session, ArtifactStore(home / "artifacts"), generate(400, seed=5),
                           "credit-train", actor="admin")
    e = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    e.update(APPLIANCE_HOME=str(home), APPLIANCE_TOKEN=secret,
             RAY_ADDRESS=ray_session.get_runtime_context().gcs_address,
             PYTHONPATH=os.pathsep.join(p for p in (_TESTS, e.get("PYTHONPATH")) if p))
    yield e
    dispose_all()


def test_a_custom_sweep_shows_each_trial_on_stderr_and_its_record_on_stdout(env, tmp_path):
    spec = tmp_path / "tune.toml"
    spec.write_text(
        f'model = "net"\ndataset = "credit-train"\nlabel = "{LABEL}"\nkind = "custom"\n'
        f'function = "custom_training:train_small_net"\n'
        f'categorical = {json.dumps(CATEGORICAL)}\nseed = 5\nholdout = 0.25\n'
        # One report per epoch: the sweep counts reports as epochs.
        f'[params]\nreport_every = 1\n'
        f'[tune]\nnum_samples = 4\nmax_epochs = {MAX_EPOCHS}\nmetric = "log_loss"\n'
        # From a rate that barely moves the log loss in 8 full-batch epochs to one that does.
        f'[tune.space]\nlr = {{loguniform = [1e-4, 0.3]}}\n')
    res = _cli(["tune", str(spec), "--json"], env)
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    trials = doc["trials"]
    assert len(trials) == 4 and doc["metric"] == "log_loss"
    stopped = [t for t in trials if t.get("status") == "stopped"]
    assert stopped and doc["stopped_early"] == len(stopped), [t["status"] for t in trials]
    assert all(1 <= t["epochs"] < MAX_EPOCHS for t in stopped)

    # One line per trial on stderr, as it ended, naming its state, epoch, metric and params.
    said = {m.group(1): m for m in re.finditer(
        r"^trial (\S+): (done|stopped early|failed) at epoch (\d+)/(\d+), log_loss (\S+) "
        r"\(lr=(\S+)\)$", res.stderr, re.MULTILINE)}
    assert set(said) == {t["trial_id"] for t in trials}, res.stderr[-3000:]
    for t in trials:
        line = said[t["trial_id"]]
        assert line.group(2) == {"finished": "done", "stopped": "stopped early"}[t["status"]]
        assert (int(line.group(3)), int(line.group(4))) == (t["epochs"], MAX_EPOCHS)
        assert float(line.group(5)) == pytest.approx(t["metrics"]["log_loss"], rel=1e-3)
        assert float(line.group(6)) == pytest.approx(t["params"]["lr"], rel=1e-3)

    home = env["APPLIANCE_HOME"]
    with session_scope(f"sqlite:///{home}/appliance.db") as session:
        children = session.exec(select(Run).where(Run.parent_run_id == doc["run"])).all()
        assert {r.id for r in children if r.kind == "trial"} == {t["run"] for t in trials}
        (retrained,) = [r for r in children if r.kind == "train"]
        assert retrained.id == doc["registered"]["run"]
        assert retrained.params == {"report_every": 1, "lr": doc["best"]["params"]["lr"],
                                    "epochs": doc["best"]["epochs"]}
        record = lineage(session, f"net:{doc['registered']['version']}").model_dump()
        digest = session.exec(select(ModelVersion.digest).where(
            ModelVersion.model_name == "net")).one()
    assert record["run"]["tuning_run"] == doc["run"]
    assert ModelBundle.from_bytes(ArtifactStore(Path(home) / "artifacts").get_bytes(
        digest)).kind == "custom"
