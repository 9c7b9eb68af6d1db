"""`python -m appliance` is the `appliance` command (as is `python -m appliance.cli`)."""

from appliance.cli.main import run

run()
