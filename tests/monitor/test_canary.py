"""The canary's verdict and status (`appliance.monitor.canary`) on hand-made window rows in a
real store: the challenger's live metrics against the champion's on the same windows."""

from __future__ import annotations

import dataclasses
import itertools

import loop_world as lw
import pytest

from appliance.errors import NotFound
from appliance.monitor import canary
from appliance.monitor.policy import DEFAULTS
from appliance.store import session_scope
from appliance.store.models import (
    Dataset,
    Deployment,
    PredictionWindow,
    RetrainRequest,
    Run,
    WindowVersion,
)

_names = itertools.count()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One store for the module (SQLite): model v1 (champion) and v2 (challenger)."""
    world = lw.make_world(tmp_path_factory.mktemp("canary"))
    return world, world.version, lw.add_version(world, shift=0.0)


@pytest.fixture
def deployment(world) -> str:
    """A deployment name of the test's own, so that each test has windows of its own."""
    return f"canary-{next(_names)}"


def acc(labelled: int, correct: int) -> dict:
    return {"rows": labelled, "correct": correct, "accuracy": correct / labelled}


def add_windows(url: str, deployment: str, slices: dict[int, list[tuple]]) -> None:
    """Windows `index` -> [(version row, shadow, rows, labelled rows, metrics), ...]."""
    with session_scope(url) as s:
        for index, parts in sorted(slices.items()):
            window = PredictionWindow(deployment=deployment, index=index, path="unused",
                                      rows=sum(p[2] for p in parts if not p[1]), requests=1)
            s.add(window)
            s.flush()
            for version, shadow, rows, labelled, metrics in parts:
                s.add(WindowVersion(window_id=window.id, version_id=version.id,
                                    version=version.version, shadow=shadow, rows=rows,
                                    labelled_rows=labelled, metrics=metrics))


def judge(world, deployment: str, *, mode: str = "split", started: int = 1, **policy):
    w, champion, challenger = world
    with session_scope(w.cfg.db_url) as s:
        return canary.verdict(
            s, deployment=deployment, champion_version_id=champion.id,
            challenger_version_id=challenger.id, mode=mode, started_window=started,
            policy=dataclasses.replace(DEFAULTS, **policy))


def test_too_few_labelled_challenger_rows_is_pending(world, deployment):
    w, v1, v2 = world
    add_windows(w.cfg.db_url, deployment, {
        1: [(v1, False, 1800, 900, acc(900, 760)), (v2, False, 200, 150, acc(150, 130))],
        2: [(v1, False, 1800, 900, acc(900, 760)), (v2, False, 200, 150, acc(150, 90))],
    })
    got = judge(world, deployment)
    assert (got.status, got.windows, got.metric, got.tolerance) == ("pending", [1, 2],
                                                                    "accuracy", 0.02)
    assert (got.challenger.rows, got.challenger.labelled_rows) == (400, 300)
    assert got.reason == "300 of 500 labelled challenger rows so far, over 2 window(s)"


def test_a_challenger_within_tolerance_passes_and_one_beyond_regresses(world, deployment):
    w, v1, v2 = world
    add_windows(w.cfg.db_url, deployment, {
        1: [(v1, False, 4500, 4000, acc(4000, 3360)), (v2, False, 500, 500, acc(500, 415))],
    })
    got = judge(world, deployment)
    assert got.status == "passed"
    assert (got.challenger.value, got.champion.value) == (0.83, 0.84)
    assert got.reason.startswith("accuracy 0.8300 vs champion 0.8400 on 1 window(s), 500 ")
    assert judge(world, deployment, canary_tolerance=0.005).status == "regressed"
    regressed = judge(world, deployment, canary_tolerance=0.005)
    assert regressed.reason.endswith("worse by more than 0.005")
    # Better than the champion always passes, even with no tolerance at all.
    add_windows(w.cfg.db_url, deployment, {
        2: [(v1, False, 4500, 4000, acc(4000, 3360)), (v2, False, 500, 500, acc(500, 480))],
    })
    assert judge(world, deployment, canary_tolerance=0.0).status == "passed"


