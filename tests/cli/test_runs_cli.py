"""`appliance runs list|show|compare|rerun` (appliance/cli/runs.py) on runs recorded through the
library (`appliance.registry`): what each run recorded, two runs side by side, and `rerun` up
to its refusals (a rerun that starts trains on Ray, which these tests leave out)."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest
from governed_home import Home, document, refused, table, usage_error
from sqlmodel import select

from appliance.cli import runs as cli
from appliance.errors import InvalidInput, NotFound
from appliance.registry import datasets, models, runs
from appliance.store.models import Dataset, Run

T0 = dt.datetime(2026, 1, 5, 12, 0, tzinfo=dt.timezone.utc)
SPEC = {"model": "credit", "dataset": "loans", "label": "y", "params": {"lr": 0.1}}
# What a run started by `train` records of its runtime (`provenance.runtime()`).
RUNTIME = {"python": "CPython 3.11.7", "torch": "2.5.1", "cuda": None, "gpu_driver": None,
           "os": "Linux-6.1-x86_64", "hardware": {"cpu": "EPYC", "cores": 2,
                                                  "memory_bytes": 8 << 30, "gpus": []}}
RUN_KEYS = {"id", "model", "version", "status", "dataset", "seed", "spec", "params", "metrics",
            "device", "error", "rerun_of", "environment", "created_by", "started_at",
            "finished_at"}
RUN_PARTS = {
    "dataset": {"name", "version", "digest", "rows"},
    "environment": {"code_version", "packages", "python", "torch", "cuda", "gpu_driver", "os",
                    "hardware"},
}
HARDWARE_KEYS = {"cpu", "cores", "memory_bytes", "gpus"}


@pytest.fixture(scope="module")
def home(tmp_path_factory, _sqlite_template) -> Home:
    """Three runs, a minute apart: "first" (credit, seed 1, registered as version 1, recorded
    before runs kept their runtime), "again" (its rerun with seed 2, still running, with a
    runtime), "broken" (toy, failed, with a spec this version does not know)."""
    home = Home(tmp_path_factory.mktemp("runs-cli"), _sqlite_template)
    with home.session() as s:
        first, _ = home.register(s, "credit", seed=1, spec=SPEC, params={"lr": 0.1})
        ds = s.get(Dataset, first.dataset_id)
        again = models.start_run(s, model="credit", dataset=ds, spec={**SPEC, "seed": 2},
                                 params={"lr": 0.1}, seed=2, actor="ops", runtime=RUNTIME)
        runs.mark_rerun(s, again, first, actor="ops")
        models.ensure_model(s, "toy", owner="ops", team="credit")
        toy = datasets.add_table(s, home.store, pa.table({"x": [5.0, 6.0], "y": [1, 0]}),
                                 "toys", actor="ops")
        broken = models.start_run(s, model="toy", dataset=toy, spec={"epochs": 3},
                                  params={}, seed=0, actor="ops")
        models.finish_run(s, broken, metrics={}, device="cuda", error="CUDA out of memory")
        for minutes, run in enumerate((first, again, broken)):
            run.started_at = T0 + dt.timedelta(minutes=minutes)
            s.add(run)
        home.ids.update(first=first.id, again=again.id, broken=broken.id)
    return home


def test_list_shows_the_newest_runs_first(home):
    ids = home.ids
    rows = table(home.invoke("runs", "list", who="val"))
    assert rows[0] == ["ID", "MODEL", "VERSION", "STATUS", "DATASET", "SEED", "ACCURACY",
                       "DEVICE", "RERUN_OF", "AGE"]
    assert [r[:9] for r in rows[1:]] == [
        [ids["broken"], "toy", "<none>", "failed", "toys:1", "0", "<none>", "cuda", "<none>"],
        [ids["again"], "credit", "<none>", "running", "loans:1", "2", "<none>", "<none>",
         ids["first"]],
        [ids["first"], "credit", "1", "finished", "loans:1", "1", "0.9", "cpu", "<none>"]]
    docs = document(home.invoke("runs", "list", "--model", "credit", "--json"), cli.list_)
    assert [d["id"] for d in docs] == [ids["again"], ids["first"]]
    assert [d["id"] for d in document(home.invoke("runs", "list", "--limit", "1", "--json"),
                                      cli.list_)] == [ids["broken"]]
    res = home.invoke("runs", "list", "--model", "toy", "--json=id,error")
    assert res.exit_code == 0 and res.stdout.split() == [
        "[", "{", '"id":', f'"{ids["broken"]}",', '"error":', '"CUDA', 'out', 'of', 'memory"',
        "}", "]"]


def test_show_tells_what_a_run_recorded(home):
    ids = home.ids
    fields = {r[0]: r[1:] for r in table(home.invoke("runs", "show", ids["again"]))[1:]}
    assert fields["id"] == [ids["again"]] and fields["rerun_of"] == [ids["first"]]
    assert fields["dataset"] == ["loans:1"] and fields["seed"] == ["2"]
    assert fields["python"] == ["CPython", "3.11.7"] and fields["cores"] == ["2"]
    assert fields["params.lr"] == ["0.1"] and fields["status"] == ["running"]
    assert fields["finished_at"] == ["<none>"] and fields["created_by"] == ["ops"]
    fields = {r[0]: r[1:] for r in table(home.invoke("runs", "show", ids["broken"]))[1:]}
    assert fields["error"] == ["CUDA", "out", "of", "memory"] and fields["python"] == ["<none>"]
    shown = [document(home.invoke("runs", "show", ids[name], "--json"), cli.show)
             for name in ("first", "again", "broken")]
    for doc in shown:
        assert set(doc) == RUN_KEYS
        for part, keys in RUN_PARTS.items():
            assert set(doc[part]) == keys
        assert set(doc["environment"]["hardware"]) == HARDWARE_KEYS
    first, again, _ = shown
    assert again["rerun_of"] == first["id"] and first["version"] == 1
    # Recorded before the runtime was kept: unknown, not an error; the rerun's is filled in.
    assert first["environment"]["python"] is None
    assert again["environment"]["python"] == "CPython 3.11.7"
    assert first["spec"] == SPEC and first["metrics"] == {"accuracy": 0.9}
    with home.session() as s:
        code = s.exec(select(Run.code_version).where(Run.id == first["id"])).one()
    assert first["environment"]["code_version"] == code


def test_compare_puts_two_runs_side_by_side(home):
    first, again = home.ids["first"], home.ids["again"]
    rows = table(home.invoke("runs", "compare", first, again))
    assert rows[0] == ["KEY", "A", "B", "SAME"]
    sides = {r[0]: r[1:] for r in rows[1:]}
    assert sides["run.seed"] == ["1", "2", "no"]
    assert sides["run.rerun_of"] == ["<none>", first, "no"]
    assert sides["metrics.accuracy"] == ["0.9", "<none>", "no"]
    assert "params.lr" not in sides  # the same in both: only --all lists it
    assert all(side[-1] == "no" for side in sides.values())
    differing = document(home.invoke("runs", "compare", first, again, "--json"), cli.compare)
    every = document(home.invoke("runs", "compare", first, again, "--all", "--json"),
                     cli.compare)
    for doc in (differing, every):
        assert (doc["a"], doc["b"]) == (first, again)
        assert all(set(f) == {"section", "key", "a", "b", "same"} for f in doc["fields"])
        sides = [(f["section"], f["key"], f["a"], f["b"]) for f in doc["fields"]]
        assert ("run", "seed", 1, 2) in sides and ("run", "rerun_of", None, first) in sides
        assert doc["differing"] == len(differing["fields"])
    assert not any(f["same"] for f in differing["fields"])
    assert ("params", "lr", 0.1, 0.1, True) in [
        (f["section"], f["key"], f["a"], f["b"], f["same"]) for f in every["fields"]]
    assert ("spec", "seed", None, 2, False) in [
        (f["section"], f["key"], f["a"], f["b"], f["same"]) for f in differing["fields"]]


def test_a_run_compared_with_itself_differs_in_nothing(home):
    first = home.ids["first"]
    res = home.invoke("runs", "compare", first, first)
    assert table(res) == [["KEY", "A", "B", "SAME"]]
    assert res.stderr == f"runs {first} and {first} recorded the same values\n"
    doc = document(home.invoke("runs", "compare", first, first, "--json"), cli.compare)
    assert (doc["differing"], doc["fields"]) == (0, [])


@pytest.mark.parametrize(("args", "kind", "needle"), [
    (["show", "../etc"], InvalidInput, "run id '../etc' must be letters and digits"),
    (["show", "feedc0de"], NotFound, "no run 'feedc0de'; list them with `appliance runs list`"),
    (["compare", "@first@", "feedc0de"], NotFound, "no run 'feedc0de'"),
    (["list", "--model", "ghost"], NotFound, "no model named 'ghost'"),
    (["list", "--limit", "0"], InvalidInput, "--limit must be at least 1, got 0"),
    (["rerun", "@broken@"], InvalidInput,
     "recorded a spec this version cannot train again (unknown key(s) ['epochs'], missing "
     "['dataset', 'label', 'model']); train a spec file with `appliance train`"),
    (["rerun", "a-b"], InvalidInput, "run id 'a-b' must be letters and digits"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_refusals_name_what_was_wrong(home, args, kind, needle):
    args = [home.ids[a.strip("@")] if a.startswith("@") else a for a in args]
    refused(home.invoke("runs", *args, who="ops"), kind, needle)


def test_a_limit_must_be_a_number(home):
    usage_error(home.invoke("runs", "list", "--limit", "many"), "Invalid value for '--limit'")
