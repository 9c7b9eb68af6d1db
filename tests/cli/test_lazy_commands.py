"""`appliance.cli._lazy`: a lazy group keeps what eager registration gives, such as Typer's
suggestion for a mistyped command. (Each row's summary and the root group resolving every row:
tests/cli/test_commands.py; help without importing a command module:
tests/test_import_hygiene.py.)"""

from __future__ import annotations

import pytest
import typer.main

from appliance.cli.main import app


def test_a_typo_still_gets_a_suggestion():
    group = typer.main.get_command(app)
    with pytest.raises(Exception, match="Did you mean 'status'") as info:
        group.main(["stauts"], standalone_mode=False)
    assert type(info.value).__name__ == "UsageError"
