"""The path of one study (DESIGN.md, "The path of one audit run"): data, teachers, search,
confirmation, tables, report. What a user sees of it goes through a ``Progress`` the face supplies.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import pandas as pd
import torch

from audit import folder
from audit.budget import Estimate, check_equal, estimate
from audit.engine.cost import seconds_per_image
from audit.engine.data import Splits, load_splits
from audit.engine.teacher_import import imported_teacher, resolve_teacher_weights
from audit.engine.teachers import (
    TEACHER_RECIPE,
    Teacher,
    default_cache_dir,
    get_teacher,
    state_of,
)
from audit.engine.teachers import entry as teacher_entry
from audit.engine.trial import pick_device
from audit.errors import AuditError, io_problem
from audit.report.machine import MACHINE_JSON, machine_facts
from audit.report.summary import summarise
from audit.search.backend import (
    concurrency,
    ensure_ray,
    release_backend,
    start_backend,
    threads_per_trial,
)
from audit.search.confirm import confirm, pending_runs
from audit.search.loop import search
from audit.search.storage import open_storage
from audit.study import Study
from methods import get_method


@dataclass
class Paths:
    out: Path
    data_dir: Path | None = None
    cache_dir: Path | None = None
    download: bool = False


class Progress(Protocol):
    """What the face shows while a study runs (``audit.commands._progress`` draws it with rich)."""

    def teacher(self, role: str, arch: str, train: Callable[[str], Teacher]) -> Teacher:
        """Get a teacher with ``train(arch)`` (from the cache or trained) and say how it went."""

    def search_started(self, study: Study, done: dict[str, int]) -> None:
        """The search begins; ``done`` trials of each method were recorded before."""

    def trial_done(self, record: dict) -> None: ...
    def search_ended(self) -> None: ...
    def confirm_started(self, runs: int) -> None: ...
    def run_done(self, record: dict) -> None: ...
    def confirm_ended(self) -> None: ...
    def warning(self, text: str) -> None: ...

    def writing_report(self, write: Callable[[], Path]) -> Path:
        """Write the report with ``write()`` and say where it is."""


def prepare(study: Study, paths: Paths, *, new: bool = True) -> Splits:
    """Everything that can fail on bad input, an unusable folder or storage, before any folder is
    made (``new``: for a study not yet started) or anything runs.

    A study given released teacher weights gets them resolved to a teacher-cache entry here (a
    checkpoint file is imported first), recorded in the study with their sha256.
    """
    if new:
        folder.check_new(study, paths.out)
    if study.storage is not None:
        open_storage(study.storage, paths.out)  # a bad URL or password fails here
    device = "cuda" if (study.gpus_per_trial > 0 and torch.cuda.is_available()) else "cpu"
    if study.teacher_weights is not None:
        entry, sha = resolve_teacher_weights(Path(study.teacher_weights), arch=study.teacher, dataset=study.dataset,
                                             cache_dir=paths.cache_dir, expect_sha256=study.teacher_sha256)
        study.teacher_weights, study.teacher_sha256 = str(entry), sha
    if study.backend == "ray" and study.address:
        ensure_ray(study)  # a wrong address or token fails here, not after the teacher is trained
    splits = load_splits(
        study.dataset, split_seed=study.split_seed, val_fraction=study.val_fraction,
        data_dir=paths.data_dir, download=paths.download, device=device,
    )
    if study.recipe.batch_size > len(splits.train):
        raise AuditError(f"[recipe] batch_size = {study.recipe.batch_size} is larger than the training split "
                         f"({len(splits.train)} images of {study.dataset}); allowed: 2 to {len(splits.train)}")
    if uncached_teachers(study, splits, paths):
        folder.check_writable(paths.cache_dir or default_cache_dir(), "the teacher cache (--cache-dir)")
    return splits


def uncached_teachers(study: Study, splits: Splits, paths: Paths) -> list[str]:
    """The teacher architectures the study needs that its cache does not hold yet (to be trained)."""
    if not any(get_method(m).needs_teacher for m in study.all_methods):
        return []
    accel = study.accel.on(splits.train.x.device)
    released = [study.teacher] if study.teacher_weights is not None else []  # imported, never trained
    return [a for a in [study.teacher, *study.extra_teachers()]
            if a not in released and not all(p.exists() for p in teacher_entry(splits, a, seed=study.teacher_seed, cache_dir=paths.cache_dir, accel=accel)[:2])]


def compute_estimate(study: Study, splits: Splits, paths: Paths) -> Estimate:
    """The study's compute on this hardware, from the measured cost of one training image (README)."""
    device = pick_device(study.gpus_per_trial)
    distils = any(get_method(m).needs_teacher for m in study.all_methods)
    per_image = seconds_per_image(splits, study.student, study.teacher if distils else None, batch_size=study.recipe.batch_size,
                                  threads=threads_per_trial(study), device=device, accel=study.accel)
    untrained = uncached_teachers(study, splits, paths)
    teacher_per_image = seconds_per_image(splits, study.teacher, None, batch_size=TEACHER_RECIPE.batch_size,
                                          threads=os.cpu_count() or 1, device=device, accel=study.accel) if untrained else 0.0
    return estimate(methods=len(study.all_methods), trials=study.trials, seeds=len(study.seeds), epochs=study.recipe.epochs,
                    train_images=len(splits.train), per_image_s=per_image, concurrency=concurrency(study),
                    teacher_images=len(untrained) * TEACHER_RECIPE.epochs * len(splits.train),
                    teacher_per_image_s=teacher_per_image)