def test_no_verdict_after_canary_max_windows_is_inconclusive(world, deployment):
    w, v1, v2 = world
    add_windows(w.cfg.db_url, deployment, {
        i: [(v1, False, 1900, 0, {}), (v2, False, 100, 40, acc(40, 30))] for i in (1, 2, 3)
    })
    assert judge(world, deployment, canary_max_windows=4).status == "pending"
    got = judge(world, deployment, canary_max_windows=3)
    assert got.status == "inconclusive"
    assert got.reason == "120 labelled challenger rows after 3 windows; 500 needed"
    # Enough challenger labels but none for the champion yet: no comparison, no verdict.
    add_windows(w.cfg.db_url, deployment, {
        4: [(v1, False, 1000, 0, {}), (v2, False, 1000, 1000, acc(1000, 900))]})
    assert judge(world, deployment, canary_max_windows=20).status == "pending"


def test_split_mode_judges_the_challengers_served_rows_and_shadow_mode_its_shadow_rows(
    world, deployment
):
    w, v1, v2 = world
    add_windows(w.cfg.db_url, deployment, {
        1: [(v1, False, 2000, 2000, acc(2000, 1700)),
            (v2, False, 600, 600, acc(600, 300)),     # served in a split: poor
            (v2, True, 2000, 2000, acc(2000, 1720))],  # scored in the shadow: good
    })
    split, shadow = judge(world, deployment, mode="split"), judge(world, deployment,
                                                                  mode="shadow")
    assert (split.status, split.challenger.value, split.challenger.rows) == ("regressed", 0.5,
                                                                             600)
    assert (shadow.status, shadow.challenger.value, shadow.challenger.rows) == ("passed", 0.86,
                                                                                2000)
    # The champion is always judged by what it served.
    assert split.champion.value == shadow.champion.value == 0.85


def test_accuracy_pools_correct_counts_over_the_windows(world, deployment):
    w, v1, v2 = world
    add_windows(w.cfg.db_url, deployment, {
        1: [(v1, False, 900, 900, acc(900, 810)), (v2, False, 100, 100, acc(100, 90))],
        2: [(v1, False, 1000, 1000, acc(1000, 700)), (v2, False, 1000, 1000, acc(1000, 700))],
    })
    got = judge(world, deployment)
    # 790 of 1100, not the mean of 0.9 and 0.7 (0.8).
    assert got.challenger.value == pytest.approx(790 / 1100)
    assert got.champion.value == pytest.approx(1510 / 1900)
    assert got.challenger.labelled_rows == 1100
    assert got.status == "regressed"


def test_a_lower_is_better_metric_regresses_when_the_challenger_is_higher(world, deployment):
    w, v1, v2 = world

    def ll(value: float, n: int) -> dict:
        return {"rows": n, "log_loss": value}

    add_windows(w.cfg.db_url, deployment, {
        1: [(v1, False, 1000, 1000, ll(0.35, 1000)), (v2, False, 300, 300, ll(0.29, 300))],
        2: [(v1, False, 1000, 1000, ll(0.35, 1000)), (v2, False, 300, 300, ll(0.33, 300))],
    })
    good = judge(world, deployment, canary_metric="log_loss")
    assert good.status == "passed"
    assert good.challenger.value == pytest.approx(0.31)  # labelled-row-weighted mean
    assert good.champion.value == pytest.approx(0.35)
    add_windows(w.cfg.db_url, deployment, {
        3: [(v1, False, 1000, 1000, ll(0.35, 1000)), (v2, False, 600, 600, ll(0.50, 600))],
    })
    bad = judge(world, deployment, canary_metric="log_loss")
    assert bad.challenger.value == pytest.approx((0.29 * 300 + 0.33 * 300 + 0.5 * 600) / 1200)
    assert bad.status == "regressed"


