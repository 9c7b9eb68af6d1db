"""Headless modules import neither Ray, Textual, CuPy nor XGBoost; `kernels` stays a leaf;
`appliance --help` imports none of the heavy libraries behind the commands.

import-linter checks the import graph statically; this checks what a fresh interpreter really
loads, which also catches imports hidden in plugins, `__init__` side effects and re-exports. Each
module gets its own interpreter so one module's imports cannot hide another's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from appliance.cli.commands import COMMANDS
from appliance.governance.users import create_user, issue_token
from appliance.store import session_scope

# Heavy or interactive: the CLI, the monitor and the store must start without them.
FORBIDDEN = ("ray", "textual", "cupy", "xgboost")

HEADLESS = [
    "appliance",
    "appliance.config",
    "appliance.errors",
    "appliance.store",
    "appliance.store.models",
    "appliance.store.database",
    "appliance.registry",
    "appliance.governance",
    "appliance.monitor",
    "appliance.data",
    "appliance.data.synthetic",
    "appliance.monitor.service",
    "appliance.monitor.trace",
    "appliance.monitor.fairness",
    "appliance.monitor.importance",
    "appliance.pipelines.explain",
    "appliance.pipelines.training",
    "appliance.pipelines.deployment",
    "appliance.pipelines.loop",
    "appliance.pipelines.daemon",
    "appliance.pipelines.lifecycle",
    "appliance.pipelines.status",
    "appliance.serving",
    "appliance.governance.serving_tokens",
    "cluster.head",
    "appliance.monitor.notify",
    "appliance.reports",
    "appliance.cli.report",
    "appliance.store.leases",
    "appliance.demo",
    "appliance.cli.main",
    "kernels",
]


def _loaded_after_import(module: str) -> set[str]:
    """Top-level package names in sys.modules of a fresh interpreter after `import module`."""
    code = (
        "import importlib, json, sys; "
        f"importlib.import_module({module!r}); "
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, f"import {module} failed:\n{proc.stderr}"
    return set(json.loads(proc.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", HEADLESS)
def test_headless_module_imports_no_heavy_packages(module):
    pulled_in = _loaded_after_import(module) & set(FORBIDDEN)
    assert not pulled_in, f"import {module} pulled in {sorted(pulled_in)}"


# What `appliance --help` must not pay for: the commands' libraries load when a command runs.
HELP_FORBIDDEN = ("pyarrow", "torch", "ray", "sqlalchemy", "textual")


def test_appliance_help_imports_none_of_the_commands_libraries():
    # The console script's path: `run` with the arguments, in a fresh interpreter.
    code = (
        "import json, sys\n"
        "from appliance.cli.main import run\n"
        "try:\n"
        "    run(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert proc.returncode == 0, proc.stderr
    *help_lines, modules = proc.stdout.strip().splitlines()
    loaded = set(json.loads(modules))
    # The probe ran the real help: every command is listed (none of their modules imported).
    listed = "\n".join(help_lines)
    for command in COMMANDS:
        assert f" {command.name} " in listed, f"{command.name} missing from help"
    assert "typer" in loaded
    pulled_in = loaded & set(HELP_FORBIDDEN)
    assert not pulled_in, f"appliance --help pulled in {sorted(pulled_in)}"


# What `appliance status --json` must not pay for (a store at head, no Ray head running): the
# ORM and its table classes, Alembic, Ray and the data libraries. It reads through Core.
STATUS_FORBIDDEN = ("sqlalchemy.orm", "sqlmodel", "appliance.store.models", "alembic", "ray",
                    "pyarrow", "numpy", "torch", "textual")


def test_appliance_status_json_builds_no_orm(sqlite_url, tmp_path):
    # A token, required for reads, so that the probe checks it as every read does.
    with session_scope(sqlite_url) as s:
        create_user(s, "val", "viewer", actor="test")
        secret = issue_token(s, "val", "t", actor="test")
    out = tmp_path / "modules.json"
    # The command reserves stdout for its document: the module list goes to a file.
    code = (
        "import json, sys\n"
        "from appliance.cli.main import run\n"
        "try:\n"
        "    run(['status', '--json'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules)))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    env.update(APPLIANCE_HOME=str(tmp_path / "home"), APPLIANCE_DB_URL=sqlite_url,
               APPLIANCE_TOKEN=secret, APPLIANCE_REQUIRE_TOKEN_FOR_READS="true")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["ray_head"]["address"] is None
    loaded = set(json.loads(out.read_text()))
    # The probe ran the real command: it opened the store and checked the token.
    assert {"sqlalchemy.engine", "appliance.governance.access"} <= loaded
    pulled_in = {m for m in loaded if m in STATUS_FORBIDDEN
                 or m.startswith(tuple(f"{f}." for f in STATUS_FORBIDDEN))}
    assert not pulled_in, f"appliance status --json pulled in {sorted(pulled_in)}"


def test_kernels_is_a_leaf():
    loaded = _loaded_after_import("kernels")
    assert not loaded & {"appliance", "cluster"}, sorted(loaded & {"appliance", "cluster"})


def test_the_probe_sees_real_imports():
    # Guards the test itself: an empty answer would make every check above pass vacuously.
    assert "email" in _loaded_after_import("email.mime.text")