def create(study: Study, paths: Paths) -> Path:
    """The study's folder, with the study and the search spaces it will use."""
    return folder.create(study, paths.out, {m: get_method(m).search_space() for m in study.all_methods})


T = TypeVar("T")


def beside(work: Callable[[], T], meanwhile: Callable[[], None]) -> T:
    """``work()`` in a thread while this thread runs ``meanwhile()``; ``work``'s result, or the
    first exception of either. A daemon thread: an interrupted study does not wait for it."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="teachers", daemon=True)
    thread.start()
    meanwhile()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def run_study(study: Study, study_dir: Path, splits: Splits, paths: Paths, progress: Progress, *,
              allow_unequal_budgets: bool = False, keep_backend: bool = False) -> pd.DataFrame:
    """Run (or continue) every phase of a study whose folder exists; returns the summary. A full
    disk or a folder that became unwritable stops it with one line: what finished is kept.
    Ray, when this process started it, stops once the runs are done unless ``keep_backend``."""
    try:
        return _run_study(study, study_dir, splits, paths, progress, allow_unequal_budgets, keep_backend)
    except AuditError:
        raise
    except Exception as exc:
        said = io_problem(exc)
        if said is None:
            raise
        raise AuditError(f"{said}; {study_dir} keeps every run that finished: make room (or make it writable) "
                         f"and run `audit resume {study_dir}`") from exc


def _run_study(study: Study, study_dir: Path, splits: Splits, paths: Paths, progress: Progress,
               allow_unequal_budgets: bool, keep_backend: bool) -> pd.DataFrame:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    folder.write_json(study_dir, MACHINE_JSON, machine_facts(with_gpu=True))  # the provenance of the numbers

    def teachers() -> dict | None:
        if not any(get_method(m).needs_teacher for m in study.all_methods):
            return None

        def train(arch: str) -> Teacher:
            return get_teacher(splits, arch, seed=study.teacher_seed, cache_dir=paths.cache_dir, accel=study.accel)

        def released(arch: str) -> Teacher:
            return imported_teacher(splits, Path(study.teacher_weights), arch=arch, sha256=study.teacher_sha256)

        teacher = progress.teacher("teacher", study.teacher, released if study.teacher_weights else train)
        folder.write_json(study_dir, "teacher.json", teacher.meta)
        states = {study.teacher: state_of(teacher.model)}
        for arch in study.extra_teachers():  # teachers a method's options ask for: each trained once and cached too
            states[arch] = state_of(progress.teacher("extra teacher", arch, train).model)
        return states

    def meanwhile() -> None:
        start_backend(study, study_dir)
        import audit.report.write  # noqa: F401 - matplotlib and the report's modules, needed at the end

    # Ray starts (and must: from this thread) while the teachers train.
    states = beside(teachers, meanwhile)
    timings["teacher_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    progress.search_started(study, {m: len(folder.records(study_dir, m)) for m in study.all_methods})
    search(study, study_dir, splits, states, progress.trial_done)
    progress.search_ended()
    timings["search_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    progress.confirm_started(len(pending_runs(study, study_dir)))
    confirm(study, study_dir, splits, states, progress.run_done)
    progress.confirm_ended()
    timings["confirm_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    stopping = None if keep_backend else release_backend()  # while the tables and the report are written

    warnings = check_equal(folder.read(study_dir), allow_unequal=allow_unequal_budgets)
    for w in warnings:
        progress.warning(w)
    folder.write_atomic(study_dir / "budget_warnings.txt", "".join(w + "\n" for w in warnings))
    results = folder.write_tables(study_dir, study.all_methods)
    summary = summarise(results, study.all_methods)
    folder.write_atomic(study_dir / "summary.csv", summary.to_csv(index=False))
    folder.write_json(study_dir, "timings.json", timings)

    def write() -> Path:
        from audit.report.write import (
            write_report,  # matplotlib and jinja2 load only once there is something to show
        )

        return write_report(study_dir)

    progress.writing_report(write)
    if stopping is not None:
        stopping.join()
    return summary
