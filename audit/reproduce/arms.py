"""The path of a reproduction: the as-published arm of every claim (its preset's protocol trained
over seeds on the whole training split, nothing tuned), then, with ``--with-audit``, the
equal-budget arm beside it (an ordinary study per data set and pair, in a sub-folder), then the
report. Plain seeded runs go through the search backend's ``run_all``, locally or on Ray.

What a reproduction folder holds beyond a study's: ``teachers.json`` (each claim's teacher and its
accuracy measured on the test split), journal records of phase ``published`` that carry their
``claim_id``, and one study folder per equal-budget study.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol as Interface

import pandas as pd
import torch

from audit import folder
from audit.engine.data import Splits, load_splits
from audit.engine.teacher_import import imported_teacher, resolve_teacher_weights
from audit.engine.teachers import Teacher, get_teacher, state_of
from audit.engine.train import Recipe
from audit.engine.trial import RunSpec
from audit.errors import AuditError
from audit.report.machine import MACHINE_JSON, machine_facts
from audit.reproduce.plan import Reproduction, protocol_hash
from audit.reproduce.protocol import Protocol
from audit.search.backend import ensure_ray, run_all, threads_per_trial
from methods import get_method

PHASE = "published"
TEACHERS = "teachers.json"


class Progress(Interface):
    """What the face shows while the as-published arm runs."""

    def teacher(self, claim: str, role: str, arch: str, get: Callable[[str], Teacher]) -> Teacher: ...
    def run_done(self, record: dict) -> None: ...


def _data_key(p: Protocol) -> str:
    return json.dumps([p.dataset, p.normalize])


def _needs_teacher(p: Protocol) -> bool:
    return get_method(p.method).needs_teacher


def check(rep: Reproduction, *, data_dir: Path | None, cache_dir: Path | None, download: bool = False) -> dict[str, Splits]:
    """Everything that can fail on bad input, before any folder is made: the methods' options,
    the recipes, a released teacher (imported and checked against the claims' teacher), a Ray
    cluster's address and each data set (loaded whole, in the sources' normalisation)."""
    for p in rep.protocols:
        p.options = get_method(p.method).resolve_options(p.options, teacher=p.teacher, student=p.student)
        Recipe.from_dict(p.recipe)
    if rep.teacher_weights is not None:
        wanted = sorted({(p.teacher, p.dataset) for p in rep.protocols if _needs_teacher(p)})
        if len(wanted) != 1:
            listed = ", ".join(f"{t} on {d}" for t, d in wanted) or "none"
            raise AuditError(f"--teacher-weights gives one teacher, and these claims need {len(wanted)} ({listed}); "
                             "reproduce the claims of each teacher separately")
        (arch, dataset), = wanted
        entry, sha = resolve_teacher_weights(Path(rep.teacher_weights), arch=arch, dataset=dataset, cache_dir=cache_dir,
                                             expect_sha256=rep.teacher_sha256)
        rep.teacher_weights, rep.teacher_sha256 = str(entry), sha
    if rep.backend == "ray" and rep.address:
        ensure_ray(rep)  # a wrong address fails here, not after the teachers are trained
    device = "cuda" if (rep.gpus_per_trial > 0 and torch.cuda.is_available()) else "cpu"
    splits: dict[str, Splits] = {}
    for p in rep.protocols:
        if _data_key(p) not in splits:
            try:
                splits[_data_key(p)] = load_splits(p.dataset, split_seed=0, val_fraction=0.0, data_dir=data_dir,
                                                   download=download, device=device, normalize=p.normalize)
            except AuditError as exc:  # which claim needed the data set, then what is missing
                raise AuditError(f"claim {p.claim_id} needs {p.dataset}: {exc}") from None
    return splits


def create(rep: Reproduction, out: Path) -> Path:
    """The reproduction's folder with its study.toml, all or nothing."""
    return folder.create(rep, out, {})