def test_only_windows_where_the_challenger_appears_since_the_start_count(world, deployment):
    w, v1, v2 = world
    good, poor = acc(1000, 850), acc(1000, 500)
    add_windows(w.cfg.db_url, deployment, {
        1: [(v1, False, 2000, 1000, good), (v2, False, 500, 500, acc(500, 50))],  # earlier try
        2: [(v1, False, 2000, 1000, poor)],  # the challenger is not deployed yet
        3: [(v1, False, 1800, 1000, good), (v2, False, 200, 200, acc(200, 170))],
        4: [(v1, False, 1800, 1000, good), (v2, False, 400, 400, acc(400, 340))],
        5: [(v1, False, 2000, 1000, poor)],  # back to the champion only
    })
    got = judge(world, deployment, started=2)
    assert got.windows == [3, 4]
    assert (got.champion.value, got.champion.labelled_rows) == (0.85, 2000)
    assert (got.challenger.value, got.challenger.labelled_rows) == (0.85, 600)
    assert got.status == "passed"
    assert got.to_dict()["challenger"] == {"version_id": v2.id, "rows": 600,
                                           "labelled_rows": 600, "value": 0.85}


def test_status_names_the_versions_serving_a_model_and_its_latest_retrain_request(
    db_url, tmp_path
):
    w = lw.make_world(tmp_path, db_url=db_url)
    v2 = lw.add_version(w)
    with session_scope(db_url) as s:
        assert canary.status(s, "scorer").model_dump() == {
            "model": "scorer", "serving": [
                {"version": 1, "role": "primary", "mode": None, "share": None, "since": lw.T0}],
            "canary": None, "retrain": None}
        s.add(Deployment(name="scorer", model_name="scorer", version_id=v2.id, url="u",
                         role="canary", mode="shadow", status="stopped", created_by="ops",
                         started_at=lw.T0))
        s.add(RetrainRequest(model_name="scorer", deployment="scorer", trigger="drift",
                             since_window=1, state="canary_aborted", created_by="monitor",
                             champion_version_id=w.version.id))
        ds = s.get(Dataset, s.get(Run, w.version.run_id).dataset_id)
        request = RetrainRequest(
            model_name="scorer", deployment="scorer", active_key="scorer", trigger="accuracy",
            alert_id=7, since_window=4, state="canary", created_by="monitor",
            champion_version_id=w.version.id, version_id=v2.id, dataset_id=ds.id,
            run_id="r123", gate={"passed": True}, canary={"mode": "split", "share": 0.1})
        s.add(request)
        s.flush()
        s.add(Deployment(name="scorer", model_name="scorer", version_id=v2.id, url="u",
                         role="canary", mode="split", share=0.1, retrain_id=request.id,
                         created_by="ops", started_at=lw.T0))
    with session_scope(db_url) as s:
        got = canary.status(s, "scorer")
        with pytest.raises(NotFound, match="nobody"):
            canary.status(s, "nobody")
    assert [(x.version, x.role, x.mode, x.share) for x in got.serving] == [
        (1, "primary", None, None), (2, "canary", "split", 0.1)]
    assert got.canary == got.serving[1]
    retrain = got.retrain.model_dump()
    assert retrain.pop("created_at") is not None
    assert retrain == {
        "id": request.id, "state": "canary", "trigger": "accuracy", "alert": 7,
        "since_window": 4, "champion_version": 1, "challenger_version": 2,
        "dataset": f"{ds.name}:{ds.version}", "data_contract_status": "baseline",
        "data_contract": {"dataset": f"{ds.name}:{ds.version}", "baseline": None,
                          "purpose": "upload", "passed": True, "violations": []},
        "run": "r123", "gate": {"passed": True},
        "canary": {"mode": "split", "share": 0.1}, "approval": None, "outcome": None,
        "error": None, "finished_at": None}
