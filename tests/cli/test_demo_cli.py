"""`appliance demo` (appliance/cli/demo.py): its help and the refusals of its options, each
before the demo starts anything (exit 2, one stderr line, Ray never imported, the folder
named left as it was). Nothing stands in for the demo: a refusal that stops happening plays it
and fails on what it prints and leaves (or on the probe's timeout). The demo itself runs in
tests/e2e/test_demo.py."""

from __future__ import annotations

from cli_home import invoke, run_in_one_process

from appliance.cli._json_fields import record_fields
from appliance.config import load_config
from appliance.demo import DemoSummaryPublic


def test_help_names_its_options_and_what_it_plays():
    res = invoke(["demo", "--help"])
    assert res.exit_code == 0, res.output
    said = " ".join(res.output.split())
    assert "Play a world of drifting traffic and late labels; the monitor closes the loop." \
        in said
    assert "--home" in said and "--json" in said


def test_bad_options_are_refused_before_the_demo_starts(tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep.txt").write_text("mine")
    afile = tmp_path / "a-file"
    afile.write_text("mine")
    commands = [["demo", "--home", str(used)], ["demo", "--home", str(afile)],
                ["demo", "--home", str(tmp_path / "new"), "--json=bogus"],
                ["demo", "--home", str(tmp_path / "new"), "--fast"]]
    res = run_in_one_process(commands, load_config({"APPLIANCE_HOME": str(tmp_path)}))
    assert res.stdout == "" and "Traceback" not in res.stderr, res.stderr
    fields = ", ".join(record_fields(DemoSummaryPublic))
    assert res.stderr.strip().splitlines() == [
        f"error: demo home {str(used)!r} is not empty; pass a new folder", "exit 2",
        f"error: demo home {str(afile)!r} is not a folder; pass a new folder", "exit 2",
        f"error: --json: unknown field 'bogus'; available fields: {fields}", "exit 2",
        "error: No such option: --fast", "exit 2",
        "ray imported: False",
    ], res.stderr
    assert [p.name for p in used.iterdir()] == ["keep.txt"] and afile.read_text() == "mine"
    assert not (tmp_path / "new").exists()
