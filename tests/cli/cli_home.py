"""An appliance home for the CLI's command tests, and the ways to run a command against it.

`make_home` copies the session's migrated SQLite template under a folder and adds one user of
each role, each with a token (no token is saved under the home, so a command acts only as the
token a test gives it). `use_home` points the CLI at a home for one test; `invoke` runs a
command in-process (fast), `run_cli` as a process of its own (for what only a real process
shows: stdout and stderr apart, the exit code and the one error line of `appliance.cli.main.run`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from appliance.cli.main import app
from appliance.config import Config, load_config
from appliance.errors import ApplianceError, exit_code_for
from appliance.governance import audit
from appliance.governance.users import create_user, issue_token
from appliance.store import dispose_all, session_scope

# Each person of a home and their role.
PEOPLE = {"admin": "admin", "ops": "operator", "risk": "approver", "val": "viewer"}


def make_home(path: Path, template: Path) -> tuple[Config, dict[str, str]]:
    """A migrated store under `path` with the users of `PEOPLE`, each with a token named
    "app"; returns the home's configuration and each user's token secret."""
    shutil.copyfile(template, path / "appliance.db")
    cfg = load_config({"APPLIANCE_HOME": str(path)})
    tokens = {}
    # Audit events are signed with the key of the home the CLI will read them in.
    with audit.configured(cfg), session_scope(cfg.db_url) as s:
        for name, role in PEOPLE.items():
            team = "credit" if name == "ops" else "platform"
            create_user(s, name, role, actor="admin", team=team)
            tokens[name] = issue_token(s, name, "app", actor="admin")
    dispose_all()
    return cfg, tokens


def use_home(monkeypatch: pytest.MonkeyPatch, cfg: Config, token: str | None = None) -> None:
    """Point in-process commands at `cfg`'s home, store and artifacts, acting with `token`
    (default None: no token at all); every other appliance setting is unset."""
    for var in [k for k in os.environ if k.startswith("APPLIANCE_")] + ["RAY_ADDRESS"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("APPLIANCE_HOME", str(cfg.home))
    monkeypatch.setenv("APPLIANCE_DB_URL", cfg.db_url)
    monkeypatch.setenv("APPLIANCE_ARTIFACTS", str(cfg.artifacts))
    if token is not None:
        monkeypatch.setenv("APPLIANCE_TOKEN", token)


def invoke(args: list[str], stdin: str | None = None) -> Result:
    """Run `appliance ARGS` in this process (after `use_home`), its engines closed after."""
    try:
        return CliRunner().invoke(app, [str(a) for a in args], input=stdin)
    finally:
        dispose_all()


def refusal(res: Result) -> str:
    """The message of the error that stopped `res`, checked to be ours, exit 2 and one line:
    what `appliance.cli.main.run` prints on stderr."""
    assert isinstance(res.exception, ApplianceError), (res.output, res.exception)
    assert exit_code_for(res.exception) == 2, res.exception
    message = str(res.exception)
    assert "\n" not in message and res.stdout == "", (message, res.stdout)
    return message


def _env(cfg: Config, token: str | None) -> dict[str, str]:
    """This environment pointed at `cfg`'s home (no other appliance setting, no RAY_ADDRESS),
    acting with `token` (None: none)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("APPLIANCE_") and k != "RAY_ADDRESS"}
    env.update(APPLIANCE_HOME=str(cfg.home), APPLIANCE_DB_URL=cfg.db_url,
               APPLIANCE_ARTIFACTS=str(cfg.artifacts))
    if token is not None:
        env["APPLIANCE_TOKEN"] = token
    return env


def run_cli(args: list[str], cfg: Config, token: str | None = None) -> subprocess.CompletedProcess:
    """Run `python -m appliance.cli ARGS` as a process of its own against `cfg`'s home."""
    return subprocess.run([sys.executable, "-m", "appliance.cli", *map(str, args)],
                          env=_env(cfg, token), capture_output=True, text=True, timeout=120)


# Runs each command line given as an argument (tab-separated words) through the real entry
# point, one after the other in one process, writing "exit N" after each to stderr, and at
# the end whether anything imported Ray.
_PROBE = """
import sys
from appliance.cli.main import run
for line in sys.argv[1:]:
    try:
        run(line.split("\\t"))
    except SystemExit as exc:
        sys.stderr.write(f"exit {exc.code}\\n")
sys.stderr.write(f"ray imported: {'ray' in sys.modules}\\n")
"""


def run_in_one_process(commands: list[list[str]], cfg: Config,
                       token: str | None = None) -> subprocess.CompletedProcess:
    """Run `commands` (each a list of arguments) through `appliance.cli.main.run` in one fresh
    process against `cfg`'s home; its stderr holds each command's error line and "exit N",
    then "ray imported: True|False"."""
    lines = ["\t".join(map(str, c)) for c in commands]
    return subprocess.run([sys.executable, "-c", _PROBE, *lines],
                          env=_env(cfg, token), capture_output=True, text=True, timeout=120)


def one_error_line(res: subprocess.CompletedProcess) -> str:
    """The single stderr line of a command that exited 2 with nothing on stdout."""
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert res.stdout == "" and "Traceback" not in res.stderr, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    return lines[0]
