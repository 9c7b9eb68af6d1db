"""`appliance deploy` and `appliance undeploy` (appliance/cli/deploy.py) up to their refusals
before Ray: an unknown model or alias, a model that is not deployed, and a `--spec` file that
is missing, unreadable, not TOML or JSON, or holds bad `[serving]` values: exit 2 with one line
naming the file and what is wrong, and Ray never imported. Deploying for real is
tests/cluster/test_serve*.py's and tests/e2e's.

No model of the store here can be served (none has the alias a command names), so a
refusal this file expects and does not get still stops at the model, never starting Ray."""

from __future__ import annotations

import pyarrow as pa
import pytest
from cli_home import invoke, make_home, refusal, run_in_one_process, use_home

from appliance.artifacts import ArtifactStore
from appliance.governance import approvals
from appliance.registry import datasets, models
from appliance.store import dispose_all, session_scope


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template):
    """Model "credit" whose version 1 is its challenger (it has no champion), and model "toy"
    with no version: nothing here can be served, whatever a command asks."""
    cfg, tokens = make_home(tmp_path_factory.mktemp("deploy-cli"), _sqlite_template)
    with session_scope(cfg.db_url) as s:
        ds = datasets.add_table(s, ArtifactStore(cfg.artifacts), pa.table({"x": [1.0], "y": [1]}),
                                "loans", actor="ops")
        models.ensure_model(s, "credit", owner="ops", team="credit")
        models.ensure_model(s, "toy", owner="ops", team="credit")
        run = models.start_run(s, model="credit", dataset=ds, spec={}, params={}, seed=1,
                               actor="ops")
        models.finish_run(s, run, metrics={"accuracy": 0.9}, device="cpu")
        v1 = models.register_version(s, run=run, digest="d" * 64, profile_digest=None,
                                     metrics={"accuracy": 0.9}, features=["x"], categorical=[],
                                     label="y", actor="ops")
        approvals.set_alias(s, "risk", v1, "challenger", None)
    dispose_all()
    return cfg, tokens


@pytest.fixture
def as_ops(home, monkeypatch):
    cfg, tokens = home
    use_home(monkeypatch, cfg, token=tokens["ops"])
    return cfg


def test_refusals_exit_2_with_one_line_and_never_import_ray(home, tmp_path):
    cfg, tokens = home
    bad = tmp_path / "serving.toml"
    bad.write_text("[serving]\nreplicas = 0\n")
    commands = [["deploy", "ghost"], ["deploy", "toy"], ["deploy", "credit", "--alias", "canary"],
                ["deploy", "toy", "--spec", str(bad)], ["undeploy", "credit"]]
    res = run_in_one_process(commands, cfg, tokens["ops"])
    assert res.stdout == "" and "Traceback" not in res.stderr, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines == [
        "error: no model named 'ghost'; list them with `appliance models list`", "exit 2",
        "error: model 'toy' has no 'champion' alias", "exit 2",
        "error: model 'credit' has no 'canary' alias", "exit 2",
        f"error: serving spec {str(bad)!r}.replicas must be >= 1 and <= 1024, got 0",
        "exit 2",
        "error: model 'credit' is not deployed", "exit 2",
        "ray imported: False",
    ], res.stderr


@pytest.mark.parametrize(("name", "content", "says"), [
    ("spec.toml", b"[serving\n", "is not valid: "),
    ("spec.json", b'{"serving": ', "is not valid: "),
    ("spec.toml", b"\xff\xfe[serving]\n", "is not a text file"),
    ("spec.toml", b"serving = 3\n", "must be a table, got 3"),
    ("spec.json", b"[1, 2]", "must be a table, got [1, 2]"),
    ("spec.toml", b"[serving]\nbatch = 4\n", "has unknown key(s) ['batch']; known: "),
    ("spec.toml", b'[serving]\nbackend = "gpu"\n', ".backend 'gpu' is not one of"),
    ("spec.toml", b"[serving]\nmax_batch_size = 64\nmax_ongoing_requests = 8\n",
     ": max_ongoing_requests 8 is below max_batch_size 64; a batch could never fill"),
    ("spec.json", b'{"max_batch_size": 0}', ".max_batch_size must be >= 1 and <= 65536, got 0"),
])
def test_a_bad_spec_is_named_with_its_file(as_ops, tmp_path, name, content, says):
    spec = tmp_path / name
    spec.write_bytes(content)
    message = refusal(invoke(["deploy", "toy", "--spec", spec]))
    assert message.startswith(f"serving spec {str(spec)!r}") and says in message, message


def test_a_spec_that_cannot_be_read_says_why(as_ops, tmp_path):
    assert refusal(invoke(["deploy", "toy", "--spec", tmp_path / "none.toml"])) == (
        f"serving spec {str(tmp_path / 'none.toml')!r} cannot be read: No such file or directory")
    assert refusal(invoke(["deploy", "toy", "--spec", tmp_path])) == (
        f"serving spec {str(tmp_path)!r} cannot be read: Is a directory")


def test_json_fields_and_names_are_checked_first(as_ops):
    assert refusal(invoke(["deploy", "ghost", "--json=nope"])).startswith(
        "--json: unknown field 'nope'; available fields: ")
    assert "model name '../x'" in refusal(invoke(["deploy", "../x"]))
    assert "alias '../x'" in refusal(invoke(["deploy", "credit", "--alias", "../x"]))
