"""The search asks, in each place of the budget, a configuration that depends only on the search
seed, the method, the place and the trials completed before it: an interrupted, resumed (or
twice resumed) search asks exactly what an uninterrupted one asks, and drivers sharing a storage
never ask one configuration twice. Driven through the searchers as the backends drive them, with
a made-up objective instead of training (fast)."""
from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from audit import folder
from audit.search.drivers import reconcile
from audit.search.sampler import slot_seed
from audit.search.searchers import build_searcher
from audit.search.storage import open_storage, study_name
from audit.study import Study


def objective(config: dict) -> float:
    """Made up, smooth in every dimension, so that TPE's model has something to find."""
    return 100.0 - sum((float(v) - 0.3) ** 2 for v in config.values() if not isinstance(v, str))


def _study(trials: int, storage: str | None = None) -> Study:
    return Study(name="smp", methods=["kd"], trials=trials, seeds=[1], backend="local", storage=storage)


def _new(out: Path, study: Study, spaces: dict | None = None) -> Path:
    from methods import get_method

    spaces = spaces or {m: get_method(m).search_space() for m in study.all_methods}
    return folder.create(study, out, spaces)


def _search(study: Study, study_dir: Path, stop_after: int | None = None) -> None:
    """Ask and finish trials as the local backend does; ``stop_after`` asks one more and leaves it
    running, as a kill would."""
    searcher, _ = build_searcher(study, study_dir, None)
    finished = 0
    while True:
        config = searcher.suggest(f"t{finished}")
        if not isinstance(config, dict):
            return
        if stop_after is not None and finished == stop_after:
            return  # killed while this trial ran
        method = config.pop("method")
        searcher.on_trial_complete(f"t{finished}", {"method": method, "seed": 0, "config": config, "status": "ok",
                                                    "val_acc": objective(config)})
        finished += 1


def _asked(study_dir: Path) -> dict[tuple[str, int], str]:
    return {(r["method"], r["trial"]): json.dumps(r["config"], sort_keys=True)
            for r in folder.read(study_dir) if r["phase"] == "search"}


@pytest.mark.parametrize("kills", [[5], [0, 9, 15]], ids=["once", "three times"])
def test_a_resumed_search_asks_what_the_uninterrupted_one_asked(tmp_path, kills):
    # 11 trials per method: the last comes from TPE's model of the 10 completed before it, not at random.
    study = _study(trials=11)
    once = _new(tmp_path / "once", study)
    _search(study, once)
    killed = _new(tmp_path / "killed", study)
    for k in kills:
        _search(study, killed, stop_after=k - len(folder.read(killed)))
        reconcile(study, killed)  # what `audit resume` does first: the running trial is cancelled
    _search(study, killed)

    want, got = _asked(once), _asked(killed)
    assert len(want) == 22 and got == want
    # The interrupted trials were not counted and their places were asked again.
    ostudy = optuna.load_study(study_name=study_name(study.name, "kd"), storage=open_storage(None, killed))
    assert sum(bool(t.user_attrs.get("cancelled")) for t in ostudy.trials) >= 1


def test_two_drivers_on_one_storage_never_ask_one_configuration_twice(tmp_path):
    """Two drivers with the same search seed, each with its own folder, asking in turn from one
    storage: every place once, and, on a space of as many points as the budget, every point once."""
    tiny = {"kd": {"alpha": CategoricalDistribution((0.1, 0.5, 0.9))},
            "nokd": {"strength": CategoricalDistribution((0.0, 0.25, 0.5, 0.75))}}
    study = _study(trials=3, storage=f"sqlite:///{tmp_path / 'shared.db'}")
    dirs = [_new(tmp_path / who, study, tiny) for who in ("a", "b")]
    searchers = [build_searcher(study, d, None)[0] for d in dirs]
    for round_ in range(10):  # each round: both ask (one asks while the other's trial runs), then both finish
        running = [(s, f"{i}-{round_}", s.suggest(f"{i}-{round_}")) for i, s in enumerate(searchers)]
        running = [(s, tid, cfg) for s, tid, cfg in running if isinstance(cfg, dict)]
        if not running:
            break
        for s, tid, cfg in running:
            method = cfg.pop("method")
            s.on_trial_complete(tid, {"method": method, "seed": 0, "config": cfg, "status": "ok", "val_acc": 50.0})
    searched = [r for d in dirs for r in folder.read(d) if r["phase"] == "search"]
    for method, points in (("kd", 3), ("nokd", 3)):
        mine = [r for r in searched if r["method"] == method]
        assert sorted(r["trial"] for r in mine) == [0, 1, 2]
        configs = [json.dumps(r["config"]) for r in mine]
        assert len(set(configs)) == points, configs


def test_slot_seeds_differ_by_every_part_of_the_key():
    seeds = {slot_seed(s, m, k, d) for s in (0, 1) for m in ("kd", "nokd") for k in (0, 1, 2) for d in (0, 1)}
    assert len(seeds) == 24
    assert slot_seed(0, "kd", 3) == slot_seed(0, "kd", 3, 0)  # a pure function: the same on every call


def test_a_space_smaller_than_the_budget_still_fills_it(tmp_path, caplog):
    """Three trials on a two-point space: the third repeats a point (said in the log), the budget stays exact."""
    tiny = {"kd": {"alpha": CategoricalDistribution((0.1, 0.9))},
            "nokd": {"strength": FloatDistribution(0.0, 1.0)}}
    study = _study(trials=3)
    d = _new(tmp_path, study, tiny)
    _search(study, d)
    kd = [r["config"]["alpha"] for r in folder.read(d) if r["method"] == "kd"]
    assert len(kd) == 3 and set(kd) == {0.1, 0.9}
    assert "already tried" in caplog.text
