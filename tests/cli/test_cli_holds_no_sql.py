"""The CLI builds no queries: no `select` from sqlmodel or sqlalchemy in appliance/cli.

import-linter forbids the CLI's direct imports of sqlmodel and sqlalchemy (pyproject's
contracts); it names modules only, so this test names `select` itself, however it is
imported (``from sqlmodel import select``, ``import sqlmodel`` then ``sqlmodel.select``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import appliance.cli

CLI = Path(appliance.cli.__file__).parent
_SQL = ("sqlmodel", "sqlalchemy")


def _is_sql(module: str | None) -> bool:
    return bool(module) and module.split(".")[0] in _SQL


def select_uses(source: str) -> list[int]:
    """Line numbers in `source` that import `select` from sqlmodel/sqlalchemy or call it as an
    attribute of either package."""
    tree = ast.parse(source)
    aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
               for a in n.names if _is_sql(a.name)}
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and _is_sql(node.module):
            if any(a.name == "select" for a in node.names):
                lines.append(node.lineno)
        elif (isinstance(node, ast.Attribute) and node.attr == "select"
              and isinstance(node.value, ast.Name) and node.value.id in aliases):
            lines.append(node.lineno)
    return lines


def test_the_probe_finds_each_form():
    assert select_uses("from sqlmodel import select") == [1]
    assert select_uses("from sqlalchemy.sql import func, select") == [1]
    assert select_uses("import sqlmodel as sm\nq = sm.select(1)") == [2]
    assert select_uses("from appliance.registry import select") == []


def test_no_cli_module_selects():
    found = {p.name: select_uses(p.read_text()) for p in sorted(CLI.glob("*.py"))}
    assert len(found) > 10
    assert not {name: lines for name, lines in found.items() if lines}