def _teachers(rep: Reproduction, p: Protocol, splits: Splits, cache_dir: Path | None, progress: Progress,
              got: dict[str, tuple[Teacher, dict]]) -> tuple[list[str], dict]:
    """The frozen networks the claim's method learns from (keys into ``got``, each a teacher and its
    weights, trained or imported once however many claims share it) and its teacher's record."""
    recipe = Recipe.from_dict(p.teacher_recipe)

    def trained(arch: str) -> Teacher:
        return get_teacher(splits, arch, seed=0, recipe=recipe, strength=0.0, cache_dir=cache_dir, accel=rep.accel)

    def released(arch: str) -> Teacher:
        return imported_teacher(splits, Path(rep.teacher_weights), arch=arch, sha256=rep.teacher_sha256)

    def get(role: str, arch: str, how: Callable[[str], Teacher]) -> str:
        key = json.dumps([_data_key(p), arch, p.teacher_recipe if how is trained else rep.teacher_sha256])
        if key not in got:
            t = progress.teacher(p.claim_id, role, arch, how)
            got[key] = (t, state_of(t.model))
        return key

    keys = [get("teacher", p.teacher, released if rep.teacher_weights else trained)]
    keys += [get("extra teacher", arch, trained) for arch in get_method(p.method).extra_teachers(p.options)]
    return keys, {**got[keys[0]][0].meta, "arch": p.teacher}


def run_published(rep: Reproduction, rep_dir: Path, splits: dict[str, Splits], *, cache_dir: Path | None,
                  progress: Progress) -> dict[str, float]:
    """Train every claim's runs not yet in the journal; returns the phase's timings."""
    t0 = time.perf_counter()
    torch.set_num_threads(os.cpu_count() or 1)
    folder.write_json(rep_dir, MACHINE_JSON, machine_facts(with_gpu=True))
    teachers_path = rep_dir / TEACHERS
    metas = json.loads(teachers_path.read_text()) if teachers_path.is_file() else {}
    got: dict[str, tuple[Teacher, dict]] = {}
    groups: dict[str, tuple[Splits, dict | None, list[Protocol]]] = {}
    for p in rep.protocols:  # claims that share data and teachers run together
        s, keys, states = splits[_data_key(p)], [], None
        if _needs_teacher(p):
            keys, metas[p.claim_id] = _teachers(rep, p, s, cache_dir, progress, got)
            states = {got[k][0].arch: got[k][1] for k in keys}
        groups.setdefault(json.dumps([_data_key(p), keys]), (s, states, []))[2].append(p)
    folder.write_json(rep_dir, TEACHERS, metas)
    t1 = time.perf_counter()

    done = {(r.get("claim_id"), r.get("seed")) for r in folder.read(rep_dir) if r.get("phase") == PHASE}
    for s, states, protocols in groups.values():
        claim_of = {protocol_hash(p): p.claim_id for p in protocols}
        runs = [(p.config, RunSpec(method=p.method, student=p.student, teacher=p.teacher,
                                   recipe=Recipe.from_dict(p.recipe), seed=seed,
                                   threads=threads_per_trial(rep), paper_protocol=p.paper_protocol,
                                   budget_hash=protocol_hash(p), accel=rep.accel, options=p.options))
                for p in protocols for seed in p.seeds if (p.claim_id, seed) not in done]

        def record(rec: dict, claim_of: dict = claim_of) -> None:
            rec.update(phase=PHASE, trial=None, claim_id=claim_of[rec["budget_hash"]])
            folder.append(rep_dir, rec)
            progress.run_done(rec)

        # The test split is what the claims were scored on; there is no validation split to hide it from.
        run_all(rep, rep_dir, runs, s, states, record)
    write_tables(rep_dir)
    return {"teachers_s": t1 - t0, "published_s": time.perf_counter() - t1}


def write_tables(rep_dir: Path) -> pd.DataFrame:
    """``results.csv`` and ``curves.csv`` of the as-published arm, each row with its claim."""
    found = [r for r in folder.read(rep_dir) if r.get("phase") == PHASE]
    results = folder.results_frame(found)
    results.insert(0, "claim_id", [r.get("claim_id") for r in found] if found else [])
    curves = folder.curves_frame(found)
    claim_rows = [r.get("claim_id") for r in found for _ in (r.get("val_curve") or [])]
    curves.insert(0, "claim_id", claim_rows)
    folder.write_atomic(rep_dir / "results.csv", results.to_csv(index=False))
    folder.write_atomic(rep_dir / "curves.csv", curves.to_csv(index=False))
    return results
