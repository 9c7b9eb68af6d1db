"""`python -m appliance.cli` is the `appliance` command."""

from appliance.cli.main import run

run()
