"""An appliance home for the tests of the registry and governance commands.

A migrated SQLite store (copied from the session's template), one user of each role with a
token of their own, and models built through the library (`appliance.registry`,
`appliance.governance`), never through Ray. `Home.invoke` runs a command in-process as one of
the users, with nothing of the test session's environment leaking in; `document` and `refused`
check what a command printed or why it stopped.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
from click.testing import Result
from pydantic import TypeAdapter
from sqlmodel import Session
from typer.models import OptionInfo
from typer.testing import CliRunner

from appliance.artifacts import ArtifactStore
from appliance.cli._json_fields import record_fields
from appliance.cli.main import app
from appliance.config import load_config
from appliance.errors import exit_code_for
from appliance.governance import audit
from appliance.governance.users import create_user, get_user, issue_token
from appliance.registry import datasets, models
from appliance.store import dispose_all, session_scope
from appliance.store.models import ModelVersion, Run, User

# Who lives in every home: name -> role.
PEOPLE = {"admin": "admin", "ops": "operator", "risk": "approver", "risk2": "approver",
          "val": "viewer"}
# What a command must not see of the test session: another store, config, token or Ray.
_CLEARED = ("APPLIANCE_DB_URL", "APPLIANCE_ARTIFACTS", "APPLIANCE_CONFIG", "APPLIANCE_TOKEN",
            "APPLIANCE_REQUIRE_TOKEN_FOR_READS", "APPLIANCE_ALERT_WEBHOOK", "RAY_ADDRESS")


class Home:
    """A home under `root` whose store starts as a copy of `template` (a migrated SQLite
    file); `config` is written as its appliance.toml when given."""

    def __init__(self, root: Path, template: Path, config: str | None = None) -> None:
        self.root = root
        if config is not None:
            (root / "appliance.toml").write_text(config)
        shutil.copyfile(template, root / "appliance.db")
        self.cfg = load_config({"APPLIANCE_HOME": str(root)})
        self.url = self.cfg.db_url
        self.store = ArtifactStore(self.cfg.artifacts)
        self.tokens: dict[str, str] = {}
        # What a test file's fixture built there, by the name its tests use (ids, numbers).
        self.ids: dict[str, Any] = {}
        with self.session() as s:
            for name, role in PEOPLE.items():
                create_user(s, name, role, actor="admin", team="credit")
                self.tokens[name] = issue_token(s, name, "cli", actor="admin")

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session on this home's store, its audit events signed with this home's key."""
        try:
            with audit.configured(self.cfg), session_scope(self.url) as s:
                yield s
        finally:
            dispose_all()

    @staticmethod
    def user(s: Session, name: str) -> User:
        return get_user(s, name)

    def register(self, s: Session, model: str = "credit", *, seed: int = 1,
                 spec: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
                 accuracy: float = 0.9, risk_tier: str | None = None,
                 runtime: dict[str, Any] | None = None) -> tuple[Run, ModelVersion]:
        """The next version of `model` (owned by "ops" of team credit), trained by "ops" on
        dataset "loans" in a finished run of `seed`, `spec` and `params`."""
        ds = datasets.add_table(s, self.store, pa.table({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}),
                                "loans", actor="ops")
        models.ensure_model(s, model, owner="ops", team="credit", risk_tier=risk_tier)
        run = models.start_run(s, model=model, dataset=ds, spec=spec or {}, params=params or {},
                               seed=seed, actor="ops", runtime=runtime)
        models.finish_run(s, run, metrics={"accuracy": accuracy}, device="cpu")
        mv = models.register_version(
            s, run=run, digest=f"{seed:064x}", profile_digest=None,
            metrics={"accuracy": accuracy, "auc": accuracy}, features=["x"], categorical=[],
            label="y", actor="ops")
        return run, mv

    def invoke(self, *args: Any, who: str | None = "admin", **env_vars: str) -> Result:
        """`appliance ARGS` in-process as user `who` (None: with no token at all), with
        `env_vars` (e.g. APPLIANCE_ALERT_WEBHOOK) set for it."""
        env: dict[str, str | None] = dict.fromkeys(_CLEARED)
        env["APPLIANCE_HOME"] = str(self.root)
        if who is not None:
            env["APPLIANCE_TOKEN"] = self.tokens[who]
        env.update(env_vars)
        try:
            return CliRunner().invoke(app, [str(a) for a in args], env=env)
        finally:
            dispose_all()


def declared(command) -> Any:
    """The record `command` (a command function) declares with its ``--json`` option."""
    for param in inspect.signature(command).parameters.values():
        option = param.default
        if isinstance(option, OptionInfo) and "--json" in (option.param_decls or ()):
            return option.callback.json_record
    raise AssertionError(f"{command.__name__} has no --json option")


def document(res: Result, command) -> Any:
    """The JSON document a successful run of `command` printed: one document on stdout that
    validates against the record it declares and has exactly that record's keys."""
    assert res.exit_code == 0, (res.output, res.exception)
    record = declared(command)
    TypeAdapter(record).validate_json(res.stdout)
    doc = json.loads(res.stdout)
    for item in doc if isinstance(doc, list) else [doc]:
        assert set(item) == set(record_fields(record)), sorted(item)
    return doc


def refused(res: Result, kind: type[Exception], needle: str) -> str:
    """The message of a run the appliance refused with `kind`: exit 2 (as
    `appliance.cli.main.run` maps it), one line naming `needle`, nothing on stdout."""
    assert isinstance(res.exception, kind), (res.output, res.exception)
    assert exit_code_for(res.exception) == 2
    message = str(res.exception)
    assert "\n" not in message and needle in message, message
    assert res.stdout == ""
    return message


def usage_error(res: Result, needle: str) -> None:
    """A command line the parser refused (Click's usage error): exit 2, naming `needle`."""
    assert res.exit_code == 2, (res.output, res.exception)
    assert needle in res.stderr, res.stderr
    assert res.stdout == ""


def table(res: Result) -> list[list[str]]:
    """The rows of the plain table a command printed on stdout, its header first."""
    assert res.exit_code == 0, (res.output, res.exception)
    return [line.split() for line in res.stdout.splitlines() if line.strip()]
