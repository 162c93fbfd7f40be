"""The path of one study: data, teacher, search, confirmation, results (DESIGN.md, "The path of one audit run")."""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from audit import folder as journal
from audit.budget import check_equal
from audit.search.confirm import confirm, pending_runs
from audit.engine.data import Splits, load_splits
from audit.errors import AuditError
from audit.search.loop import ensure_ray, finished_trials, search, state_of
from audit.study import Study
from audit.report.summary import summarise
from audit.engine.teachers import Teacher, get_teacher
from methods import get_method


@dataclass
class Paths:
    out: Path
    data_dir: Path | None = None
    cache_dir: Path | None = None
    download: bool = False


def prepare(study: Study, paths: Paths) -> Splits:
    """Everything that can fail on bad input, before any folder is made."""
    device = "cuda" if (study.gpus_per_trial > 0 and torch.cuda.is_available()) else "cpu"
    if study.backend == "ray" and study.address:
        ensure_ray(study)  # a wrong address or token fails here, not after the teacher is trained
    return load_splits(
        study.dataset, split_seed=study.split_seed, val_fraction=study.val_fraction,
        data_dir=paths.data_dir, download=paths.download, device=device,
    )


def create_study_dir(study: Study, out: Path) -> Path:
    study_dir = out / study.name
    if study_dir.exists():
        raise AuditError(f"study folder {str(study_dir)!r} exists; choose another --name (or resume it)")
    out.mkdir(parents=True, exist_ok=True)
    # Made under a temporary name and renamed once study.toml is in it: never a half-made folder.
    tmp = out / f".{study.name}.creating-{os.getpid()}"
    tmp.mkdir()
    try:
        study.write(tmp / "study.toml")
        os.replace(tmp, study_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return study_dir


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(), console=console, transient=False,
    )


def execute_study(
    study: Study, study_dir: Path, splits: Splits, paths: Paths, console: Console, *, allow_unequal_budgets: bool = False
) -> pd.DataFrame:
    """Run (or continue) every phase of a study whose folder exists; returns the summary."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    teacher: Teacher | None = None
    if any(get_method(m).needs_teacher for m in study.all_methods):
        with console.status(f"teacher {study.teacher} on {study.dataset} (trained once, then cached)"):
            teacher = get_teacher(splits, study.teacher, seed=study.teacher_seed, cache_dir=paths.cache_dir, accel=study.accel)
        how = "from cache" if teacher.from_cache else f"trained in {teacher.meta['wall_s']:.0f}s"
        console.print(f"teacher {study.teacher}: val {teacher.meta['val_acc']:.2f}%  test {teacher.meta['test_acc']:.2f}%  ({how})")
        (study_dir / "teacher.json").write_text(json.dumps(teacher.meta, indent=2))
    states = {study.teacher: state_of(teacher.model)} if teacher is not None else None
    if teacher is not None:
        for arch in study.extra_teachers:  # multi-teacher methods: each trained once and cached too
            with console.status(f"extra teacher {arch}"):
                extra = get_teacher(splits, arch, seed=study.teacher_seed, cache_dir=paths.cache_dir, accel=study.accel)
            console.print(f"extra teacher {arch}: val {extra.meta['val_acc']:.2f}%  test {extra.meta['test_acc']:.2f}%")
            states[arch] = state_of(extra.model)
    timings["teacher_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    with _progress(console) as progress:
        tasks, best = {}, {}
        for method in study.all_methods:
            done = len(finished_trials(study_dir, method))
            tasks[method] = progress.add_task(f"search {method}", total=study.trials, completed=min(done, study.trials), note="")

        def on_trial(rec: dict) -> None:
            m = rec["method"]
            if rec.get("status") == "ok":
                best[m] = max(best.get(m, float("-inf")), rec["val_acc"])
            progress.update(tasks[m], advance=1, note=f"best val {best[m]:.2f}%" if m in best else "")
            if not console.is_terminal:  # a log has no live bars: one line per finished trial
                done = int(progress.tasks[tasks[m]].completed)
                what = f"val {rec['val_acc']:.2f}%" if rec.get("status") == "ok" else f"FAILED ({rec.get('reason')})"
                best_txt = f", best {best[m]:.2f}%" if m in best else ""
                console.print(f"search {m} {done}/{study.trials}: {what}{best_txt}, {rec.get('wall_s', 0):.1f}s", highlight=False)

        search(study, study_dir, splits, states, on_trial)
    timings["search_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    with _progress(console) as progress:
        task = progress.add_task("confirm on test", total=len(pending_runs(study, study_dir)), note="")
        def on_run(rec: dict) -> None:
            progress.update(task, advance=1, note=rec["method"])
            if not console.is_terminal:
                what = f"test {rec['test_acc_last']:.2f}%" if rec.get("status") == "ok" else f"FAILED ({rec.get('reason')})"
                console.print(f"confirm {rec['method']} seed {rec['seed']}: {what}, {rec.get('wall_s', 0):.1f}s", highlight=False)

        confirm(study, study_dir, splits, states, on_run)
    timings["confirm_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    warnings = check_equal(journal.read(study_dir), allow_unequal=allow_unequal_budgets)
    for w in warnings:
        console.print(f"[yellow]warning:[/] {w}")
    (study_dir / "budget_warnings.txt").write_text("".join(w + "\n" for w in warnings))
    results = journal.write_tables(study_dir)
    summary = summarise(results, study.all_methods)
    summary.to_csv(study_dir / "summary.csv", index=False)
    (study_dir / "timings.json").write_text(json.dumps(timings, indent=2))
    from audit.report.write import write_report  # matplotlib and jinja2 load only once there is something to show

    with console.status("writing the report"):
        index = write_report(study_dir)
    console.print(f"report: {index}")
    return summary
