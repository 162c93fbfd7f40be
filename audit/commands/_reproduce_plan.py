"""What ``audit reproduce`` shows: the plan of ``--dry-run`` (each claim's protocol, runs and
measured compute), the as-published arm as it runs, and the two arms when it is done."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from audit.errors import AuditError
from audit.report.format import fmt, fmt_big, fmt_config
from audit.report.sections.protocols import recipe_text


def _train_images(dataset: str) -> int:
    from audit.reproduce.plan import TRAIN_IMAGES

    if dataset not in TRAIN_IMAGES:
        raise AuditError(f"no official training-split size known for {dataset}; allowed: {', '.join(TRAIN_IMAGES)}")
    return TRAIN_IMAGES[dataset]


def print_plan(console: Console, rep, *, data_dir: Path | None, cache_dir: Path | None) -> int:  # noqa: ANN001
    """Each claim's resolved protocol, its runs and compute, then the total; trains nothing."""
    from audit.engine.flops import FlopsCache
    from audit.engine.teachers import default_cache_dir
    from audit.reproduce.plan import gpu_hours, plan_compute
    from methods import get_method

    for p in rep.protocols:  # as the run would resolve them (e.g. TAKD's assistant), before measuring
        p.options = get_method(p.method).resolve_options(p.options, teacher=p.teacher, student=p.student)
    cache = FlopsCache((cache_dir or default_cache_dir()) / "flops.json")
    tflops = rep.throughput_tflops

    def show(p, c) -> None:  # noqa: ANN001
        epochs = int(p.recipe["epochs"])
        stages = "; ".join(f"{fmt_big(f, 'FLOP')} per image x {e} epochs ({s})" for s, e, f in c.stages)
        teacher = ("the released teacher given" if rep.teacher_weights else
                   f"trained here ({int(p.teacher_recipe['epochs'])} epochs; the source released "
                   f"{p.teacher_released or 'none stated'})") if get_method(p.method).needs_teacher else "none (no distillation)"
        console.print(f"[bold]{p.claim_id}[/] {p.method} {p.teacher} -> {p.student} on {p.dataset}, claimed {p.claimed:.2f} % "
                      f"(preset {p.preset})", highlight=False)
        lines = [
            ("runs", f"{len(p.seeds)} seed(s); rule {p.rule}: each run's {p.per_run_epoch} test epoch"),
            ("recipe", recipe_text(p.recipe)),
            ("method", fmt_config(p.config) + (f"; options {json.dumps(p.options, sort_keys=True)}" if p.options else "")
             + ("; extra stages on top of the epochs" if p.paper_protocol else "")),
            ("teacher", teacher),
            ("compute", f"{stages}; {len(p.seeds)} run(s) x {c.train_images:,} images: {fmt_big(c.student_flops, 'FLOP')}"
                        + (f", teachers {fmt_big(c.teacher_flops, 'FLOP')}" if c.teacher_flops else "")
                        + f"; {gpu_hours(c.total, tflops):.2f} GPU-hours at {tflops:g} TFLOP/s"),
            ("departures", f"{len(p.departures)} (named in the report)" if p.departures else "none known"),
        ]
        for k, v in lines:
            console.print(f"  {k:<11}{v}", highlight=False, soft_wrap=True)
        if epochs < 1:
            raise AuditError(f"{p.claim_id}: no epochs to train")

    computes = plan_compute(rep, cache, _train_images, show)
    total = sum(c.total for c in computes)
    console.print(f"\n{len(computes)} claim(s), {sum(c.runs for c in computes)} run(s): {fmt_big(total, 'FLOP')} in all, "
                  f"{gpu_hours(total, tflops):.1f} GPU-hours at {tflops:g} TFLOP/s (a stated throughput, not a measurement; "
                  "FLOPs are torch's flop counter on one real training step per method, pair and stage, times epochs and "
                  "images; a teacher several claims share is counted once)", highlight=False)
    return 0


class ArmProgress:
    """The as-published arm's teachers and runs, one line each (``audit.reproduce.arms.Progress``)."""

    def __init__(self, console: Console) -> None:
        self.console = console

    def teacher(self, claim: str, role: str, arch: str, get: Callable):  # noqa: ANN201
        with self.console.status(f"{role} {arch} for {claim}"):
            t = get(arch)
        how = (f"released, imported from {Path(t.meta['source']['path']).name}" if "source" in t.meta
               else "from cache" if t.from_cache else f"trained in {t.meta.get('wall_s', 0):.0f}s")
        self.console.print(f"{role} {arch}: test {fmt(t.meta.get('test_acc'))} % ({how})", highlight=False)
        return t

    def run_done(self, record: dict) -> None:
        ok = record.get("status") == "ok"
        what = (f"test {fmt(record.get('test_acc_last'))} % last, {fmt(record.get('test_acc_best'))} % best epoch"
                if ok else f"failed: {record.get('reason')}")
        self.console.print(f"{record['claim_id']} {record['method']} seed {record['seed']}: {what}", highlight=False)


def print_arms(console: Console, rep_dir: Path) -> None:
    """The report's arms table, from its CSV."""
    import pandas as pd

    path = rep_dir / "tables" / "arms.csv"
    if not path.is_file():
        return
    df = pd.read_csv(path)
    table = Table(title=f"claimed | as published | equal-budget tuned — {rep_dir}")
    for col in ("claim", "method", "claimed", "as published", "verdict", "claimed - published", "tuned method", "tuned classical KD"):
        table.add_column(col, justify="left" if col in ("claim", "method", "verdict") else "right")
    for r in df.itertuples():
        table.add_row(str(r.claim_id), str(r.method), fmt(r.claimed), fmt(r.published_mean), str(r.verdict),
                      fmt(r.claimed_minus_published, "+.2f"), fmt(r.tuned_method_mean), fmt(r.tuned_classical_mean))
    console.print(table)
